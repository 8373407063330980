"""Data quality of production rows against the baseline profile, and model performance.

Azure ML's rates, shares of all rows: ``null_value_rate``; ``data_type_error_rate``, values
not of the column's kind (unparsable, fractional integers, odd booleans or categories);
``out_of_bounds_rate``, values outside the reference's min/max or category set.
"""

from __future__ import annotations

import logging
import math
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


def model_performance(y_true: Any, y_pred: Any, task: str) -> dict[str, float]:
    """Return model performance on the labelled rows, Azure's metric names, and ``n`` rows used.

    Classification: accuracy, macro precision and recall; regression: mean absolute error,
    root mean squared error. Rows without a label are left out. ValueError for an unknown
    task, different lengths, or no labelled rows.
    """
    from sklearn import metrics  # imported here: scikit-learn is slow to import

    truth, pred = pd.Series(y_true).reset_index(drop=True), pd.Series(y_pred).reset_index(drop=True)
    if len(truth) != len(pred):
        raise ValueError(
            f"y_true has {len(truth)} rows but y_pred has {len(pred)}; pass the "
            "predictions of the labelled rows only"
        )
    keep = truth.notna().to_numpy()
    truth, pred = truth[keep], pred[keep]
    if not len(truth):
        raise ValueError("no labelled rows (every y_true is missing); wait for labels")
    if task == "classification":
        truth, pred = truth.astype(str), pred.astype(str)
        prf = metrics.precision_recall_fscore_support(truth, pred, average="macro", zero_division=0)
        scores = {"accuracy": metrics.accuracy_score(truth, pred), "precision": prf[0]}
        scores["recall"] = prf[1]
    elif task == "regression":
        error = truth.to_numpy(dtype=float) - pred.to_numpy(dtype=float)
        scores = {"mean_absolute_error": np.mean(np.abs(error))}
        scores["root_mean_squared_error"] = math.sqrt(np.mean(error**2))
    else:
        raise ValueError(f"task is {task!r}; use 'classification' or 'regression'")
    return {name: float(value) for name, value in scores.items()} | {"n": len(truth)}
