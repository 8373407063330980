"""Benchmark: wall time and peak memory of 04's training sequence, by stage.

For each case the sequence of ``workflow.retrain`` (the steps 04 walks through) runs in a
fresh project root (a temporary folder with a copy of ``config/``, pointed at by
``AMLKIT_ROOT``), every stage group in its own subprocess so that each peak RSS belongs to that
group alone:

1. ``ingest``: ``amlkit.data.ingest`` (streams the source in chunks),
2. ``preprocess``: the code cells of ``notebooks/03_data_preprocessing.ipynb`` (clean, split,
   profile, write Parquet), run in the child's own process (no kernel) so that its peak RSS
   is theirs,
3. ``train``: ``search.train_all`` over the candidates (seeded RandomizedSearchCV each, scored on
   validation), ``workflow.score_on_test`` + ``evaluate.evaluation_figures``,
   ``workflow.track_and_register`` (MLflow run + model version) and ``workflow.champion_gate``,
   exactly as ``workflow.retrain`` calls them (04 also computes permutation importance, which
   ``retrain`` does not; it is not timed here).

Peak RSS is ``getrusage(RUSAGE_SELF).ru_maxrss`` inside each child, checked against the
``ru_maxrss`` the parent gets from ``os.wait4`` for that child. The parent imports only the
standard library, so it adds nothing to the children's figures.

Cases:

- ``default``: the bundled penguins data with the repository's ``config/model_config.json``
  as is (what 04 does with its default parameters).
- ``synthetic``: ``--rows`` rows (default 1,000,000) x 20 features (16 numeric, 4 categorical,
  about 2% missing values, a seeded three-class target with signal), written as Parquet to the
  root's ``data/external/`` and ingested with ``source=<path>``. The full default search (5
  folds x 8 settings x 3 candidates, RandomForest up to 200 unbounded trees on 600k rows) would
  take hours on two cores, so this case runs with reduced settings, printed with the results:
  1 setting x 2 folds per candidate and a capped random forest (50 trees, max_depth 12,
  max_samples 0.2). Each flag below changes them.

    .venv/bin/python benchmarks/training_benchmark.py [--case all|default|synthetic]
        [--rows 1000000] [--search-iterations N] [--cv-folds N] [--rf-n-estimators N]
        [--rf-max-depth N] [--rf-max-samples F] [--threads N] [--timeout 3600] [--keep]
        [--json PATH]

``--search-iterations`` / ``--cv-folds`` / ``--rf-*`` given on the command line apply to every
selected case; left out, the default case keeps model_config.json and the synthetic case uses
the reduced values above. ``--threads N`` sets OMP/OpenBLAS threads in the children (04 keeps
the libraries' default, one per core); on a shared, busy machine OpenMP's spinning threads can
make HistGradientBoosting many times slower, so compare runs at the same load (printed: load
average, machine busy/steal share, CPU seconds per child).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SEED = 20240601
N_NUMERIC, N_CATEGORICAL = 16, 4
SYNTHETIC_NAME, SYNTHETIC_TARGET = "synthetic", "label"
# Reduced settings of the synthetic case (documented in the module docstring).
SYNTHETIC_DEFAULTS = {
    "search_iterations": 1,
    "cv_folds": 2,
    "rf_n_estimators": 50,
    "rf_max_depth": 12,
    "rf_max_samples": 0.2,
}
CAP_KEYS = ("rf_n_estimators", "rf_max_depth", "rf_max_samples")
STAGES = ("ingest", "preprocess", "train")
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def peak_rss_mib() -> float:
    """ru_maxrss of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def loadavg() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


# ---------------------------------------------------------------- children (run in subprocesses)


def child_generate(root: Path, rows: int) -> dict[str, Any]:
    """Write the synthetic data set as Parquet under ``<root>/data/external``."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(SEED)
    cols: dict[str, Any] = {}
    for i in range(N_NUMERIC):
        cols[f"x{i:02d}"] = rng.normal(rng.uniform(-5, 5), rng.uniform(0.5, 20), rows)
    levels = (3, 5, 8, 12)
    codes = {}
    for j, n in enumerate(levels):
        codes[j] = rng.integers(0, n, rows)
        names = np.array([f"c{j}_{k}" for k in range(n)], dtype=object)
        cols[f"cat{j}"] = names[codes[j]]
    # signal: a linear part on 6 numerics, an interaction, two categorical effects, noise
    z = {k: (v - v.mean()) / v.std() for k, v in cols.items() if k.startswith("x")}
    score = (
        1.0 * z["x00"]
        - 0.8 * z["x01"]
        + 0.6 * z["x02"]
        + 0.5 * z["x03"] * z["x04"]
        + 0.4 * np.sin(2 * z["x05"])
        + rng.normal(0, 0.5, levels[0])[codes[0]]
        + 0.3 * (codes[1] >= 3)
        + rng.normal(0, 0.8, rows)
    )
    edges = np.quantile(score, [1 / 3, 2 / 3])
    label = np.array(["low", "mid", "high"], dtype=object)[np.searchsorted(edges, score)]
    frame = pd.DataFrame(cols)
    for k, column in enumerate(frame.columns):  # about 2% missing in every other column
        if k % 2 == 0:
            frame.loc[rng.random(rows) < 0.02, column] = None
    frame[SYNTHETIC_TARGET] = label
    out = root / "data" / "external" / f"{SYNTHETIC_NAME}.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out, index=False)
    return {"path": str(out), "size_mib": out.stat().st_size / 2**20, "shape": list(frame.shape)}


def child_ingest(case: str, source: str | None) -> dict[str, Any]:
    from amlkit.data import ingest

    t0 = time.perf_counter()
    if case == "default":
        result = ingest.ingest("penguins", progress=False)
    else:
        result = ingest.ingest(
            SYNTHETIC_NAME,
            source=source,
            target=SYNTHETIC_TARGET,
            task="classification",
            progress=False,
        )
    seconds = time.perf_counter() - t0
    return {"seconds": {"ingest": seconds}, "rows": result.manifest.rows}


def child_preprocess(case: str) -> dict[str, Any]:
    import nbformat

    notebook = nbformat.read(REPO / "notebooks" / "03_data_preprocessing.ipynb", as_version=4)
    namespace: dict[str, Any] = {"display": lambda *args, **kwargs: None}
    t0 = time.perf_counter()
    for cell in notebook.cells:
        if cell.cell_type == "code":
            exec(compile(cell.source, "03_data_preprocessing", "exec"), namespace)
            if "parameters" in cell.metadata.get("tags", []):
                namespace["dataset"] = "penguins" if case == "default" else SYNTHETIC_NAME
    seconds = time.perf_counter() - t0
    m = namespace["processed"].manifest
    return {
        "seconds": {"preprocess": seconds},
        "split_rows": m.rows,
        "features": len(m.feature_types),
        "feature_kinds": sorted(set(m.feature_types.values())),
    }


def child_train(case: str) -> dict[str, Any]:
    """The body of ``workflow.retrain``, stage by stage, with 04's setup."""
    import matplotlib.pyplot as plt

    from amlkit import config, notebook
    from amlkit.data import preprocess
    from amlkit.registry import tracking
    from amlkit.training import evaluate, search, workflow

    model_config = config.ModelConfig.load()
    notebook.setup(seed=model_config.random_state)
    tracking.configure_tracking(config.AzureConfig.load())
    seconds: dict[str, float] = {}

    t0 = time.perf_counter()
    processed = preprocess.load_processed("penguins" if case == "default" else SYNTHETIC_NAME)
    seconds["load processed"] = time.perf_counter() - t0
    rss_loaded = peak_rss_mib()
    m = processed.manifest
    name = workflow.default_model_name(m.dataset, m.task)

    t0 = time.perf_counter()
    result = search.train_all(
        processed.train,
        processed.validation,
        target=m.target,
        feature_types=m.feature_types,
        task=m.task,
        model_config=model_config,
    )
    total = time.perf_counter() - t0
    for cand, res in result.candidates.items():
        seconds[f"search {cand}"] = res.fit_seconds
    seconds["validation scoring"] = total - sum(r.fit_seconds for r in result.candidates.values())

    t0 = time.perf_counter()
    scores = workflow.score_on_test(result.best.estimator, processed)
    seconds["test scoring"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    X, y = workflow.split_xy(processed.test, m)
    figures = evaluate.evaluation_figures(result.best.estimator, X, y, m.task)
    seconds["evaluation figures"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    metrics = {"validation": result.best.validation_metrics, "test": scores}
    version, _ = workflow.track_and_register(result, processed, metrics, name=name, figures=figures)
    for figure in figures.values():
        plt.close(figure)
    seconds["register"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    decision = workflow.champion_gate(version, processed, model_config)
    seconds["champion gate"] = time.perf_counter() - t0

    metric = model_config.primary_metric[m.task]
    from threadpoolctl import threadpool_info

    omp = sorted({d["num_threads"] for d in threadpool_info() if d["user_api"] == "openmp"})
    return {
        "omp_threads": ",".join(map(str, omp)) or "-",
        "seconds": seconds,
        "rss_after_load_mib": rss_loaded,
        "chosen": result.chosen,
        "metric": metric,
        "test_score": scores[metric],
        "validation": {
            c: round(r.validation_metrics[metric], 4) for c, r in result.candidates.items()
        },
        "promoted": decision.promoted,
        "model_version": version.version,
    }


STAGE_IMPORTS = {
    "generate": ("numpy", "pandas", "pyarrow.parquet"),
    "ingest": ("amlkit.data.ingest",),
    "preprocess": ("amlkit.data.preprocess", "nbformat", "sklearn.model_selection"),
    "train": (
        "amlkit.training.workflow",
        "amlkit.notebook",
        "amlkit.registry.tracking",
        "matplotlib.pyplot",
    ),
}


def run_child(args: argparse.Namespace) -> None:
    import importlib

    for module in STAGE_IMPORTS[args.child]:
        importlib.import_module(module)
    rss_start = peak_rss_mib()
    root = Path(os.environ["AMLKIT_ROOT"])
    if args.child == "generate":
        out = child_generate(root, args.rows)
    elif args.child == "ingest":
        out = child_ingest(args.case, args.source)
    elif args.child == "preprocess":
        out = child_preprocess(args.case)
    else:
        out = child_train(args.case)
    out["peak_rss_mib"] = peak_rss_mib()
    out["rss_at_start_mib"] = rss_start
    Path(args.result).write_text(json.dumps(out, default=str), encoding="utf-8")


# ---------------------------------------------------------------- parent


def cpu_stat() -> list[int]:
    """The aggregate ``cpu`` line of /proc/stat (jiffies), or [] where there is none."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            return [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return []


def machine_share(before: list[int], after: list[int]) -> dict[str, float]:
    """Shares of the machine's CPU time between two /proc/stat readings: busy, idle, steal."""
    if not before or len(before) != len(after):
        return {}
    d = [b - a for a, b in zip(before, after, strict=True)]
    total = sum(d[:8]) or 1  # user nice system idle iowait irq softirq steal
    idle, steal = d[3] + d[4], d[7]
    return {"busy": (total - idle - steal) / total, "idle": idle / total, "steal": steal / total}


def spawn(
    stage: str, case: str, root: Path, timeout: float, extra: list[str], threads: int | None
) -> dict[str, Any]:
    """Run one stage group in a child; return its report plus wall time and wait4 maxrss."""
    result = root / f".bench-{stage}.json"
    log = root / f".bench-{stage}.log"
    cmd = [sys.executable, __file__, "--child", stage, "--case", case, "--result", str(result)]
    env = {**os.environ, "AMLKIT_ROOT": str(root), "PYTHONHASHSEED": "0"}
    if threads:
        for var in THREAD_VARS:
            env[var] = str(threads)
    stat0 = cpu_stat()
    start = time.perf_counter()
    with open(log, "wb") as sink:
        proc = subprocess.Popen([*cmd, *extra], env=env, stdout=sink, stderr=subprocess.STDOUT)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - start > timeout:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.2)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0 or not result.is_file():
        tail = log.read_text(encoding="utf-8", errors="replace")[-4000:]
        why = f"timed out after {timeout:.0f} s" if wall > timeout else f"rc {proc.returncode}"
        raise RuntimeError(
            f"{case}/{stage} failed ({why}); log {log} (root kept), tail:\n{tail}\n"
            "Rerun with smaller settings (--rows, --search-iterations, --cv-folds, --rf-*) or a "
            "larger --timeout."
        )
    out = json.loads(result.read_text(encoding="utf-8"))
    out["wall_s"] = wall
    out["wait4_maxrss_mib"] = usage.ru_maxrss / 1024
    out["cpu_s"] = usage.ru_utime + usage.ru_stime
    out["machine"] = machine_share(stat0, cpu_stat())
    return out


def settings_for(case: str, args: argparse.Namespace) -> dict[str, Any]:
    """The effective overrides of a case: CLI values, else the case's defaults."""
    base = SYNTHETIC_DEFAULTS if case == "synthetic" else {}
    keys = ("search_iterations", "cv_folds", *CAP_KEYS)
    return {k: getattr(args, k) if getattr(args, k) is not None else base.get(k) for k in keys}


def benchmark_model_config(repo_config: dict[str, Any], s: dict[str, Any]) -> dict[str, Any]:
    """Return model_config.json with the case's overrides (search size, random forest caps)."""
    cfg = copy.deepcopy(repo_config)
    for key in ("search_iterations", "cv_folds"):
        if s[key] is not None:
            cfg[key] = int(s[key])
    rf = cfg["candidates"].get("random_forest")
    if rf is not None:
        for task in rf["tasks"]:
            space = rf.setdefault("search_space", {}).setdefault(task, {})
            params = rf.setdefault("params", {}).setdefault(task, {})
            if s["rf_n_estimators"] is not None:
                space["n_estimators"] = {"choice": [int(s["rf_n_estimators"])]}
            if s["rf_max_depth"] is not None:
                space["max_depth"] = {"choice": [int(s["rf_max_depth"])]}
            if s["rf_max_samples"] is not None:
                params["max_samples"] = float(s["rf_max_samples"])
    return cfg


def describe_settings(cfg: dict[str, Any], task: str = "classification") -> dict[str, str]:
    names = [n for n, c in cfg["candidates"].items() if task in c.get("tasks", [])]
    rf = cfg["candidates"].get("random_forest", {})
    rf_space = rf.get("search_space", {}).get(task, {})
    rf_params = rf.get("params", {}).get(task, {})
    shown = {k: v for k, v in rf_space.items() if k in ("n_estimators", "max_depth")}
    return {
        "search_iterations": str(cfg["search_iterations"]),
        "cv_folds": str(cfg["cv_folds"]),
        "candidates": ", ".join(names),
        "random_forest": json.dumps({**shown, **rf_params}, separators=(",", ":")),
    }


def run_case(case: str, args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix=f"amlkit-bench-{case}-"))
    shutil.copytree(REPO / "config", root / "config")
    repo_cfg = json.loads((REPO / "config" / "model_config.json").read_text(encoding="utf-8"))
    s = settings_for(case, args)
    cfg = benchmark_model_config(repo_cfg, s)
    (root / "config" / "model_config.json").write_text(json.dumps(cfg, indent=2), "utf-8")
    report: dict[str, Any] = {"case": case, "root": str(root), "settings": describe_settings(cfg)}
    report["load_before"] = loadavg()
    print(f"[{case}] root {root}; load average {report['load_before']}", flush=True)
    try:
        source: list[str] = []
        if case == "synthetic":
            gen = spawn(
                "generate", case, root, args.timeout, ["--rows", str(args.rows)], args.threads
            )
            report["generate"] = gen
            source = ["--source", gen["path"]]
            print(f"[{case}] generated {gen['shape']} in {gen['wall_s']:.1f} s", flush=True)
        for stage in STAGES:
            report[stage] = spawn(stage, case, root, args.timeout, source, args.threads)
            print(f"[{case}] {stage} done in {report[stage]['wall_s']:.1f} s", flush=True)
    except Exception:
        args.keep = True
        raise
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    report["load_after"] = loadavg()
    return report


def peak(rep: dict[str, Any]) -> float:
    return max(rep["peak_rss_mib"], rep["wait4_maxrss_mib"])


def sec(value: float) -> str:
    return f"{value:.2f}"


def table(reports: list[dict[str, Any]]) -> str:
    """One column per case, one row per figure."""
    rows: list[tuple[str, list[str]]] = []

    def add(label: str, values: list[Any]) -> None:
        rows.append((label, [str(v) for v in values]))

    add("case", [r["case"] for r in reports])
    add("rows (raw)", [f"{r['ingest']['rows']:,}" for r in reports])
    add(
        "rows train/val/test",
        ["/".join(f"{n:,}" for n in r["preprocess"]["split_rows"].values()) for r in reports],
    )
    add("features", [r["preprocess"]["features"] for r in reports])
    for key in ("search_iterations", "cv_folds", "candidates", "random_forest"):
        add(key, [r["settings"][key] for r in reports])
    add("-- wall seconds --", ["" for _ in reports])
    add(
        "data generation (not 04)",
        [sec(r["generate"]["wall_s"]) if "generate" in r else "-" for r in reports],
    )
    add("ingest", [sec(r["ingest"]["seconds"]["ingest"]) for r in reports])
    add("preprocess", [sec(r["preprocess"]["seconds"]["preprocess"]) for r in reports])
    add(
        "ingest+preprocess",
        [
            sec(r["ingest"]["seconds"]["ingest"] + r["preprocess"]["seconds"]["preprocess"])
            for r in reports
        ],
    )
    stages = list(reports[0]["train"]["seconds"])
    for r in reports[1:]:
        stages += [k for k in r["train"]["seconds"] if k not in stages]
    for stage in stages:
        add(stage, [sec(r["train"]["seconds"].get(stage, float("nan"))) for r in reports])
    add(
        "register+gate",
        [
            sec(r["train"]["seconds"]["register"] + r["train"]["seconds"]["champion gate"])
            for r in reports
        ],
    )
    add("train stages total", [sec(sum(r["train"]["seconds"].values())) for r in reports])
    add(
        "child walls ingest/prep/train",
        ["/".join(sec(r[s]["wall_s"]) for s in STAGES) for r in reports],
    )
    add(
        "child CPU s ingest/prep/train",
        ["/".join(sec(r[s]["cpu_s"]) for s in STAGES) for r in reports],
    )
    add(
        "machine busy/steal % (train)",
        [
            "{:.0f}/{:.0f}".format(
                100 * r["train"]["machine"].get("busy", float("nan")),
                100 * r["train"]["machine"].get("steal", float("nan")),
            )
            for r in reports
        ],
    )
    add("threads (OMP)", [r["train"]["omp_threads"] for r in reports])
    add("-- peak RSS MiB --", ["" for _ in reports])
    add(
        "after imports ingest/prep/train",
        ["/".join(f"{r[s]['rss_at_start_mib']:.0f}" for s in STAGES) for r in reports],
    )
    add(
        "data generation (not 04)",
        [f"{peak(r['generate']):.0f}" if "generate" in r else "-" for r in reports],
    )
    add("ingest", [f"{peak(r['ingest']):.0f}" for r in reports])
    add("preprocess", [f"{peak(r['preprocess']):.0f}" for r in reports])
    add("train: after load_processed", [f"{r['train']['rss_after_load_mib']:.0f}" for r in reports])
    add("train+score+register+gate", [f"{peak(r['train']):.0f}" for r in reports])
    add("-- outcome --", ["" for _ in reports])
    add("chosen", [r["train"]["chosen"] for r in reports])
    add("validation (primary)", [json.dumps(r["train"]["validation"]) for r in reports])
    add(
        "test (primary)",
        [f"{r['train']['metric']} {r['train']['test_score']:.4f}" for r in reports],
    )
    add("load avg before", [r["load_before"] for r in reports])
    add("load avg after", [r["load_after"] for r in reports])

    width = max(len(label) for label, _ in rows)
    widths = [max(len(v[i]) for _, v in rows) for i in range(len(reports))]
    lines = []
    for label, values in rows:
        cells = "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True))
        lines.append(f"{label.ljust(width)}  {cells}".rstrip())
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--case", choices=("all", "default", "synthetic"), default="all")
    p.add_argument("--rows", type=int, default=1_000_000, help="rows of the synthetic case")
    p.add_argument("--search-iterations", type=int, help="settings per candidate (all cases)")
    p.add_argument("--cv-folds", type=int, help="folds of each search (all cases)")
    p.add_argument("--rf-n-estimators", type=int, help="fix the random forest's trees")
    p.add_argument("--rf-max-depth", type=int, help="fix the random forest's max_depth")
    p.add_argument("--rf-max-samples", type=float, help="random forest bootstrap share")
    p.add_argument(
        "--threads", type=int, help="OMP/OpenBLAS threads in the children (default: library's)"
    )
    p.add_argument("--timeout", type=float, default=3600, help="seconds per child process")
    p.add_argument("--keep", action="store_true", help="keep the temporary project roots")
    p.add_argument("--json", help="also write the full reports to this JSON file")
    # internal: run one stage group in this (child) process
    p.add_argument("--child", choices=("generate", "ingest", "preprocess", "train"))
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--source", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.rows < 1000:
        p.error(f"--rows must be at least 1000, got {args.rows}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        run_child(args)
        return
    cases = ["default", "synthetic"] if args.case == "all" else [args.case]
    print(f"cpus {os.cpu_count()}; python {sys.version.split()[0]}; load average {loadavg()}")
    reports = [run_case(case, args) for case in cases]
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print()
    print(table(reports))
    print(f"\nmax RSS over all children (RUSAGE_CHILDREN): {children:.0f} MiB")
    print(f"load average at end: {loadavg()}")
    if args.json:
        Path(args.json).write_text(json.dumps(reports, indent=2, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
