"""Endpoint keys for auth mode ``key``: generate, store (0600), show, regenerate, check.

Keys live in ``state_dir()/endpoints/<endpoint>/keys.json`` (the state folder is ignored by
git) as ``{"primary": ..., "secondary": ..., "created": ...}``, like Azure ML's two keys.
Clients send ``Authorization: Bearer <key>``; either key is accepted, compared with
:func:`hmac.compare_digest`.
"""

from __future__ import annotations

import hmac
import json
import secrets
from datetime import UTC, datetime
from pathlib import Path

from amlkit import io, paths

KEY_NAMES = ("primary", "secondary")
KEY_BYTES = 32


def endpoint_dir(endpoint: str) -> Path:
    """Return ``state_dir()/endpoints/<endpoint>`` (created, 0700)."""
    if not endpoint or "/" in endpoint or endpoint.startswith("."):
        raise ValueError(f"endpoint name {endpoint!r} is not a plain name; use letters, digits, -")
    path = paths.state_dir() / "endpoints" / endpoint
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def keys_path(endpoint: str) -> Path:
    """Return the keys file of ``endpoint``."""
    return endpoint_dir(endpoint) / "keys.json"


def _write_keys(path: Path, keys: dict[str, str]) -> None:
    # mkstemp creates the temporary file 0600, so the keys are never readable by others
    io.write_text_atomic(path, json.dumps(keys, indent=2), mode=0o600)


def ensure_keys(endpoint: str) -> Path:
    """Create the endpoint's keys if they do not exist yet; return the file path."""
    path = keys_path(endpoint)
    if not path.is_file():
        now = datetime.now(UTC).isoformat(timespec="seconds")
        keys = {name: secrets.token_urlsafe(KEY_BYTES) for name in KEY_NAMES}
        _write_keys(path, {**keys, "created": now})
    return path


def show_keys(endpoint: str) -> dict[str, str]:
    """Return the endpoint's keys (created on first use), for ``amlkit keys <endpoint>``."""
    return json.loads(ensure_keys(endpoint).read_text(encoding="utf-8"))


def regenerate_key(endpoint: str, which: str = "primary") -> dict[str, str]:
    """Replace one key (``primary`` or ``secondary``); a running server picks it up.

    Returns:
        The new keys.
    """
    if which not in KEY_NAMES:
        raise ValueError(f"key {which!r} is not one of {KEY_NAMES}; pick primary or secondary")
    keys = show_keys(endpoint)
    keys[which] = secrets.token_urlsafe(KEY_BYTES)
    keys["created"] = datetime.now(UTC).isoformat(timespec="seconds")
    _write_keys(keys_path(endpoint), keys)
    return keys


class KeyChecker:
    """Check ``Authorization`` headers against a keys file, reloading it when it changes.

    Args:
        path: the keys file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._mtime = -1
        self._keys: list[bytes] = []
        self._reload()

    def _reload(self) -> None:
        stat = self.path.stat()
        if stat.st_mtime_ns != self._mtime:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            self._keys = [data[k].encode() for k in KEY_NAMES if data.get(k)]
            self._mtime = stat.st_mtime_ns
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
        ok = False
        for key in self._keys:  # no early exit: same work for every key
            ok |= hmac.compare_digest(given, key)
        return ok
