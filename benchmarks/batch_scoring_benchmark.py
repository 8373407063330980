"""Batch scoring: `amlkit score` against a plain pandas + mlflow.pyfunc script, same file.

Run: .venv/bin/python benchmarks/batch_scoring_benchmark.py [--rows 1000000] [--repeat 3]
     [--model NAME[:VERSION] --root PATH]

The model is the one serving_benchmark.py serves (by default the 150-tree penguins forest
that notebooks 01, 03 and 04 register in a temporary root), packaged as a service (ONNX when
the parity check passes). ``--rows`` rows are drawn with replacement from its processed test
split into one Parquet file. Each contender runs as its own process, as a user would run it,
from interpreter start to the written Parquet file; they take turns ``--repeat`` times and
the medians of wall and CPU time are printed with the ratios to the peer:

- peer: a script that loads the version with ``mlflow.pyfunc.load_model``, reads the file
  with pandas, predicts and writes the frame with a ``prediction`` column;
- ``amlkit score --model NAME:VERSION``: the same pickled pipeline, plus one probability
  column per class;
- ``amlkit score --service``: the service's ONNX model, same columns.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time

from serving_benchmark import add_model_arguments, package_model

PEER = """
import sys
import mlflow.pyfunc
import pandas as pd

model = mlflow.pyfunc.load_model(sys.argv[1])
frame = pd.read_parquet(sys.argv[2])
frame["prediction"] = model.predict(frame[sys.argv[4].split(",")])
frame.to_parquet(sys.argv[3], index=False)
"""


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run ``cmd``; return its wall seconds and its CPU seconds (user + system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd[:4])} failed:\n{done.stderr[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    for flag, default in (("--rows", 1_000_000), ("--repeat", 3)):
        parser.add_argument(flag, type=int, default=default)
    add_model_arguments(parser)
    args = parser.parse_args()
    root, version, _, parity_rows, folder = package_model(args, "amlkit-batch-", "bench")
    meta = json.loads((version / "model_metadata.json").read_text())
    features = meta["feature_columns"]
    frame = parity_rows[features].sample(args.rows, replace=True, random_state=0)
    source = root / "rows.parquet"
    frame.reset_index(drop=True).to_parquet(source, index=False)
    backend = json.loads((folder / "service_metadata.json").read_text())["backend"]
    print(f"model: {meta['name']} v{meta['version']} ({meta.get('model_type')}), {args.rows} rows")

    registry_root = args.root.resolve() if args.root else root / "source"
    amlkit = [sys.executable, "-m", "amlkit.cli", "score", str(source), "--no-progress"]
    out = {name: str(root / f"{name}.parquet") for name in ("peer", "model", "service")}
    peer = [sys.executable, "-c", PEER, str(version), str(source), out["peer"]]
    contenders = {
        "pandas + mlflow.pyfunc": ([*peer, ",".join(features)], {}),
        "amlkit score --model": (
            [*amlkit, f"--model={meta['name']}:{meta['version']}", f"--output={out['model']}"],
            {"AMLKIT_ROOT": str(registry_root)},
        ),
        f"amlkit score --service ({backend})": (
            [*amlkit, f"--service={folder}", f"--output={out['service']}"],
            {},
        ),
    }
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in contenders}
    for _ in range(args.repeat):
        for name, (cmd, extra) in contenders.items():
            runs[name].append(timed(cmd, {**os.environ, **extra}))
    import pandas as pd

    labels = pd.read_parquet(out["peer"])["prediction"]
    for name in ("model", "service"):
        same = (pd.read_parquet(out[name])["prediction"] == labels).mean()
        print(f"amlkit score --{name}: predictions equal to the peer's: {same:.4%}")
    wall = {name: statistics.median(w for w, _ in r) for name, r in runs.items()}
    cpu = {name: statistics.median(c for _, c in r) for name, r in runs.items()}
    peer_name = next(iter(runs))
    print("medians; CPU = user + system seconds, steadier than wall time on a shared machine")
    head = ("wall s", "vs peer", "CPU s", "vs peer", "rows/s")
    print(f"{'contender':32} " + " ".join(f"{h:>8}" for h in head))
    for name in runs:
        print(
            f"{name:32} {wall[name]:7.2f} {wall[name] / wall[peer_name]:7.2f}x "
            f"{cpu[name]:7.2f} {cpu[name] / cpu[peer_name]:7.2f}x {args.rows / wall[name]:8.0f}"
        )
    each = {name: " ".join(f"{w:.1f}" for w, _ in r) for name, r in runs.items()}
    print("wall seconds of each run: " + "; ".join(f"{n}: {e}" for n, e in each.items()))
    print(f"load average after: {tuple(round(x, 2) for x in os.getloadavg())}")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
