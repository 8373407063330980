"""Size of the ONNX service's lean environment against the full project environment, and a
service answering from it.

Run: .venv/bin/python benchmarks/serving_environment_size.py [--keep DIR] [--requests 200]

A penguins forest is made the way notebooks 01-04 make models (serving_benchmark's
register_default_model, in a temporary project root) and packaged as a service (ONNX fast
path). The pip requirements of the service's own ``environment.yml`` (amlkit.serving.
environments: the inference server, onnxruntime, numpy, and Azure ML's data collector client)
are installed into a fresh virtual environment, which holds no amlkit: the service folder
carries its amlkit modules. Prints the install time, the size on disk of that environment
and of this one (the project's .venv: TensorFlow, JupyterLab, papermill, ...), then serves the
service with azmlinfsrv running in the fresh environment on loopback, checks its answers
against the scorer in this environment and prints 1-row latency.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import venv
from pathlib import Path

import yaml
from serving_benchmark import register_default_model

REPO = Path(__file__).resolve().parents[1]


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder`` (links not followed)."""
    return sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def make_environment(target: Path, requirements: list[str]) -> float:
    """Create a virtual environment at ``target`` and pip-install ``requirements``; seconds."""
    started = time.perf_counter()
    venv.EnvBuilder(with_pip=True).create(target)
    pip = [str(target / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-cache-dir"]
    subprocess.run([*pip, *requirements], check=True)
    return time.perf_counter() - started


def score(url: str, headers: dict[str, str], rows: list[dict]) -> tuple[float, dict]:
    """POST ``rows``; return (milliseconds, answer)."""
    request = urllib.request.Request(
        url, data=json.dumps(rows).encode(), headers=headers, method="POST"
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    return (time.perf_counter() - started) * 1000, answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", help="build the environment here and keep it")
    parser.add_argument("--requests", type=int, default=200, help="1-row requests to time")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="amlkit-envsize-"))
    root = work / "project"
    shutil.copytree(REPO / "config", root / "config")
    version = register_default_model(root)

    from amlkit.data import preprocess
    from amlkit.serving.package import package_service
    from amlkit.serving.runtime import Scorer
    from amlkit.serving.server import serve

    test = preprocess.load_processed("penguins").test
    folder = package_service(version, service="envsize", parity_rows=test)
    spec = yaml.safe_load((folder / "environment.yml").read_text())
    requirements = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))
    backend = json.loads((folder / "service_metadata.json").read_text())["backend"]
    target = Path(args.keep) if args.keep else work / "onnx-env"
    seconds = make_environment(target, requirements)
    lean, full = folder_bytes(target), folder_bytes(Path(sys.prefix))
    print(f"service backend       {backend}")
    print(f"environment.yml pip   {', '.join(requirements)}")
    print(f"install time          {seconds:.0f} s (fresh venv, pip, no cache)")
    print(f"lean environment      {lean / 2**20:,.0f} MiB  ({target})")
    print(f"full environment      {full / 2**20:,.0f} MiB  ({sys.prefix})")
    print(f"ratio                 {full / lean:.1f}x smaller")

    scorer = Scorer(folder / "model")
    features = test[scorer.feature_columns]
    rows = json.loads(features.to_json(orient="records"))
    expected, _ = scorer.predict_frame(features)
    python = target / "bin" / "python"
    with serve(folder, port=0, python=python, startup_timeout_s=120) as endpoint:
        headers = endpoint.headers()
        _, answer = score(endpoint.url, headers, rows)
        same = answer["predictions"] == expected
        singles = [rows[i % len(rows) : i % len(rows) + 1] for i in range(args.requests)]
        latencies = [score(endpoint.url, headers, one)[0] for one in singles]
    print(f"served from it        {len(rows)} test rows, same predictions as here: {same}")
    print(
        f"1-row latency         p50 {statistics.median(latencies):.1f} ms, "
        f"p99 {statistics.quantiles(latencies, n=100)[98]:.1f} ms ({args.requests} requests)"
    )
    print(f"load average          {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    shutil.rmtree(work, ignore_errors=True)
    if not same:
        sys.exit("the lean environment answered differently")


if __name__ == "__main__":
    main()
