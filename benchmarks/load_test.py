"""Load test: N concurrent clients against the local endpoint for a fixed time.

Run: .venv/bin/python benchmarks/load_test.py [--model NAME[:VERSION]] [--root PATH]
     [--model-dir PATH] [--clients 16] [--seconds 30] [--workers 2]

Packages a registered model (``--model`` from ``--root``'s registry, ``--model-dir``, or by
default the 150-tree penguins RandomForest that serving_benchmark.py registers the project's
way) in a temporary AMLKIT_ROOT, starts azmlinfsrv on loopback and lets
each client thread POST 1-10-row requests (with the endpoint key) until time is up. Prints
request counts, errors, latency percentiles and the load average; exits 1 on any error.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import threading
import time

from serving_benchmark import Client, add_model_arguments, package_model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=2)
    add_model_arguments(parser)
    args = parser.parse_args()
    root, _, rows, _, folder = package_model(args, "amlkit-load-", "load")
    from amlkit.serving.requestlog import read_log
    from amlkit.serving.server import serve

    info = json.loads((folder / "service_metadata.json").read_text())
    print(f"model: {info['model']['name']} v{info['model']['version']}, backend {info['backend']}")
    bodies = [json.dumps(random.Random(i).sample(rows, 1 + i % 10)).encode() for i in range(64)]
    latencies: list[list[float]] = [[] for _ in range(args.clients)]
    errors: list[list[str]] = [[] for _ in range(args.clients)]

    with serve(folder, port=0, workers=args.workers) as endpoint:
        deadline = time.perf_counter() + args.seconds

        def run(n: int) -> None:
            client = Client(endpoint.port, "/score", endpoint.headers())
            i = n
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                try:
                    status = client.post(bodies[i % len(bodies)])
                except Exception as exc:  # counted, not raised: the test reports them
                    errors[n].append(repr(exc))
                    continue
                latencies[n].append((time.perf_counter() - start) * 1000)
                if status != 200:
                    errors[n].append(f"HTTP {status}")
                i += 1

        threads = [threading.Thread(target=run, args=(n,)) for n in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=args.seconds + 60)
        log_dir = endpoint.request_log_dir
    lat = sorted(x for per in latencies for x in per)
    errs = [e for per in errors for e in per]
    logged = sum(1 for r in read_log(log_dir) if r.get("status") == 200 and r["row"] == 0)
    n = len(lat)
    print(f"clients {args.clients}, workers {args.workers}, {args.seconds:.0f} s")
    print(f"requests {n}, errors {len(errs)}, throughput {n / args.seconds:.1f} req/s")
    if n:
        pick = lambda q: lat[min(n - 1, int(n * q))]  # noqa: E731
        print(
            f"latency ms: p50 {pick(0.5):.2f}  p90 {pick(0.9):.2f}  "
            f"p99 {pick(0.99):.2f}  max {lat[-1]:.2f}"
        )
    print(f"requests in the request log: {logged}")
    if errs:
        print("first errors:", errs[:5])
    print(f"load average after: {tuple(round(x, 2) for x in os.getloadavg())}")
    shutil.rmtree(root, ignore_errors=True)
    return 1 if errs or n == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
