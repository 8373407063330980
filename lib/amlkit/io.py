"""Atomic writes, hashing, and locks: no half-written file after a crash, no overwritten version.

Writers of one data set, model or service hold one :func:`locked` lock while they write, so a
temporary file that the holder finds beside the versions was left by a killed writer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from amlkit import paths

logger = logging.getLogger(__name__)

LOCK_TIMEOUT_S = 900.0


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Return the hex sha256 of a file."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def sha256_text(text: str) -> str:
    """Return the hex sha256 of a UTF-8 string."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def canonical_json(obj: Any) -> str:
    """Serialise ``obj`` as sorted, compact JSON (stable input for hashing)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def plain(obj: Any) -> Any:
    """Return ``obj`` as JSON/YAML-safe values: numpy scalars unwrapped, NaN and inf as None."""
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set):
        return [plain(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", None) == 0:
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    return str(obj)


def write_text_atomic(path: str | os.PathLike[str], text: str, mode: int = 0o644) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename (file mode ``mode``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file."""
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


@contextmanager
def staged_directory(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder beside ``final`` to fill; rename it to ``final`` on success.

    FileExistsError when ``final`` exists or appears meanwhile: versions are immutable.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        raise FileExistsError(f"{final} already exists; a written version is never overwritten")
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    try:
        yield tmp
        try:
            os.rename(tmp, final)
        except OSError as exc:
            if final.exists():
                raise FileExistsError(
                    f"{final} was written by another process meanwhile; a written version is "
                    "never overwritten"
                ) from exc
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def locked(name: str, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the inter-process lock ``name`` (``.amlkit/locks/<name>.lock``) for the block.

    Re-entrant in one process. Raises filelock's ``Timeout`` (a ``TimeoutError``) after
    ``timeout`` seconds of waiting for another process.
    """
    from filelock import FileLock  # here: a service's lean environment has no filelock

    folder = paths.state_dir() / "locks"
    folder.mkdir(exist_ok=True)
    with FileLock(folder / f"{name}.lock", timeout=timeout, is_singleton=True):
        yield


def reclaim(folder: Path, pattern: str = ".*.partial") -> None:
    """Delete the temporaries matching ``pattern`` in ``folder``, left there by killed writers.

    Call it only while holding the lock that every writer of ``folder`` takes.
    """
    for path in sorted(folder.glob(pattern)) if folder.is_dir() else []:
        logger.warning("removing %s, left by a writer that was killed", path)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
