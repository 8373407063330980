"""Atomic writes, append-only lines, hashing, and locks: nothing half-written is lost or fatal.

Writers of one data set, model or service hold one :func:`locked` lock while they write, so a
temporary file that the holder finds beside the versions was left by a killed writer.

Append-only logs (request logs, ``decisions.jsonl``) go through :class:`LineAppender` and
:func:`read_lines`: a write cut short (a full disk, a killed writer) leaves a torn line that
the reader skips with a warning, and the next record starts on a fresh line instead of being
glued onto it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from amlkit import paths

logger = logging.getLogger(__name__)

LOCK_TIMEOUT_S = 900.0

T = TypeVar("T")


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


class LineAppender:
    """Append whole lines to one file, never gluing a record onto a torn one.

    Each line goes out in one ``os.write`` loop on an ``O_APPEND`` descriptor. When a write
    fails part-way (``ENOSPC``...), or the file was found ending mid-line when opened (a
    writer killed mid-write), the next line starts with a newline: the torn line stays a
    line of its own, which :func:`read_lines` skips, and the records after it read back.
    """

    def __init__(self, path: str | os.PathLike[str], mode: int = 0o600) -> None:
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, mode)
        self.size = os.fstat(self._fd).st_size
        self._mid_line = self.size > 0 and os.pread(self._fd, 1, self.size - 1) != b"\n"

    def append(self, data: bytes) -> None:
        """Append ``data`` (whole lines, ending with a newline); OSError as the system gives it."""
        if self._mid_line:
            data = b"\n" + data
        view, written = memoryview(data), 0
        try:
            while written < len(data):
                written += os.write(self._fd, view[written:])
        finally:
            self.size += written
            if written:  # nothing written leaves the file as it was
                self._mid_line = written < len(data) or not data.endswith(b"\n")

    def sync(self) -> None:
        """Flush the file to disk (``fsync``)."""
        os.fsync(self._fd)

    def close(self) -> None:
        """Close the file descriptor."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def read_lines(
    path: str | os.PathLike[str], parse: Callable[[bytes], T]
) -> Iterator[tuple[int, T]]:
    """Yield ``(line number, parse(line))`` for each line of an append-only file.

    A line ``parse`` refuses (ValueError: torn by a failed write, or garbage) is skipped with
    a warning naming the file and the line; blank lines are skipped; an unfinished last line
    (no newline: a write in progress, or torn) is skipped silently. Line numbers start at 1.
    """
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.endswith(b"\n"):
                logger.debug("%s line %d is unfinished; skipped", path, number)
                break
            if not line.strip():
                continue
            try:
                value = parse(line)
            except ValueError as exc:  # json's, orjson's and pydantic's errors are ValueErrors
                reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
                logger.warning(
                    "%s line %d is damaged (%s); skipped it (%d bytes: %r)",
                    path,
                    number,
                    reason,
                    len(line),
                    line[:80],
                )
                continue
            yield number, value
