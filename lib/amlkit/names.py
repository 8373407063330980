"""The one rule for every name that becomes a folder or file name.

Model, service, endpoint, data set and deployment names and run ids all end up as one path
component under the project (``trained_models/<model>``, ``deployed_models/<service>``,
``data/raw/<data set>``, ``.amlkit/endpoints/<endpoint>``, ``runs/<run id>``). A name that
passes :func:`check_name` is a single, plain component: no ``/``, no ``..``, no leading dot,
no shell characters, so it can never point outside the folder it is joined to.
Azure ML has stricter rules for some of these (endpoint names); ``amlkit.config`` keeps those
on top of this one.
"""

from __future__ import annotations

import re
from typing import TypeGuard

MAX_LENGTH = 128
NAME_PATTERN = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_LENGTH - 1}}}")
ALLOWED = (
    f"use 1-{MAX_LENGTH} letters, digits, '.', '_' or '-', starting with a letter or digit "
    "(no '/', spaces or shell characters)"
)


def is_name(value: object) -> TypeGuard[str]:
    """Return whether ``value`` is a string that :func:`check_name` accepts."""
    return isinstance(value, str) and NAME_PATTERN.fullmatch(value) is not None


def check_name(kind: str, value: object) -> str:
    """Return ``value`` if it is a safe name, else raise a ValueError that says why.

    Args:
        kind: what the name names, for the message (``"model"``, ``"service"``, ``"data set"``).
        value: the name to check.

    Raises:
        ValueError: ``"<kind> name '<value>' is not allowed: use ..."``.
    """
    if not is_name(value):
        raise ValueError(f"{kind} name {value!r} is not allowed: {ALLOWED}")
    return value
