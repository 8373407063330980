"""Check a model folder's files against the sha256 recorded when it was written.

The one check behind every load of a model: the registry (:func:`amlkit.registry.store.verify`,
``store.load_model``), packaging, a service and batch scoring (:mod:`amlkit.serving.runtime`).
A pickled model runs code when it is loaded, so a file that went missing, changed or was
added since its record was written is refused, by name, before anything is unpickled.
Standard library and :mod:`amlkit.io` only: a service's lean environment imports this module.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from amlkit import io

VERSION_FIX = (
    "the version folder was changed after registration; restore the file, or register the "
    "model again (a written version is never edited)"
)
SERVICE_FIX = "package the service again (amlkit package) rather than editing its files"


class ModelIntegrityError(RuntimeError, ValueError):
    """A model file differs from the record written with it: missing, changed or added.

    A RuntimeError (as the registry raised) and a ValueError (as a service raised).
    """


def list_files(
    folder: Path, *, exclude: Collection[str] = (), skip_hidden: bool = False
) -> dict[str, Path]:
    """Return ``{relative posix path: file}`` of every file under ``folder``, sorted.

    ``exclude`` names relative paths to leave out; ``skip_hidden`` leaves out dot files and
    ``__pycache__`` (what a copy or a mount may add beside a service's model).
    """
    found = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        hidden = any(part.startswith(".") or part == "__pycache__" for part in Path(rel).parts)
        if rel not in exclude and not (skip_hidden and hidden):
            found[rel] = path
    return found


def file_records(folder: Path, *, exclude: Collection[str] = ()) -> dict[str, dict[str, Any]]:
    """Return ``{relative path: {"sha256", "bytes"}}`` of every file under ``folder``.

    What ``model_metadata.json`` records in ``files`` (``exclude``: the metadata itself).
    """
    return {
        rel: {"sha256": io.sha256_file(path), "bytes": path.stat().st_size}
        for rel, path in list_files(folder, exclude=exclude).items()
    }


def _expected(value: str | Mapping[str, Any]) -> tuple[str, int | None]:
    if isinstance(value, str):
        return value, None
    return str(value["sha256"]), (int(value["bytes"]) if "bytes" in value else None)


def check_files(
    folder: Path,
    recorded: Mapping[str, str | Mapping[str, Any]],
    *,
    record: str | Path,
    fix: str,
    exclude: Collection[str] = (),
    skip_hidden: bool = False,
) -> dict[str, str]:
    """Check every file of ``folder`` against ``recorded``; return ``{relative path: sha256}``.

    Args:
        folder: the model folder.
        recorded: ``{relative path: sha256}`` or ``{relative path: {"sha256", "bytes"}}``
            (sizes are compared first: a truncated file is named without hashing it).
        record: the file that holds ``recorded``, named in the error.
        fix: what to do about a refused file, appended to the error.
        exclude: relative paths that are not checked (the record itself).
        skip_hidden: see :func:`list_files`.

    Raises:
        ModelIntegrityError: a recorded file is missing, differs or a file was added; it
            names the file, the record and ``fix``.
    """
    present = list_files(folder, exclude=exclude, skip_hidden=skip_hidden)
    if not recorded:
        raise ModelIntegrityError(
            f"{record} records no file hashes for {folder}; refusing to load the model: {fix}."
        )
    hashes = {}
    for rel in sorted(set(present) | set(recorded)):
        path = folder / rel
        problem = None
        if rel not in present:
            problem = f"is missing, though {record} records it"
        elif rel not in recorded:
            problem = f"was added: {record} does not record it"
        else:
            sha256, size = _expected(recorded[rel])
            got_size = present[rel].stat().st_size
            if size is not None and got_size != size:
                problem = f"is {got_size} bytes, but {record} records {size} (truncated or changed)"
            elif (got := io.sha256_file(present[rel])) != sha256:
                problem = f"has sha256 {got}, but {record} records {sha256}"
            else:
                hashes[rel] = got
        if problem:
            raise ModelIntegrityError(
                f"model file {path} {problem}; refusing to load the model: {fix}."
            )
    return hashes


def read_verified(path: Path, sha256: str) -> bytes:
    """Return a checked file's bytes, hashed again: the bytes loaded are the bytes checked."""
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ModelIntegrityError(
            f"model file {path} changed while it was being loaded; refusing to load it."
        )
    return data
