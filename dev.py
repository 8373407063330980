#!/usr/bin/env python3
"""Set up the project's environment and run the pipeline or the tests: the README's two commands.

    python3 dev.py pipeline   # set up .venv, then run every notebook (amlkit run)
    python3 dev.py test       # set up .venv, then lint, type check, unit tests, papermill and nbval

Both are idempotent: the virtual environment is created once and reinstalled only when
pyproject.toml changes (a stamp file records its hash), and the Jupyter kernel the notebooks
declare, "Python (amlkit)", is registered whenever it is missing. Needs only Python 3.11,
pip and venv.
Extra arguments after the command go to `amlkit run` or pytest.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".amlkit-installed"
KERNEL_NAME, KERNEL_DISPLAY_NAME = "amlkit", "Python (amlkit)"


def sh(*cmd: str | Path) -> None:
    """Run a command from the repository root; stop with its exit code on failure."""
    print("+", " ".join(str(c) for c in cmd), flush=True)
    code = subprocess.call([str(c) for c in cmd], cwd=ROOT)
    if code:
        sys.exit(code)


def setup() -> None:
    """Create .venv and install the project (editable, with dev tools) when needed."""
    if sys.version_info[:2] not in ((3, 11), (3, 12)):
        sys.exit(f"Python 3.11 or 3.12 is needed; this is {sys.version.split()[0]}")
    if not (BIN / "python").exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == wanted:
        return
    sh(BIN / "python", "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    sh(BIN / "python", "-m", "pip", "install", "--quiet", "-e", ".[dev]")
    STAMP.write_text(wanted + "\n")


def register_kernel() -> None:
    """Register the Jupyter kernel the notebooks declare, running .venv's Python, if needed.

    The committed notebooks name this kernel in their metadata, so JupyterLab, papermill
    (``amlkit run``) and nbval all start the project's environment. It lives in
    .venv/share/jupyter/kernels/ and is registered again when missing or when it runs
    another Python (a moved or re-created checkout).
    """
    spec = VENV / "share" / "jupyter" / "kernels" / KERNEL_NAME / "kernel.json"
    if spec.is_file():
        python = Path(json.loads(spec.read_text(encoding="utf-8"))["argv"][0])
        if python.parent.resolve() == BIN.resolve():
            return
    sh(
        BIN / "python",
        "-m",
        "ipykernel",
        "install",
        "--sys-prefix",
        "--name",
        KERNEL_NAME,
        "--display-name",
        KERNEL_DISPLAY_NAME,
    )


def main() -> None:
    """Dispatch ``pipeline`` or ``test``."""
    if len(sys.argv) < 2 or sys.argv[1] not in ("pipeline", "test", "setup"):
        sys.exit(__doc__)
    command, extra = sys.argv[1], sys.argv[2:]
    setup()
    register_kernel()  # before nbval, which starts the kernel each notebook declares
    env_bin = str(BIN)
    os.environ["PATH"] = env_bin + os.pathsep + os.environ.get("PATH", "")
    os.environ.pop("AMLKIT_ROOT", None)
    if command == "pipeline":
        sh(BIN / "amlkit", "run", *extra)
    elif command == "test":
        # nbval executes the notebooks against a fresh project root (config/ only), so the
        # committed outputs compare equal whatever the user's own data and registry hold.
        test_root = ROOT / ".amlkit" / "test-project"
        shutil.rmtree(test_root, ignore_errors=True)
        shutil.copytree(ROOT / "config", test_root / "config")
        os.environ["AMLKIT_ROOT"] = str(test_root)
        sh(BIN / "ruff", "check", ".")
        sh(BIN / "ruff", "format", "--check", ".")
        sh(BIN / "mypy")  # lib/ type-checked; settings in pyproject.toml
        sh(
            BIN / "python",
            "-m",
            "pytest",
            "notebooks",
            "tests",
            "--nbval",
            "--nbval-sanitize-with",
            "tests/nbval_sanitize.cfg",
            *extra,
        )


if __name__ == "__main__":
    main()
