"""Data quality of production rows against the baseline profile.

Azure ML's rates, shares of all rows: ``null_value_rate``; ``data_type_error_rate``, values
not of the column's kind (unparsable, fractional integers, odd booleans or categories);
``out_of_bounds_rate``, values outside the reference's min/max or category set.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from amlkit import kinds
from amlkit.data.profile import column_profile
from amlkit.monitoring.drift import (
    MEASURED_KINDS,
    ThresholdsLike,
    numeric_values,
    resolve_thresholds,
)

logger = logging.getLogger(__name__)

QUALITY_METRICS = ("null_value_rate", "data_type_error_rate", "out_of_bounds_rate")


def build_profile(
    reference: pd.DataFrame, column_kinds: Mapping[str, str], bins: int = 10
) -> dict[str, dict[str, Any]]:
    """Return ``profile["columns"]`` of a baseline profile made from reference rows."""
    return {
        column: {"role": "feature", **column_profile(reference[column], kind, bins=bins)}
        for column, kind in column_kinds.items()
    }


def _numeric_counts(series: pd.Series, kind: str, spec: Mapping[str, Any]) -> tuple[int, int]:
    """Return (type errors, out of bounds) of a numeric, integer or datetime column."""
    values = numeric_values(series, kind)
    present = ~np.isnan(values)
    errors = int(series.notna().sum()) - int(np.count_nonzero(present))
    if kind == "integer":
        fractional = (np.floor(values) != values) & np.isfinite(values)
        errors += int(np.count_nonzero(fractional))
    if "min" not in spec or "max" not in spec:
        return errors, 0
    low, high = numeric_values([spec["min"], spec["max"]], kind)
    return errors, int(np.count_nonzero((values < low) | (values > high)))


def _categorical_counts(series: pd.Series, kind: str, spec: Mapping[str, Any]) -> tuple[int, int]:
    """Return (type errors, out of bounds) of a categorical or boolean column."""
    present, known = series.dropna(), spec.get("categories")
    if kind == "boolean":
        labels = present.astype(str).str.lower()
        valid = labels.isin(["true", "false"]).to_numpy()
        known = None if known is None else [str(k).lower() for k in known]
    else:
        types = (str, bool, int, np.integer, np.bool_)
        valid = present.map(lambda value: isinstance(value, types)).to_numpy(dtype=bool)
        labels = present.astype(str)
    if known is None:
        return int(np.count_nonzero(~valid)), 0
    unknown = valid & ~labels.isin(set(map(str, known))).to_numpy()
    return int(np.count_nonzero(~valid)), int(np.count_nonzero(unknown))


def compute_quality(
    current: pd.DataFrame,
    profile: Mapping[str, Any],
    thresholds: ThresholdsLike = None,
) -> pd.DataFrame:
    """Return the counts, rates and ``<rate>_flagged`` of each profiled column of ``current``.

    ``profile`` is ``baseline_profile.json`` or its ``"columns"``; a target column is checked
    only when present, a missing feature counts as all null.
    """
    limits = resolve_thresholds(thresholds)
    columns = profile.get("columns", profile)
    n = len(current)
    rows = []
    for column, spec in columns.items():
        kind = spec.get("kind", "numeric")
        row: dict[str, Any] = {"column": column, "kind": kind, "n_rows": n, "note": ""}
        if column not in current.columns:
            if spec.get("role", "feature") != "feature":
                continue
            row.update(nulls=n, type_errors=0, out_of_bounds=0, note="column missing")
        else:
            series = current[column]
            nulls = int(series.isna().sum())
            if kind in MEASURED_KINDS:
                errors, out = _numeric_counts(series, kind, spec)
            elif kind in kinds.CATEGORY_KINDS:
                errors, out = _categorical_counts(series, kind, spec)
            else:
                errors, out = 0, 0
            row.update(nulls=nulls, type_errors=errors, out_of_bounds=out)
        counts = ("nulls", "type_errors", "out_of_bounds")
        for metric, count in zip(QUALITY_METRICS, counts, strict=True):
            rate = row[count] / n if n else 0.0
            row[metric] = rate
            row[f"{metric}_flagged"] = bool(rate > limits[metric])
        row["flagged"] = any(row[f"{m}_flagged"] for m in QUALITY_METRICS)
        rows.append(row)
    order = ["column", "kind", "n_rows", "nulls", "type_errors", "out_of_bounds"]
    order += [*QUALITY_METRICS, *(f"{m}_flagged" for m in QUALITY_METRICS), "flagged", "note"]
    result = pd.DataFrame(rows, columns=order)
    logger.info("quality: %d of %d columns flagged", result["flagged"].sum(), len(result))
    return result
