"""Notebook 05 trained by one and by several local workers: wall time, accuracy, peak memory.

    .venv/bin/python benchmarks/distributed_training.py                # 1 and 2 workers, defaults
    .venv/bin/python benchmarks/distributed_training.py --workers 1 2 3 -p epochs 10

Each configuration runs notebooks/05_deep_learning.ipynb with papermill in a fresh project root,
one process per worker with its own TF_CONFIG on loopback ports
(:func:`amlkit.deep.cluster.run_local_workers`), as Azure ML's ``distribution: tensorflow``
starts one per node; one worker runs alone, without TF_CONFIG (the default strategy). All
configurations run in this one invocation, one after the other, on the same data. Printed for
each: the wall time of the slowest worker, the training cell's time on the chief (papermill's
cell duration), the epochs run, the test accuracy and f1_macro of the version the chief
registered, and peak resident memory: the largest worker (its papermill process or kernel) and
the sum over workers, which share this machine.

On one machine the workers share its cores and add a gRPC all-reduce to every step, so more
workers do not train this small network faster here; the figures show what distribution costs,
and that the accuracy holds. On Azure ML each worker has a node of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "05_deep_learning.ipynb"


def train(workers: int, root: Path, parameters: list[str]) -> dict[str, Any]:
    """Run notebook 05 on ``workers`` local workers in the project ``root``; return figures."""
    from amlkit.deep.cluster import run_local_workers

    shutil.copytree(REPO / "config", root / "config")
    executed = root / "05_deep_learning-worker{worker}.ipynb"
    command = [sys.executable, "-m", "papermill", str(NOTEBOOK), str(executed), *parameters]
    command += ["--cwd", str(NOTEBOOK.parent), "--no-progress-bar"]
    env = {**os.environ, "AMLKIT_ROOT": str(root)}
    runs = run_local_workers(command, workers, logs=root / "logs", env=env)
    for run in runs:
        if run.returncode:
            sys.exit(f"worker {run.index} of {workers} failed:\n{run.log.read_text()[-3000:]}")
    cells = json.loads((root / "05_deep_learning-worker0.ipynb").read_text())["cells"]
    (fit,) = [c for c in cells if c["cell_type"] == "code" and "model.fit(" in "".join(c["source"])]
    (version,) = (root / "models" / "trained_models").glob("*/1")
    metrics = json.loads((version / "performance_metrics.json").read_text())["test"]
    hyperparameters = yaml.safe_load((version / "hyperparameters.yaml").read_text())
    return {
        "workers": workers,
        "wall_s": round(max(run.wall_s for run in runs), 1),
        "train_s": round(fit["metadata"]["papermill"]["duration"], 1),
        "epochs_run": hyperparameters["epochs_run"],
        "test_accuracy": round(metrics["accuracy"], 4),
        "test_f1_macro": round(metrics["f1_macro"], 4),
        "peak_rss_mib_largest": round(max(run.peak_rss_mib for run in runs)),
        "peak_rss_mib_sum": round(sum(run.peak_rss_mib for run in runs)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts")
    parser.add_argument(
        "-p",
        dest="parameters",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="a notebook parameter, as papermill's -p (for example -p epochs 10)",
    )
    args = parser.parse_args()
    parameters = [arg for pair in args.parameters for arg in ("-p", *pair)]
    results = []
    with tempfile.TemporaryDirectory(prefix="amlkit-bench-distributed-") as tmp:
        for workers in args.workers:
            results.append(train(workers, Path(tmp) / f"{workers}-workers", parameters))
            print(json.dumps(results[-1]), flush=True)
    base = results[0]
    for result in results[1:]:
        gap = result["test_accuracy"] - base["test_accuracy"]
        slower = result["wall_s"] / base["wall_s"]
        print(
            f"{result['workers']} workers vs {base['workers']}: test accuracy "
            f"{result['test_accuracy']:.4f} vs {base['test_accuracy']:.4f} (gap {gap:+.4f}), "
            f"wall time x{slower:.2f}, training {result['train_s']} s vs {base['train_s']} s"
        )


if __name__ == "__main__":
    main()
