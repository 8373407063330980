"""Which model versions answered a window's rows, and what each one is compared with.

Every request-log record names the model, the version and the deployment that answered it
(``model_name``, ``model_version``, ``deployment``). Monitoring compares each version's rows
with that version's own reference, a :class:`Reference`: the processed data it was trained on,
and optionally the model itself (for the performance estimate) and its test scores. Rows that
name no version (older logs, files of production rows) are assigned a version by the caller
(:func:`assign_version`), never silently.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

NAME, VERSION, DEPLOYMENT = "model_name", "model_version", "deployment"
Key = tuple[str | None, str | None]  # (model name, version), None where not logged
UNLOGGED: Key = (None, None)


@dataclass(frozen=True)
class Reference:
    """What one served model version is compared with.

    Attributes:
        processed: the processed data version the model was trained on
            (:func:`amlkit.data.preprocess.load_processed`).
        model_name: the registered model's name (None when not known).
        model_version: its version (None when not known).
        model: the model, a classifier with ``predict_proba`` for the performance estimate.
        baseline: its scores on the training test split (``performance_metrics.json``'s ``test``).
    """

    processed: Any
    model_name: str | None = None
    model_version: str | None = None
    model: Any = None
    baseline: Mapping[str, float] = field(default_factory=dict)


def _text(value: Any) -> str | None:
    """Return a logged name or version as text: ``1``, ``1.0`` and ``"1"`` are all ``"1"``."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def version_key(name: Any, version: Any) -> Key:
    """Return the (name, version) key of a logged row, as text; missing parts are None."""
    return _text(name), _text(version)


def label(key: Key) -> str:
    """Return a key in words: ``"penguins-classification version 1"``."""
    name, version = key
    if version is None:
        return "the model (version not logged)"
    return f"{name} version {version}" if name else f"version {version}"


def _codes(current: pd.DataFrame) -> tuple[np.ndarray, list[Key]]:
    """Return a code per row and the key of each code, in order of first appearance.

    Vectorized: a million-row log has a handful of versions, so keys are made per distinct
    (name, version) pair, not per row.
    """
    absent = pd.Series(None, index=current.index, dtype=object)
    names, name_values = pd.factorize(current.get(NAME, absent).astype(object))
    versions, version_values = pd.factorize(current.get(VERSION, absent).astype(object))
    width = len(version_values) + 1
    codes, pairs = pd.factorize((names + 1) * width + versions + 1)
    keys = []
    for pair in pairs:
        name, version = divmod(int(pair), width)
        key = version_key(
            name_values[name - 1] if name else None,
            version_values[version - 1] if version else None,
        )
        keys.append(key if key[1] is not None else UNLOGGED)
    return codes, keys


def served_versions(current: pd.DataFrame) -> dict[Key, np.ndarray]:
    """Return the rows each version answered, ``{key: row positions}``, in logged order.

    Rows that name no version are under :data:`UNLOGGED`; ``1``, ``1.0`` and ``"1"`` are one
    version.
    """
    codes, keys = _codes(current)
    positions: dict[Key, list[np.ndarray]] = {}
    for code, key in enumerate(keys):
        positions.setdefault(key, []).append(np.flatnonzero(codes == code))
    return {key: np.sort(np.concatenate(parts)) for key, parts in positions.items()}


def assign_version(current: pd.DataFrame, name: str | None, version: Any, why: str) -> pd.DataFrame:
    """Give the rows that name no version the model ``name`` ``version``, with a warning.

    ``why`` says where that version comes from ("the model of service x, the endpoint's newest
    packaged service"). Rows that name a version are left as they are.
    """
    missing = np.zeros(len(current), dtype=bool)
    if UNLOGGED in (groups := served_versions(current)):
        missing[groups[UNLOGGED]] = True
    if not missing.any() or version is None:
        return current
    logger.warning(
        "%d of %d production rows name no model version (a request log written before "
        "versions were logged, or a file of rows); comparing them with %s, %s",
        int(missing.sum()),
        len(current),
        label(version_key(name, version)),
        why,
    )
    out = current.copy()
    for column, value in ((NAME, name), (VERSION, _text(version))):
        values = out[column] if column in out.columns else pd.Series(None, out.index, dtype=object)
        out[column] = values.astype(object).where(~missing, value)
    return out


def deployments(current: pd.DataFrame) -> list[str]:
    """Return the deployments named in the rows, in logged order (empty when not logged)."""
    if DEPLOYMENT not in current.columns:
        return []
    return [str(d) for d in dict.fromkeys(current[DEPLOYMENT].dropna())]


def missing_inputs(current: pd.DataFrame, features: Sequence[str]) -> list[str]:
    """Return the model inputs ``features`` that are not columns of ``current`` at all."""
    return [c for c in features if c not in current.columns]
