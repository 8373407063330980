"""Notebook 05 measured as users run it: time, accuracy, memory, repeatability, serving latency.

    .venv/bin/python benchmarks/deep_digits.py             # two default runs, then latency
    .venv/bin/python benchmarks/deep_digits.py --npz16     # also digits upsampled to 16×16

Each run executes notebooks/05_deep_learning.ipynb through papermill with its default
parameters (the network, its size and its training are the notebook's, from
config/model_config.json), in a fresh project root, in its own kernel. It prints the wall
time of the whole notebook and of its training cell, the epochs run, the test scores of the
registered version, and the peak memory of the notebook's processes. Two runs must give the
same scores (determinism across processes). Then ``predict_images`` on the registered
version is timed for one image, as nested lists and as base64 PNG.
"""

from __future__ import annotations

import argparse
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

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "05_deep_learning.ipynb"


def run_notebook(root: Path, parameters: dict[str, Any]) -> dict[str, Any]:
    """Execute notebook 05 in the project root ``root``; return what it measured and wrote."""
    shutil.copytree(REPO / "config", root / "config")
    executed = root / "05_deep_learning.ipynb"
    params = [arg for key, value in parameters.items() for arg in ("-p", key, str(value))]
    command = [sys.executable, "-m", "papermill", str(NOTEBOOK), str(executed), *params]
    command += ["--cwd", str(NOTEBOOK.parent), "--no-progress-bar", "--no-log-output"]
    start = time.perf_counter()
    subprocess.run(
        command, env={**os.environ, "AMLKIT_ROOT": str(root)}, check=True, capture_output=True
    )
    wall = time.perf_counter() - start
    cells = json.loads(executed.read_text())["cells"]
    train_s = sum(
        cell["metadata"]["papermill"]["duration"]
        for cell in cells
        if cell["cell_type"] == "code" and "model.fit(" in "".join(cell["source"])
    )
    (version,) = (root / "models" / "trained_models").glob("*/1")
    metrics = json.loads((version / "performance_metrics.json").read_text())
    hyper = yaml.safe_load((version / "hyperparameters.yaml").read_text())
    return {
        "notebook_s": round(wall, 1),
        "train_s": round(train_s, 1),
        "epochs_run": hyper["epochs_run"],
        "test_accuracy": round(metrics["test"]["accuracy"], 4),
        "test_f1_macro": round(metrics["test"]["f1_macro"], 4),
        "test_log_loss": metrics["test"]["log_loss"],
        # RUSAGE_CHILDREN: the largest process waited for so far (the kernel), in MiB
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
        "version": str(version),
    }


def predict_latency(version: Path, repeats: int = 200) -> dict[str, float]:
    """Median milliseconds of ``predict_images`` for one image, per request form."""
    from amlkit.deep import pyfunc
    from amlkit.deep.images import encode_png, load_images

    model, pre = pyfunc.load_mlflow_model(version)
    x, _ = load_images()
    image = x[:1, :, :, 0]
    forms = {"lists": image.tolist(), "base64_png": [encode_png(image[0], pre["scale"])]}
    latency = {}
    for name, request in forms.items():
        pyfunc.predict_images(model, request, preprocessing=pre)  # warm up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            pyfunc.predict_images(model, request, preprocessing=pre)
            times.append(time.perf_counter() - start)
        latency[name] = round(float(np.median(times)) * 1000, 2)
    return latency


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=2, help="default runs (2 checks repeats)")
    parser.add_argument("--npz16", action="store_true", help="also run on 16×16 digits")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="amlkit-bench-05-") as tmp:
        results = []
        for i in range(args.runs):
            results.append(run_notebook(Path(tmp) / f"digits-{i}", {}))
            print(f"digits run {i + 1}:", json.dumps(results[-1]), flush=True)
        keys = ("epochs_run", "test_accuracy", "test_log_loss")
        same = all(r[k] == results[0][k] for r in results for k in keys)
        print("identical across runs:", same)
        print("predict_images p50 ms:", predict_latency(Path(results[0]["version"])))
        if args.npz16:
            from sklearn.datasets import load_digits

            digits = load_digits()
            npz = Path(tmp) / "digits16.npz"
            np.savez(npz, x=np.kron(digits.images, np.ones((1, 2, 2))), y=digits.target)
            big = run_notebook(Path(tmp) / "npz16", {"images": npz})
            print("16×16 npz run:", json.dumps(big))


if __name__ == "__main__":
    main()
