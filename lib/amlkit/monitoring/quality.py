"""Data quality of production rows against the baseline profile.

Metric names and default thresholds (0: any bad value flags the column) are Azure ML
model monitoring's. Every rate is a share of all current rows, so the three add up to the
share of rows with a problem in that column:

- ``null_value_rate``: missing values (NaN, None, NaT).
- ``data_type_error_rate``: present values that are not of the column's kind: text that
  does not parse as a number in a numeric column, a non-whole number in an integer column,
  an unparsable date in a datetime column, a boolean other than true/false, or a value in a
  categorical column that is not a string, an integer or a boolean.
- ``out_of_bounds_rate``: values of the right kind outside the baseline: numbers or dates
  below the reference minimum or above its maximum, categories not in the reference set.

The baseline is the profile of docs/contracts.md (``baseline_profile.json``); when a
profile is not at hand, :func:`build_profile` makes one from the reference rows with
``amlkit.data.profile``.
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
    numeric_values,
    resolve_thresholds,
)

logger = logging.getLogger(__name__)

QUALITY_METRICS = ("null_value_rate", "data_type_error_rate", "out_of_bounds_rate")
BOOLEAN_LABELS = frozenset({"true", "false"})


def build_profile(
    reference: pd.DataFrame, column_kinds: Mapping[str, str], bins: int = 10
) -> dict[str, dict[str, Any]]:
    """Return the per-column part of a baseline profile (``profile["columns"]``).

    A thin wrapper of ``amlkit.data.profile.column_profile`` for callers that have reference rows
    but no ``baseline_profile.json`` (benchmarks, tests, ad-hoc comparisons).

    Args:
        reference: the reference rows (the training split).
        column_kinds: ``{column: kind}``.
        bins: number of quantile bins kept for numeric columns.

    Returns:
        ``{column: {role, kind, dtype, null_rate, ...}}`` in the format of docs/contracts.md.
    """
    return {
        column: {"role": "feature", **column_profile(reference[column], kind, bins=bins)}
        for column, kind in column_kinds.items()
    }


def _seconds(stamp: Any) -> float:
    stamp = pd.Timestamp(stamp)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return (stamp - pd.Timestamp(0, tz="UTC")).total_seconds()


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
    convert = _seconds if kind == "datetime" else float
    low, high = convert(spec["min"]), convert(spec["max"])
    return errors, int(np.count_nonzero((values < low) | (values > high)))


def _categorical_counts(series: pd.Series, kind: str, spec: Mapping[str, Any]) -> tuple[int, int]:
    """Return (type errors, out of bounds) of a categorical or boolean column."""
    present = series.dropna()
    if kind == "boolean":
        labels = present.astype(str).str.lower()
        valid = labels.isin(BOOLEAN_LABELS).to_numpy()
        known = spec.get("categories")
        known = None if known is None else [str(k).lower() for k in known]
    else:
        kinds = present.map(type)
        valid = kinds.map(lambda t: issubclass(t, str | bool | int | np.integer | np.bool_))
        valid = valid.to_numpy(dtype=bool)
        labels = present.astype(str)
        known = spec.get("categories")
    errors = int(np.count_nonzero(~valid))
    out = 0
    if known is not None:
        out = int(np.count_nonzero(valid & ~labels.isin(set(map(str, known))).to_numpy()))
    return errors, out


def compute_quality(
    current: pd.DataFrame,
    profile: Mapping[str, Any],
    thresholds: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Return the data-quality metrics of each profiled column of ``current``.

    Args:
        current: the production rows.
        profile: the baseline profile (the whole ``baseline_profile.json`` dict, or only
            its ``"columns"`` mapping). Columns whose role is ``target`` are checked only
            when present in ``current``; a missing feature column counts as all null.
        thresholds: overrides of the default thresholds (``drift.resolve_thresholds``).

    Returns:
        One row per column: ``column``, ``kind``, ``n_rows``, the counts ``nulls``,
        ``type_errors``, ``out_of_bounds``, the three rates, one ``<metric>_flagged`` bool
        each (rate above threshold), ``flagged`` (any of them) and a ``note``.
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
        for metric, count in zip(
            QUALITY_METRICS, ("nulls", "type_errors", "out_of_bounds"), strict=True
        ):
            rate = row[count] / n if n else 0.0
            row[metric] = rate
            row[f"{metric}_flagged"] = bool(rate > limits[metric])
        row["flagged"] = any(row[f"{m}_flagged"] for m in QUALITY_METRICS)
        rows.append(row)
    order = [
        "column",
        "kind",
        "n_rows",
        "nulls",
        "type_errors",
        "out_of_bounds",
        *QUALITY_METRICS,
        *(f"{m}_flagged" for m in QUALITY_METRICS),
        "flagged",
        "note",
    ]
    result = pd.DataFrame(rows, columns=order)
    logger.info("quality: %d of %d columns flagged", result["flagged"].sum(), len(result))
    return result
