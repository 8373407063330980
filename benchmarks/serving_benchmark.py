"""Latency and throughput of the local endpoint against `mlflow models serve` on one model.

Run: .venv/bin/python benchmarks/serving_benchmark.py [--model NAME[:VERSION]] [--root PATH]
     [--model-dir PATH] [--seconds 5] [--rounds 5] [--workers 1]

The model: a registered version of the project's registry (``--model``, read from
``--root`` or the default project root), a version folder (``--model-dir``), or by default a
150-tree RandomForest behind the project's preprocessing, trained by notebooks 01, 03 and 04
(ingest the bundled penguins, preprocess, fit, register) in a temporary project root.
The version's processed test split gives the parity rows and the request rows. It is
packaged in a temporary AMLKIT_ROOT (ONNX fast path when the parity check passes), served by
azmlinfsrv on loopback and, at the same time, by `mlflow models serve --env-manager local` on
the same version folder. The two take turns in ``--rounds`` short windows (``--seconds`` in
all per server and request size), so a shared machine's load falls on both alike; 1-row and
100-row requests go out from a keep-alive HTTP client
(http.client; azmlinfsrv's gunicorn sync workers close each connection, so its client
reconnects as needed). Prints p50/p99 latency, throughput, the ratios and the machine's load
average (the machine may be shared).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = "penguins-benchmark"
DEFAULT_TREES = 150


class Client:
    """Keep-alive client that reconnects when the server closes the connection."""

    def __init__(self, port: int, path: str, headers: dict[str, str]) -> None:
        self.port, self.path, self.headers = port, path, headers
        self.conn: http.client.HTTPConnection | None = None

    def post(self, body: bytes) -> int:
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                self.conn.request("POST", self.path, body=body, headers=self.headers)
                resp = self.conn.getresponse()
                resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return resp.status
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        return 0


def measure(client: Client, body: bytes, seconds: float, lat: list[float]) -> int:
    """POST ``body`` for ``seconds``; append each latency (ms) to ``lat``; return the errors."""
    for _ in range(20):
        assert client.post(body) == 200
    errors = 0
    end = time.perf_counter() + seconds
    while (start := time.perf_counter()) < end:
        status = client.post(body)
        lat.append((time.perf_counter() - start) * 1000)
        errors += status != 200
    return errors


def summary(lat: list[float], errors: int, seconds: float) -> dict[str, float]:
    lat = sorted(lat)
    return {
        "n": len(lat),
        "errors": errors,
        "p50_ms": statistics.median(lat),
        "p99_ms": lat[int(len(lat) * 0.99) - 1],
        "rps": len(lat) / seconds,
    }


def wait_http(port: int, path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing answered on port {port}{path} within {timeout}s")


def register_default_model(root: Path) -> Path:
    """Train the default model in ``root`` as users do: notebooks 01, 03 and 04 on penguins.

    The root's model_config.json keeps one candidate, a random forest of ``DEFAULT_TREES``
    trees (seed 0), so 04 registers exactly that forest behind its own preprocessing.

    Returns:
        The registered version folder.
    """
    os.environ["AMLKIT_ROOT"] = str(root)
    from amlkit.pipeline import runner

    path = root / "config" / "model_config.json"
    cfg = json.loads(path.read_text(encoding="utf-8"))
    forest = cfg["candidates"]["random_forest"]
    forest["params"]["classification"] |= {"random_state": 0}
    forest["search_space"]["classification"] = {"n_estimators": {"choice": [DEFAULT_TREES]}}
    cfg["candidates"] = {"random_forest": forest}
    path.write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    params = {"dataset": "penguins", "model_name": DEFAULT_MODEL, "search_iterations": 1}
    runner.run_pipeline(["01", "03", "04"], params | {"cv_folds": 2}, progress=False)
    return root / "models" / "trained_models" / DEFAULT_MODEL / "1"


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --model, --root and --model-dir (which model to serve) to ``parser``."""
    parser.add_argument("--model", help="registered model NAME or NAME:VERSION (champion)")
    parser.add_argument("--root", type=Path, help="project root holding the registry")
    parser.add_argument("--model-dir", type=Path, default=None, help="a version folder")


def prepare_model(args: argparse.Namespace, prefix: str) -> tuple[Path, Path, list[dict], Any]:
    """Pick the model to serve and make a fresh project root to package it in.

    Returns:
        ``(root, version folder, 100 request records, parity rows)``; ``AMLKIT_ROOT`` points
        at ``root`` (a temporary folder with config/; the default model is registered in
        ``root/source``).
    """
    root = Path(tempfile.mkdtemp(prefix=prefix))
    source_root = args.root.resolve() if args.root else None
    if args.model:
        source_root = source_root or Path(os.environ.get("AMLKIT_ROOT", REPO)).resolve()
        os.environ["AMLKIT_ROOT"] = str(source_root)
        from amlkit.serving.package import resolve_model_dir

        name, _, number = args.model.partition(":")
        version = resolve_model_dir(name, number or None)
    elif args.model_dir:
        version = args.model_dir.resolve()
    else:
        source_root = root / "source"
        shutil.copytree(REPO / "config", source_root / "config")
        version = register_default_model(source_root)
    rows, parity = request_rows(version, source_root)
    shutil.copytree(REPO / "config", root / "config")
    os.environ["AMLKIT_ROOT"] = str(root)
    return root, version, rows, parity


def package_model(
    args: argparse.Namespace, prefix: str, service: str
) -> tuple[Path, Path, list[dict], Any, Path]:
    """Print the load average, then :func:`prepare_model` and package it as ``service``.

    Returns:
        ``(root, version folder, 100 request records, parity rows, service folder)``.
    """
    print(f"load average before: {tuple(round(x, 2) for x in os.getloadavg())}")
    root, version, rows, parity_rows = prepare_model(args, prefix)
    from amlkit.serving.package import package_service

    folder = package_service(version, service=service, parity_rows=parity_rows)
    return root, version, rows, parity_rows, folder


def request_rows(model_dir: Path, source_root: Path | None) -> tuple[list[dict], Any]:
    """Return 100 request records and the parity rows (the version's processed test split)."""
    import pandas as pd

    if source_root is None:
        raise SystemExit(f"give --root, the project whose processed data trained {model_dir}")
    meta = json.loads((model_dir / "model_metadata.json").read_text())
    os.environ["AMLKIT_ROOT"] = str(source_root)
    from amlkit.data import preprocess

    data = meta.get("data") or {}
    parity = preprocess.load_processed(data["dataset"], data.get("version", "latest")).test
    frame = parity[meta["feature_columns"]]
    frame = pd.concat([frame] * (100 // len(frame) + 1), ignore_index=True).head(100)
    return json.loads(frame.to_json(orient="records")), parity


@contextlib.contextmanager
def mlflow_serve(version: Path, port: int, workers: int, root: Path) -> Iterator[None]:
    """Run `mlflow models serve --env-manager local` on ``version`` at ``port``."""
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", str(version)]
    cmd += ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "--workers", str(workers)]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    with open(root / "mlflow-serve.log", "wb") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
        try:
            wait_http(port, "/ping", 120)
            yield
        finally:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="per setup and size")
    parser.add_argument("--rounds", type=int, default=5, help="turns the seconds are split in")
    parser.add_argument("--workers", type=int, default=1)
    add_model_arguments(parser)
    parser.add_argument("--skip-mlflow", action="store_true")
    args = parser.parse_args()
    root, version, rows, _, folder = package_model(args, "amlkit-bench-", "bench")
    from amlkit.serving.server import free_port, serve

    info = json.loads((folder / "service_metadata.json").read_text())
    model_type = json.loads((version / "model_metadata.json").read_text()).get("model_type")
    print(f"model: {info['model']['name']} v{info['model']['version']} ({model_type})")
    print(f"backend: {info['backend']} ({info['backend_reason']})")
    bodies = {"1 row": rows[:1], "100 rows": rows}
    clients: dict[str, tuple[Client, Any]] = {}
    with contextlib.ExitStack() as stack:
        endpoint = stack.enter_context(serve(folder, port=0, workers=args.workers))
        ours = Client(endpoint.port, "/score", endpoint.headers())
        clients["azmlinfsrv"] = (ours, lambda r: r)
        if not args.skip_mlflow:
            port = free_port()
            stack.enter_context(mlflow_serve(version, port, args.workers, root))
            theirs = Client(port, "/invocations", {"Content-Type": "application/json"})
            clients["mlflow serve"] = (theirs, lambda r: {"dataframe_records": r})
        # both servers up; they take turns in short windows, so load from others on a shared
        # machine falls on both alike
        lat: dict[str, list[float]] = {}
        errors: dict[str, int] = {}
        for _ in range(args.rounds):
            for size, records in bodies.items():
                for setup, (client, wrap) in clients.items():
                    name = f"{setup} {size}"
                    body = json.dumps(wrap(records)).encode()
                    window = args.seconds / args.rounds
                    errs = measure(client, body, window, lat.setdefault(name, []))
                    errors[name] = errors.get(name, 0) + errs
    results = {name: summary(lat[name], errors[name], args.seconds) for name in lat}
    print(f"{'setup':24} {'n':>7} {'errors':>6} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}")
    for name, r in results.items():
        print(
            f"{name:24} {r['n']:7d} {r['errors']:6d} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} "
            f"{r['rps']:8.1f}"
        )
    for size in ("1 row", "100 rows"):
        ours, theirs = results[f"azmlinfsrv {size}"], results.get(f"mlflow serve {size}")
        if theirs:
            print(
                f"{size}: p50 {theirs['p50_ms'] / ours['p50_ms']:.1f}x lower, "
                f"throughput {ours['rps'] / theirs['rps']:.1f}x higher than mlflow serve"
            )
    print(f"load average after: {tuple(round(x, 2) for x in os.getloadavg())}")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
