"""Append-only JSON-lines request log, one file per worker process, rotated by size.

Durability choice: every request's lines are written with a single ``os.write`` on a file
descriptor opened with ``O_APPEND`` *before* the response is returned. Once ``os.write``
returns, the bytes are in the kernel's page cache: they survive the worker being killed
(even with SIGKILL) and are visible to readers at once. They would not survive a power cut
or kernel crash; ``fsync`` per request would cover that but costs milliseconds on most
disks, which the latency target cannot afford. Set ``fsync=True`` to pay for it.

One file per worker (``requests-<pid>.jsonl``) means no two processes append to or rotate the
same file. Rotation renames ``.jsonl`` -> ``.jsonl.1`` -> ... up to ``backup_count``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

LOG_PATTERN = "requests-*.jsonl*"


class RequestLog:
    """A per-process append-only log.

    Args:
        folder: where the files go (created).
        max_bytes: rotate when the current file would grow past this size.
        backup_count: rotated files kept.
        fsync: also fsync after each write (survives power loss; slow).
    """

    def __init__(
        self, folder: str | Path, *, max_bytes: int, backup_count: int, fsync: bool = False
    ) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.backup_count = backup_count
        self.fsync = fsync
        self._fd = -1
        self._pid = -1
        self._size = 0

    @property
    def path(self) -> Path:
        """The current file of this process."""
        return self.folder / f"requests-{os.getpid()}.jsonl"

    def _open(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        path = self.path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._pid = os.getpid()
        self._size = os.fstat(self._fd).st_size

    def _rotate(self) -> None:
        os.close(self._fd)
        self._fd = -1
        path = self.path
        for i in range(self.backup_count - 1, 0, -1):
            src = path.with_name(f"{path.name}.{i}")
            if src.exists():
                os.replace(src, path.with_name(f"{path.name}.{i + 1}"))
        if self.backup_count > 0:
            os.replace(path, path.with_name(f"{path.name}.1"))
        else:
            path.unlink(missing_ok=True)
        self._open()

    def write(self, records: list[dict[str, Any]]) -> None:
        """Append records as JSON lines in one system call (see the module note)."""
        if self._pid != os.getpid():  # first use, or a fork
            self._open()
        data = "".join(_line(r) for r in records).encode("utf-8")
        if self._size and self._size + len(data) > self.max_bytes:
            self._rotate()
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self._size += len(data)
        if self.fsync:
            os.fsync(self._fd)

    def close(self) -> None:
        """Close the file descriptor."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


# one encoder for every line: json.dumps with options builds a new one per call (~15% more)
_ENCODE = json.JSONEncoder(separators=(",", ":"), default=str, allow_nan=False).encode


def _line(record: dict[str, Any]) -> str:
    try:
        return _ENCODE(record) + "\n"
    except ValueError:  # NaN or infinity somewhere: write null, keep the file strict JSON
        return json.dumps(_null_nans(record), separators=(",", ":"), default=str) + "\n"


def _null_nans(obj: Any) -> Any:
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _null_nans(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_null_nans(v) for v in obj]
    return obj


def read_log(folder: str | Path) -> Iterator[dict[str, Any]]:
    """Yield every record of every log file (current and rotated) in ``folder``.

    A torn last line (a writer killed mid-write, which ``os.write`` of one buffer makes
    very unlikely) is skipped.
    """
    for path in sorted(Path(folder).glob(LOG_PATTERN)):
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.endswith("\n"):
                    yield json.loads(line)
