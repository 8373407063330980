"""Virtual environments for the peers the benchmarks measure against (never project dependencies).

MLServer (serving), NannyML (performance estimation) and Evidently (drift) each get their own
environment under ``$AMLKIT_PEERS_DIR`` (default ``~/.cache/amlkit-peers``), made with uv from
the package registry the first time a benchmark asks and reused after. A benchmark runs the
peer's half of a measurement with that environment's Python (:func:`run_json`) and reads its
figures back as JSON, so the peer's libraries never load into the project's process.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

PEERS: dict[str, tuple[str, ...]] = {
    "mlserver": ("mlserver==1.7.*", "mlserver-sklearn==1.7.*"),
    "nannyml": ("nannyml==0.13.*", "statsmodels"),
    "evidently": ("evidently==0.7.*", "pandas<3"),  # 0.7 fails to import on pandas 3
}
# NannyML sends usage analytics unless this is set; every peer process gets it
QUIET_ENV = {"NML_DISABLE_USAGE_LOGGING": "1", "DO_NOT_TRACK": "1"}


def peers_dir() -> Path:
    """Return the folder holding the peers' environments."""
    return Path(os.environ.get("AMLKIT_PEERS_DIR", Path.home() / ".cache" / "amlkit-peers"))


def _uv() -> str:
    found = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    if not Path(found).exists():
        raise RuntimeError("uv builds the peers' environments: run python3 dev.py setup first")
    return found


def peer_python(name: str, packages: tuple[str, ...] | None = None) -> Path:
    """Return the Python of the peer's environment, creating it on first use.

    Args:
        name: a key of :data:`PEERS`, or any name when ``packages`` is given.
        packages: requirement strings (default: ``PEERS[name]``).

    Raises:
        KeyError: an unknown peer without ``packages``.
        RuntimeError: the environment could not be built (the installer's output is named).
    """
    wanted = tuple(packages or PEERS[name])
    tag = hashlib.sha256("\n".join(wanted).encode()).hexdigest()[:10]
    target = peers_dir() / f"{name}-{tag}"
    python = target / "bin" / "python"
    if (target / ".complete").is_file():
        return python
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    uv = _uv()
    steps = (
        [uv, "venv", "--quiet", "--python", "3.11", str(target)],
        [uv, "pip", "install", "--quiet", "--python", str(python), *wanted],
    )
    for cmd in steps:
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode:
            shutil.rmtree(target, ignore_errors=True)
            raise RuntimeError(
                f"could not build the {name} environment ({' '.join(cmd[:3])}): "
                f"{(done.stderr or done.stdout).strip()[-800:]}"
            )
    (target / ".complete").write_text("\n".join(wanted) + "\n", encoding="utf-8")
    return python


def peer_env() -> dict[str, str]:
    """Return this process's environment with the peers' analytics switched off."""
    return {**os.environ, **QUIET_ENV, "PYTHONPATH": ""}


def run_json(python: Path, script: str, payload: Any, *, timeout: float = 1800) -> Any:
    """Run ``script`` (Python source) with the peer's ``python``; send and return JSON.

    The script reads ``payload`` as JSON from stdin and prints its answer as JSON on the last
    line of stdout.

    Raises:
        RuntimeError: the script failed (its stderr's tail is in the message).
    """
    done = subprocess.run(
        [str(python), "-c", script],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        env=peer_env(),
        timeout=timeout,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"peer script failed ({python}): {done.stderr.strip()[-1500:]}")
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if not lines:
        raise RuntimeError(f"peer script printed nothing ({python}): {done.stderr.strip()[-800:]}")
    return json.loads(lines[-1])
