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


def row_keys(current: pd.DataFrame) -> pd.Series:
    """Return each row's (name, version) key; :data:`UNLOGGED` where the row names no version."""
    absent = pd.Series(None, index=current.index, dtype=object)
    names = current[NAME] if NAME in current.columns else absent
    versions = current[VERSION] if VERSION in current.columns else absent
    keys = [version_key(n, v) for n, v in zip(names, versions, strict=True)]
    return pd.Series([k if k[1] is not None else UNLOGGED for k in keys], index=current.index)


def served_versions(current: pd.DataFrame) -> dict[Key, pd.Index]:
    """Return the rows each version answered, ``{key: row labels}``, versions in logged order.

    Rows that name no version are under :data:`UNLOGGED`.
    """
    groups: dict[Key, list[Any]] = {}
    for index, key in row_keys(current).items():
        groups.setdefault(key, []).append(index)
    return {key: pd.Index(rows) for key, rows in groups.items()}


def assign_version(current: pd.DataFrame, name: str | None, version: Any, why: str) -> pd.DataFrame:
    """Give the rows that name no version the model ``name`` ``version``, with a warning.

    ``why`` says where that version comes from ("the model of service x, the endpoint's newest
    packaged service"). Rows that name a version are left as they are.
    """
    missing = pd.Series([k == UNLOGGED for k in row_keys(current)], index=current.index)
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
        values = out[column].astype(object) if column in out.columns else pd.Series(None, out.index)
        out[column] = values.where(~missing, value)
    return out


def deployments(current: pd.DataFrame) -> list[str]:
    """Return the deployments named in the rows, in logged order (empty when not logged)."""
    if DEPLOYMENT not in current.columns:
        return []
    return [str(d) for d in dict.fromkeys(current[DEPLOYMENT].dropna())]


def missing_inputs(current: pd.DataFrame, features: Sequence[str]) -> list[str]:
    """Return the model inputs ``features`` that are not columns of ``current`` at all."""
    return [c for c in features if c not in current.columns]
