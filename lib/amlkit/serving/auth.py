"""Endpoint keys for auth mode ``key``: two keys, like Azure ML's, sent as a Bearer token.

Keys live in ``state_dir()/endpoints/<endpoint>/keys.json`` (mode 600, git-ignored).
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
from datetime import UTC, datetime
from pathlib import Path

from amlkit import io, paths
from amlkit.names import check_name
from amlkit.serving.front import Tally

logger = logging.getLogger(__name__)

KEY_NAMES = ("primary", "secondary")


class KeysFileError(ValueError):
    """An endpoint's keys file is missing, unreadable or holds no keys."""


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
    """Return the endpoint's keys (created on first use); KeysFileError when the file is broken."""
    path = ensure_keys(endpoint)
    KeyChecker(path)  # the same checks as the service's: names the problem and the fix
    return json.loads(path.read_text(encoding="utf-8"))


def regenerate_key(endpoint: str, which: str = "primary") -> dict[str, str]:
    """Replace one key (``primary`` or ``secondary``); a running server picks it up."""
    if which not in KEY_NAMES:
        raise ValueError(f"key {which!r} is not one of {KEY_NAMES}; pick primary or secondary")
    return _write_keys(endpoint, show_keys(endpoint), which)


class KeyChecker:
    """Check ``Authorization`` headers against a keys file, reloading it when it changes.

    A missing, unreadable or empty keys file stops the start (:class:`KeysFileError`). Once
    serving, a keys file that breaks is logged and the last good keys stay in force, so a
    broken file is not a 401 for every request. Refused requests are counted in the server
    log (one line at most every 10 s, with the running count), not in the request log.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._mtime = -1
        self._keys: list[bytes] = []
        self._problem = ""
        self.refusals = Tally(logger, "requests refused for a missing or wrong key")
        self._reload()

    def _reload(self) -> None:
        """Read the keys file if it changed; KeysFileError naming the problem and the fix."""
        fix = (
            f"delete it and run `amlkit keys {self.path.parent.name}` to make new keys, then "
            "restart the service"
        )
        try:
            mtime = self.path.stat().st_mtime_ns
        except OSError as exc:
            raise KeysFileError(
                f"keys file {self.path} cannot be read ({exc.strerror}); start the service with "
                "amlkit.serving.server.start_server (`amlkit serve`), which creates it."
            ) from None
        if mtime == self._mtime:
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise KeysFileError(
                f"keys file {self.path} is not readable JSON ({exc}); {fix}."
            ) from None
        keys = [data[k] for k in KEY_NAMES if isinstance(data, dict) and data.get(k)]
        if not keys or not all(isinstance(k, str) for k in keys):
            raise KeysFileError(f"keys file {self.path} holds no keys (strings); {fix}.")
        self._keys, self._mtime = [k.encode() for k in keys], mtime

    def check(self, header: str | None) -> bool:
        """Return True when ``header`` is ``Bearer <a valid key>`` (the scheme in any case)."""
        scheme, _, token = (header or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            self.refusals.add("no 'Authorization: Bearer <key>' header")
            return False
        try:
            self._reload()
            self._problem = ""
        except KeysFileError as exc:  # keep serving with the keys read last
            if str(exc) != self._problem:
                self._problem = str(exc)
                logger.error("%s; the keys read before stay in force", exc)
        given = token.strip().encode()
        # no early exit: the same work for every key
        if sum(hmac.compare_digest(given, key) for key in self._keys) > 0:
            return True
        self.refusals.add("a key that is not the endpoint's")
        return False
