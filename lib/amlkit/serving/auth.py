"""Endpoint keys for auth mode ``key``: two keys, like Azure ML's, sent as a Bearer token.

Keys live in ``state_dir()/endpoints/<endpoint>/keys.json`` (mode 600, git-ignored).
"""

from __future__ import annotations

import hmac
import json
import secrets
from datetime import UTC, datetime
from pathlib import Path

from amlkit import io, paths
from amlkit.names import check_name

KEY_NAMES = ("primary", "secondary")


def endpoint_dir(endpoint: str) -> Path:
    """Return ``state_dir()/endpoints/<endpoint>`` (created, 0700)."""
    path = paths.state_dir() / "endpoints" / check_name("endpoint", endpoint)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def keys_path(endpoint: str) -> Path:
    """Return the keys file of ``endpoint``."""
    return endpoint_dir(endpoint) / "keys.json"


def _write_keys(endpoint: str, keys: dict[str, str], *new: str) -> dict[str, str]:
    keys = keys | {name: secrets.token_urlsafe(32) for name in new}
    keys["created"] = datetime.now(UTC).isoformat(timespec="seconds")
    # the temporary file is created 0600, so the keys are never readable by others
    io.write_text_atomic(keys_path(endpoint), json.dumps(keys, indent=2), mode=0o600)
    return keys


def ensure_keys(endpoint: str) -> Path:
    """Create the endpoint's keys if they do not exist yet; return the file path."""
    path = keys_path(endpoint)
    if not path.is_file():
        _write_keys(endpoint, {}, *KEY_NAMES)
    return path


def show_keys(endpoint: str) -> dict[str, str]:
    """Return the endpoint's keys (created on first use)."""
    return json.loads(ensure_keys(endpoint).read_text(encoding="utf-8"))


def regenerate_key(endpoint: str, which: str = "primary") -> dict[str, str]:
    """Replace one key (``primary`` or ``secondary``); a running server picks it up."""
    if which not in KEY_NAMES:
        raise ValueError(f"key {which!r} is not one of {KEY_NAMES}; pick primary or secondary")
    return _write_keys(endpoint, show_keys(endpoint), which)


class KeyChecker:
    """Check ``Authorization`` headers against a keys file, reloading it when it changes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._mtime = -1
        self._keys: list[bytes] = []
        self._reload()

    def _reload(self) -> None:
        mtime = self.path.stat().st_mtime_ns
        if mtime != self._mtime:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            self._keys = [data[k].encode() for k in KEY_NAMES if data.get(k)]
            self._mtime = mtime
            if not self._keys:
                raise ValueError(f"{self.path} holds no keys; run amlkit keys --regenerate")

    def check(self, header: str | None) -> bool:
        """Return True when ``header`` is ``Bearer <a valid key>``."""
        if not header or not header.startswith("Bearer "):
            return False
        try:
            self._reload()
        except (OSError, ValueError):
            return False
        given = header[7:].strip().encode()
        # no early exit: the same work for every key
        return sum(hmac.compare_digest(given, key) for key in self._keys) > 0
