"""Append-only JSON-lines request log, one file per worker process, rotated by size.

Each request's lines go out in one ``os.write`` on an ``O_APPEND`` descriptor before the
response: they survive the worker being killed, not a power cut (no ``fsync``: too slow).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class RequestLog:
    """This process's log ``requests-<pid>.jsonl``, rotated past ``max_bytes`` (``.jsonl.1``...)."""

    def __init__(self, folder: str | Path, *, max_bytes: int, backup_count: int) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.backup_count = backup_count
        self._fd = -1
        self._pid = -1
        self._size = 0

    @property
    def path(self) -> Path:
        """The current file of this process."""
        return self.folder / f"requests-{os.getpid()}.jsonl"

    def _open(self) -> None:
        self.close()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._pid = os.getpid()
        self._size = os.fstat(self._fd).st_size

    def _rotate(self) -> None:
        self.close()
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

    def write(self, records: list[dict[str, Any]], common: dict[str, Any] | None = None) -> None:
        """Append records as JSON lines in one system call (NaN is written as null).

        ``common``: fields every line starts with, encoded once (the request's id, time...).
        """
        if self._pid != os.getpid():  # first use, or a fork
            self._open()
        head, sep = (_line(common)[:-2], ",") if common else ("{", "")
        lines = (head + (sep + _line(r)[1:] if r else "}\n") for r in records)
        self._append("".join(lines).encode("utf-8"))

    def write_columns(self, fields: dict[str, Any], common: dict[str, Any]) -> None:
        """Append one line per row, as :meth:`write` would, from values given column-wise.

        ``fields``: name to a list with a value per row, or to a dict of such lists (written
        as an object per row, e.g. the inputs). Each column is encoded in one call and the
        keys once, not per row: a 100-row request's lines take ~35% less time than building
        records for :meth:`write` (the floats' text is most of what is left).
        """
        if self._pid != os.getpid():
            self._open()
        pattern, columns = _pattern(fields)
        line = _line(common)[:-2].replace("%", "%%") + "," + pattern + "}\n"
        rows = zip(*columns, strict=True)
        self._append("".join([line % row for row in rows]).encode("utf-8"))

    def _append(self, data: bytes) -> None:
        if self._size and self._size + len(data) > self.max_bytes:
            self._rotate()
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        self._size += len(data)

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
        plain = json.loads(json.dumps(record, default=str), parse_constant=lambda _: None)
        return json.dumps(plain, separators=(",", ":")) + "\n"


_ENCODE_ANY = json.JSONEncoder(separators=(",", ":"), default=str).encode  # NaN: NaN
_NOT_FINITE = re.compile(r"-?Infinity|NaN")


def _cells(values: list[Any]) -> list[str]:
    """The JSON text of each value (NaN: null), from one encoding of the whole list."""
    text = _ENCODE_ANY(values)
    lists = all(type(v) is list for v in values)  # e.g. probabilities
    brackets = len(values) + 1 if lists else 1  # lists of numbers only, no deeper
    if not values or '"' in text or "{" in text or text.count("[") != brackets:
        return [_line(v)[:-1] for v in values]  # strings, objects, nesting: one by one
    if "N" in text or "I" in text:
        text = _NOT_FINITE.sub("null", text)
    if lists:
        return ["[" + cell + "]" for cell in text[2:-2].split("],[")]
    return text[1:-1].split(",")


def _pattern(fields: dict[str, Any]) -> tuple[str, list[list[str]]]:
    """``"name":%s`` for each field (an object of them for a dict), and each one's cells."""
    parts, columns = [], []
    for name, values in fields.items():
        key = _ENCODE(name).replace("%", "%%") + ":"
        if isinstance(values, dict):
            inner, cells = _pattern(values)
            parts.append(key + "{" + inner + "}")
            columns += cells
        else:
            parts.append(key + "%s")
            columns.append(_cells(values))
    return ",".join(parts), columns


def read_log(folder: str | Path) -> Iterator[dict[str, Any]]:
    """Yield every record of every log file in ``folder``; a torn last line is skipped."""
    for path in sorted(Path(folder).glob("requests-*.jsonl*")):
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.endswith("\n"):
                    yield json.loads(line)
