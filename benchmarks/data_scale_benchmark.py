"""The data stages at scale on one machine: ingestion and chunked preprocessing of 1M-10M rows.

    python benchmarks/data_scale_benchmark.py                  # 1M and 10M rows (minutes)
    python benchmarks/data_scale_benchmark.py --rows 1000000   # one size

For each size it writes a CSV of N rows and 20 columns (17 numbers, 2 labels and a 3-class
target; about 200 bytes a row, so 2 GB for 10M) to a temporary folder, then runs each step in
a child process of its own and prints its time, rows per second and peak memory (the child's
maximum resident set size, from os.wait4), beside pandas' ``read_csv`` of the same file:

- ingest: ``amlkit.data.ingest.ingest`` (copy and hash, structural check, schema check of every
  row, manifest), in chunks of data_config.json's ``chunk_rows``;
- preprocess: ``amlkit.data.stream.preprocess_in_chunks`` (03's clean, split, write and profile,
  chunk by chunk).

Everything it wrote is deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
STEPS = {
    "ingest (amlkit)": (
        "from amlkit.data import ingest\n"
        "ingest.ingest('scale', source={csv!r}, target='label', task='classification',"
        " progress=False)"
    ),
    "preprocess in chunks (amlkit)": (
        "from amlkit.config import DataConfig\n"
        "from amlkit.data import stream\n"
        "stream.preprocess_in_chunks('scale', split=DataConfig.load().split)"
    ),
    "pandas.read_csv": "import pandas as pd\npd.read_csv({csv!r})",
}


def write_csv(path: Path, rows: int, chunk: int = 500_000) -> None:
    """Write ``rows`` rows of 20 columns, in chunks (bounded memory)."""
    rng = np.random.default_rng(0)
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        frame = pd.DataFrame(
            rng.normal(100, 30, size=(n, 17)), columns=[f"x{i}" for i in range(17)]
        )
        frame["shop"] = rng.choice([f"shop_{i}" for i in range(40)], size=n)
        frame["day"] = rng.choice(["mon", "tue", "wed", "thu", "fri", "sat", "sun"], size=n)
        frame["label"] = np.where(frame["x0"] + frame["x1"] > 200, "high", "low")
        frame.loc[frame["x2"] > 150, "label"] = "rare"
        frame.to_csv(path, mode="a", header=start == 0, index=False, float_format="%.6f")


def run_child(code: str, root: Path) -> tuple[float, float]:
    """Run ``code`` in a fresh Python; return (seconds, peak resident MiB)."""
    env = {**os.environ, "AMLKIT_ROOT": str(root)}
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", code], env=env)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"step failed ({status}):\n{code}")
    return seconds, usage.ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    args = parser.parse_args()
    print(f"{'rows':>12}  {'step':<30} {'seconds':>8} {'rows/s':>10} {'peak MiB':>9}", flush=True)
    for rows in args.rows:
        work = Path(tempfile.mkdtemp(prefix="amlkit-scale-"))
        try:
            csv = work / "scale.csv"
            write_csv(csv, rows)
            root = work / "project"
            shutil.copytree(
                REPO / "config", root / "config", ignore=shutil.ignore_patterns("schemas")
            )
            for step, code in STEPS.items():
                seconds, peak = run_child(code.format(csv=str(csv)), root)
                print(
                    f"{rows:>12,}  {step:<30} {seconds:>8.1f} {rows / seconds:>10,.0f}"
                    f" {peak:>9,.0f}",
                    flush=True,
                )
            print(f"{'':>12}  (CSV {csv.stat().st_size / 2**30:.2f} GiB)", flush=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
