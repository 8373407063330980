"""Benchmark: wall time and peak memory of notebook 04 as users run it, section by section.

Each case runs the real stage notebooks, 01 (ingest), 03 (preprocess) and 04 (train, evaluate,
register, champion gate), through papermill (``amlkit run``), one after the other in a fresh
project root (a temporary folder with a copy of ``config/``, pointed at by ``AMLKIT_ROOT``).
Every notebook runs in its own ``amlkit run`` process and kernel, so each peak RSS belongs to
that notebook alone: it is the ``ru_maxrss`` that ``os.wait4`` reports for the process tree
(the kernel is the largest process in it). 04's wall time is also split by its ``##``
sections, from papermill's per-cell durations.

Cases:

- ``default``: the bundled penguins with the notebooks' default parameters and the
  repository's ``config/model_config.json`` (what a user's first run does).
- ``synthetic``: ``--rows`` rows (default 1,000,000) x 20 features (16 numeric, 4 categorical,
  about 2% missing values, a seeded three-class target with signal), written as Parquet to the
  root's ``data/external/`` and ingested by 01 with ``source=<path>``. The full default search
  (5 folds x 8 settings x 3 candidates, RandomForest up to 200 unbounded trees on 600k rows)
  would take hours on two cores, so this case runs with reduced settings, printed with the
  results: 1 setting x 2 folds per candidate (04's ``search_iterations`` and ``cv_folds``) and a
  capped random forest in the root's model_config.json (50 trees, max_depth 12, max_samples 0.2).

    .venv/bin/python benchmarks/training_benchmark.py [--case default|synthetic|all]
        [--rows 1000000] [--search-iterations N] [--cv-folds N] [--timeout 3600] [--keep]
        [--json PATH]

Compare runs at the same machine load (printed: load average before and after).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SEED = 20240601
SYNTHETIC_NAME, SYNTHETIC_TARGET = "synthetic", "label"
SYNTHETIC_SEARCH = {"search_iterations": 1, "cv_folds": 2}
SYNTHETIC_FOREST = {"n_estimators": 50, "max_depth": 12, "max_samples": 0.2}
STAGES = ("01", "03", "04")


def loadavg() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def write_synthetic(root: Path, rows: int) -> Path:
    """Write the synthetic data set as Parquet under ``<root>/data/external``."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(SEED)
    cols: dict[str, Any] = {}
    for i in range(16):
        cols[f"x{i:02d}"] = rng.normal(rng.uniform(-5, 5), rng.uniform(0.5, 20), rows)
    levels = (3, 5, 8, 12)
    codes = {}
    for j, n in enumerate(levels):
        codes[j] = rng.integers(0, n, rows)
        cols[f"cat{j}"] = np.array([f"c{j}_{k}" for k in range(n)], dtype=object)[codes[j]]
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
    frame = pd.DataFrame(cols)
    for k, column in enumerate(frame.columns):  # about 2% missing in every other column
        if k % 2 == 0:
            frame.loc[rng.random(rows) < 0.02, column] = None
    frame[SYNTHETIC_TARGET] = np.array(["low", "mid", "high"], dtype=object)[
        np.searchsorted(edges, score)
    ]
    out = root / "data" / "external" / f"{SYNTHETIC_NAME}.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out, index=False)
    return out


def cap_random_forest(root: Path) -> None:
    """Fix the random forest's size in the root's model_config.json (the synthetic case)."""
    path = root / "config" / "model_config.json"
    cfg = json.loads(path.read_text(encoding="utf-8"))
    forest = cfg["candidates"]["random_forest"]
    for task in forest["tasks"]:
        space = forest.setdefault("search_space", {}).setdefault(task, {})
        space["n_estimators"] = {"choice": [SYNTHETIC_FOREST["n_estimators"]]}
        space["max_depth"] = {"choice": [SYNTHETIC_FOREST["max_depth"]]}
        forest.setdefault("params", {}).setdefault(task, {})["max_samples"] = SYNTHETIC_FOREST[
            "max_samples"
        ]
    path.write_text(json.dumps(cfg, indent=2), encoding="utf-8")


def run_stage(root: Path, stage: str, params: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run one stage notebook with ``amlkit run``: wall and CPU time, the tree's peak RSS."""
    flags = [arg for key, value in params.items() for arg in ("-p", key, str(value))]
    cmd = [sys.executable, "-m", "amlkit.cli", "run", "-s", stage, "--run-id", f"bench-{stage}"]
    log = root / f"bench-{stage}.log"
    start = time.perf_counter()
    with open(log, "wb") as sink:
        proc = subprocess.Popen(
            [*cmd, "--no-progress", *flags],
            env={**os.environ, "AMLKIT_ROOT": str(root)},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        while not (waited := os.wait4(proc.pid, os.WNOHANG))[0]:
            if time.perf_counter() - start > timeout:
                proc.kill()
                waited = os.wait4(proc.pid, 0)
                break
            time.sleep(0.2)
    _, status, usage = waited
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-4000:]
        raise RuntimeError(f"notebook {stage} failed (root kept: {root}):\n{tail}")
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mib": usage.ru_maxrss / 1024,
    }


def sections(executed: Path) -> dict[str, float]:
    """Seconds per ``##`` section of an executed notebook (papermill's cell durations)."""
    cells = json.loads(executed.read_text(encoding="utf-8"))["cells"]
    out: dict[str, float] = {}
    section = "(before the first section)"
    for cell in cells:
        text = "".join(cell["source"])
        if cell["cell_type"] == "markdown" and text.startswith("## "):
            section = text.splitlines()[0][3:]
        duration = cell.get("metadata", {}).get("papermill", {}).get("duration") or 0.0
        out[section] = out.get(section, 0.0) + duration
    return out


def run_case(case: str, args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix=f"amlkit-bench-{case}-"))
    shutil.copytree(REPO / "config", root / "config")
    report: dict[str, Any] = {"case": case, "root": str(root), "load_before": loadavg()}
    print(f"[{case}] root {root}; load average {report['load_before']}", flush=True)
    search = {} if case == "default" else dict(SYNTHETIC_SEARCH)
    search |= {k: v for k in SYNTHETIC_SEARCH if (v := getattr(args, k)) is not None}
    params = {"01": {}, "03": {}, "04": search}
    if case == "synthetic":
        source = write_synthetic(root, args.rows)
        cap_random_forest(root)
        data = {"dataset": SYNTHETIC_NAME}
        params = {stage: data | p for stage, p in params.items()}
        params["01"] |= {"source": source, "target": SYNTHETIC_TARGET, "task": "classification"}
    report["settings"] = search or "the notebook's defaults"
    try:
        for stage in STAGES:
            report[stage] = run_stage(root, stage, params[stage], args.timeout)
            print(f"[{case}] {stage} done in {report[stage]['wall_s']:.1f} s", flush=True)
        executed = next((root / "runs" / "bench-04").glob("04_*.ipynb"))
        report["sections"] = sections(executed)
        (version,) = (root / "models" / "trained_models").glob("*/1")
        report["test"] = json.loads((version / "performance_metrics.json").read_text())["test"]
        report["model"] = json.loads((version / "model_metadata.json").read_text())["model_type"]
    except Exception:
        args.keep = True
        raise
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    report["load_after"] = loadavg()
    return report


def print_report(report: dict[str, Any]) -> None:
    print(f"\ncase {report['case']}: 04 settings {report['settings']}")
    for stage in STAGES:
        rep = report[stage]
        print(
            f"  notebook {stage}: wall {rep['wall_s']:6.1f} s   CPU {rep['cpu_s']:6.1f} s   "
            f"peak RSS {rep['peak_rss_mib']:5.0f} MiB"
        )
    print("  04 by section (cell time):")
    for section, seconds in report["sections"].items():
        print(f"    {section:<45} {seconds:6.2f} s")
    scores = {k: round(v, 4) for k, v in report["test"].items() if k in ("accuracy", "f1_macro")}
    print(f"  model {report['model']}; test {scores}")
    print(f"  load average before / after: {report['load_before']} / {report['load_after']}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--case", choices=("all", "default", "synthetic"), default="default")
    p.add_argument("--rows", type=int, default=1_000_000, help="rows of the synthetic case")
    p.add_argument("--search-iterations", type=int, help="04's search_iterations (all cases)")
    p.add_argument("--cv-folds", type=int, help="04's cv_folds (all cases)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per notebook")
    p.add_argument("--keep", action="store_true", help="keep the temporary project roots")
    p.add_argument("--json", help="also write the full reports to this JSON file")
    args = p.parse_args(argv)
    if args.rows < 1000:
        p.error(f"--rows must be at least 1000, got {args.rows}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    cases = ["default", "synthetic"] if args.case == "all" else [args.case]
    print(f"cpus {os.cpu_count()}; python {sys.version.split()[0]}; load average {loadavg()}")
    reports = [run_case(case, args) for case in cases]
    for report in reports:
        print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(reports, indent=2, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
