"""Start-up time of every `amlkit` command, beside the interpreter's and papermill's.

Run: .venv/bin/python benchmarks/cli_startup.py [--repeat 5]

Times ``amlkit --help`` and ``amlkit <command> --help`` for every command of the parser
(argument parsing is where a command would pay for eager imports), each as a fresh process,
``--repeat`` times in turns, and prints the medians beside, measured in the same turns, a bare
``python -c pass`` (the floor) and ``papermill --help`` (the CLI that ``amlkit run`` drives).
Target: every command under one second.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    from amlkit.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    amlkit = str(BIN / "amlkit")
    runs = {
        "python -c pass (floor)": [sys.executable, "-c", "pass"],
        "papermill --help (peer)": [str(BIN / "papermill"), "--help"],
        "amlkit --help": [amlkit, "--help"],
        **{f"amlkit {name} --help": [amlkit, name, "--help"] for name in sub.choices},
    }
    print(f"load average before: {tuple(round(x, 2) for x in os.getloadavg())}")
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeat):
        for name, cmd in runs.items():
            seconds[name].append(timed(cmd))
    peer = statistics.median(seconds["papermill --help (peer)"])
    print(f"{'command':28} {'median s':>9} {'max s':>7} {'vs papermill':>13}")
    for name, times in seconds.items():
        med = statistics.median(times)
        print(f"{name:28} {med:9.3f} {max(times):7.3f} {med / peer:12.2f}x")
    slow = [n for n, t in seconds.items() if n.startswith("amlkit") and statistics.median(t) >= 1]
    print("every amlkit command under 1 s" if not slow else f"1 s or more: {slow}")
    print(f"load average after: {tuple(round(x, 2) for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
