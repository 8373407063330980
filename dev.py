#!/usr/bin/env python3
"""Set up the project's environment and run the pipeline or the tests: the README's two commands.

    python3 dev.py pipeline   # set up .venv, then run every notebook (amlkit run)
    python3 dev.py test       # set up .venv, then lint, type check, unit tests, papermill and nbval

Both are idempotent: .venv is installed from the lock, uv.lock (exact versions, with hashes),
and synced again only when uv.lock or pyproject.toml change (a stamp file records their
hash); the Jupyter kernel the notebooks declare, "Python (amlkit)", is registered whenever it
is missing. Needs only Python 3.11, pip and venv: pip installs uv, pinned and hashed by the
lock, and uv installs the rest.

    python3 dev.py setup      # only set up .venv and the kernel
    python3 dev.py lint       # ruff check, ruff format --check, mypy (also the start of `test`)
    python3 dev.py lock       # refresh uv.lock after a change of dependencies in pyproject.toml

Extra arguments after the command go to `amlkit run`, pytest or `uv lock`: `python3 dev.py
test tests` runs the tests but not nbval, `python3 dev.py test notebooks` nbval alone, and
`python3 dev.py lock --upgrade` moves every package to its newest allowed version.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".amlkit-installed"
LOCK = ROOT / "uv.lock"
KERNEL_NAME, KERNEL_DISPLAY_NAME = "amlkit", "Python (amlkit)"
COMMANDS = ("pipeline", "test", "setup", "lint", "lock")
# uv installs into .venv (not a .venv of its own choosing) and never fetches a Python build
UV_ENV = {"UV_PROJECT_ENVIRONMENT": str(VENV), "UV_PYTHON_DOWNLOADS": "never"}


def sh(*cmd: str | Path, env: dict[str, str] | None = None) -> None:
    """Run a command from the repository root; stop with its exit code on failure."""
    print("+", " ".join(str(c) for c in cmd), flush=True)
    code = subprocess.call([str(c) for c in cmd], cwd=ROOT, env={**os.environ, **(env or {})})
    if code:
        sys.exit(code)


def locked_uv() -> str:
    """Return uv's requirement line as uv.lock pins it (``uv==X --hash=...``), or ``uv``.

    The plain name serves only ``dev.py lock`` when no readable lock exists yet.
    """
    try:
        lock = tomllib.loads(LOCK.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return "uv"
    for package in lock.get("package", []):
        if package["name"] == "uv":
            files = [*package.get("wheels", []), package.get("sdist", {})]
            hashes = " ".join(f"--hash={f['hash']}" for f in files if f.get("hash"))
            return f"uv=={package['version']} {hashes}"
    return "uv"


def ensure_uv() -> None:
    """Create .venv when missing and install uv into it with pip, pinned by the lock."""
    if sys.version_info[:2] not in ((3, 11), (3, 12)):
        sys.exit(f"Python 3.11 or 3.12 is needed; this is {sys.version.split()[0]}")
    if not (BIN / "python").exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    if (BIN / "uv").exists():
        return
    requirement = locked_uv()
    with tempfile.TemporaryDirectory() as tmp:
        pinned = Path(tmp) / "uv.txt"
        pinned.write_text(requirement + "\n", encoding="utf-8")
        hashed = ["--require-hashes"] if "--hash" in requirement else []
        sh(BIN / "python", "-m", "ensurepip", "--default-pip")
        sh(BIN / "python", "-m", "pip", "install", "--quiet", *hashed, "-r", pinned)


def setup() -> None:
    """Install .venv exactly as uv.lock says (the project editable, dev tools) when needed."""
    ensure_uv()
    inputs = (ROOT / "pyproject.toml").read_bytes() + LOCK.read_bytes()
    wanted = hashlib.sha256(inputs).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == wanted:
        return
    # --locked: stop, rather than re-resolve, when pyproject.toml changed after the lock
    sync = ["sync", "--locked", "--extra", "dev", "--python", BIN / "python"]
    print("+ uv", " ".join(str(a) for a in sync), flush=True)
    code = subprocess.call([BIN / "uv", *sync], cwd=ROOT, env={**os.environ, **UV_ENV})
    if code:
        sys.exit(
            f"installing from uv.lock failed (exit {code}); if pyproject.toml's dependencies "
            "changed, refresh the lock with `python3 dev.py lock` and commit uv.lock"
        )
    STAMP.write_text(wanted + "\n")


def install_azurite() -> None:
    """Install Azurite (the blob storage stand-in of the Azure twin) into .venv/azurite.

    Needs npm; without it the twin's tests skip and say why.
    """
    if (VENV / "azurite" / "node_modules" / ".bin" / "azurite-blob").is_file():
        return
    code = "from amlkit.azure.standins import install_azurite as i; i('.venv/azurite')"
    sh(BIN / "python", "-c", code)


def lint() -> None:
    """Lint, check the formatting and type-check (mypy; settings in pyproject.toml)."""
    sh(BIN / "ruff", "check", ".")
    sh(BIN / "ruff", "format", "--check", ".")
    sh(BIN / "mypy")


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
    """Dispatch ``pipeline``, ``test``, ``setup``, ``lint`` or ``lock``."""
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    command, extra = sys.argv[1], sys.argv[2:]
    if command == "lock":
        ensure_uv()
        sh(BIN / "uv", "lock", *extra, env=UV_ENV)
        return
    setup()
    install_azurite()
    register_kernel()  # before nbval, which starts the kernel each notebook declares
    env_bin = str(BIN)
    os.environ["PATH"] = env_bin + os.pathsep + os.environ.get("PATH", "")
    os.environ.pop("AMLKIT_ROOT", None)
    if command == "pipeline":
        sh(BIN / "amlkit", "run", *extra)
    elif command == "lint":
        lint()
    elif command == "test":
        # nbval executes the notebooks against a fresh project root (config/ only), so the
        # committed outputs compare equal whatever the user's own data and registry hold; one
        # root per run, so that a `dev.py test` started by a test leaves this one's alone.
        test_root = ROOT / ".amlkit" / f"test-project-{os.getpid()}"
        shutil.rmtree(test_root, ignore_errors=True)
        shutil.copytree(ROOT / "config", test_root / "config")
        os.environ["AMLKIT_ROOT"] = str(test_root)
        # `dev.py test tests` or `dev.py test notebooks/01_data_ingestion.ipynb` runs only those
        chosen = [a for a in extra if not a.startswith("-") and (ROOT / a.split("::")[0]).exists()]
        try:
            lint()
            sh(
                BIN / "python",
                "-m",
                "pytest",
                *([] if chosen else ["notebooks", "tests"]),
                "--nbval",
                "--nbval-sanitize-with",
                "tests/nbval_sanitize.cfg",
                *extra,
            )
        finally:
            shutil.rmtree(test_root, ignore_errors=True)


if __name__ == "__main__":
    main()
