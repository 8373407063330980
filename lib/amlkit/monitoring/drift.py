"""Data drift and prediction drift between a reference and a current data set.

Metric names and default thresholds are those of Azure ML model monitoring, so that a
local report and an Azure monitoring signal can be compared:

- numeric, integer and datetime columns: ``normalized_wasserstein_distance`` (the decision
  metric, threshold 0.1), ``two_sample_kolmogorov_smirnov_test`` (the KS p-value, with the
  statistic in ``ks_statistic``), and on binned values ``population_stability_index`` and
  ``jensen_shannon_distance``;
- categorical and boolean columns: ``jensen_shannon_distance`` (the decision metric,
  threshold 0.1), ``population_stability_index`` and ``pearsons_chi_squared_test`` (the
  p-value, with the statistic in ``chi_squared_statistic``);
- text columns are not compared (free text has no distribution worth comparing).

Definitions (missing values are dropped before anything is computed):

- normalized Wasserstein = ``scipy.stats.wasserstein_distance(ref, cur) / std(ref)`` with the
  sample standard deviation (``ddof=1``, as pandas and the baseline profile compute it). A
  constant reference (std 0) has no scale: the raw distance is reported instead.
- KS statistic and p-value are those of ``scipy.stats.ks_2samp`` (``method="auto"``: exact
  when both samples have at most 10,000 values, else the asymptotic distribution).
- datetime columns are compared on their timestamp in seconds since the epoch.
- binned numeric metrics use ``bins`` quantile bins of the reference; the outer bins are
  open-ended so current values outside the reference range still count.
- PSI = sum((q - p) * ln(q / p)) over bins or categories, where a share of 0 is replaced by
  ``PSI_EPSILON`` (1e-4); Jensen-Shannon distance uses base 2 (range 0 to 1), as
  ``scipy.spatial.distance.jensenshannon(p, q, base=2)``.
- Pearson's chi-squared test is run on the 2 x k table of category counts, without Yates'
  correction (``scipy.stats.chi2_contingency(table, correction=False)``).

The numeric path sorts each column once and derives KS and Wasserstein from the two
empirical CDFs with ``np.searchsorted``; columns run in a small thread pool (numpy releases
the GIL while sorting). One million rows by twenty columns take well under a second on two
cores; see ``benchmarks/drift_benchmark.py``.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError
from scipy import stats

from amlkit import kinds
from amlkit.config import MonitoringConfig, Thresholds

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLDS: dict[str, float] = Thresholds().model_dump()
"""Azure ML model monitoring's default thresholds (:class:`amlkit.config.Thresholds`)."""

MEASURED_KINDS = (*kinds.NUMERIC_KINDS, kinds.DATETIME)
"""Kinds compared by the distance between values (dates as seconds since the epoch)."""
KINDS = (*MEASURED_KINDS, *kinds.CATEGORY_KINDS, kinds.TEXT)
DECISION_METRIC = {
    **dict.fromkeys(MEASURED_KINDS, "normalized_wasserstein_distance"),
    **dict.fromkeys(kinds.CATEGORY_KINDS, "jensen_shannon_distance"),
}
PSI_EPSILON = 1e-4
KS_EXACT_MAX_N = 10_000  # scipy's ks_2samp "auto" switches to asymptotic above this size
RESULT_COLUMNS = [
    "column",
    "kind",
    "n_reference",
    "n_current",
    "normalized_wasserstein_distance",
    "wasserstein_distance",
    "ks_statistic",
    "two_sample_kolmogorov_smirnov_test",
    "jensen_shannon_distance",
    "population_stability_index",
    "chi_squared_statistic",
    "pearsons_chi_squared_test",
    "metric",
    "value",
    "threshold",
    "drifted",
    "note",
]


def resolve_thresholds(
    overrides: Thresholds | MonitoringConfig | Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """Return every threshold as ``{metric: threshold}``, defaults filled in.

    Args:
        overrides: :class:`~amlkit.config.Thresholds`, a whole monitoring section, or a
            mapping ``{metric: threshold}`` (validated like the configuration file).

    Raises:
        ValueError: an unknown metric name or a threshold that is not a number.
    """
    if isinstance(overrides, MonitoringConfig):
        overrides = overrides.thresholds
    if isinstance(overrides, Thresholds):
        return overrides.model_dump()
    try:
        return Thresholds.model_validate(dict(overrides or {})).model_dump()
    except ValidationError as exc:
        error = exc.errors()[0]
        name = ".".join(str(p) for p in error["loc"])
        raise ValueError(
            f"monitoring threshold {name!r}: {error['msg']} (got {error.get('input')!r}); the "
            f"metrics are {', '.join(Thresholds.model_fields)}. Fix deployment_config.json's "
            "'monitoring.thresholds'."
        ) from None


def numeric_values(values: Any, kind: str = "numeric") -> np.ndarray:
    """Return ``values`` as a float64 array; text and other non-numbers become NaN.

    Args:
        values: a Series, array or list.
        kind: the column kind; ``datetime`` values become seconds since the epoch.

    Returns:
        A float64 array of the same length (missing and unparsable values as NaN).
    """
    series = values if isinstance(values, pd.Series) else pd.Series(values)
    if kind == "datetime":
        parsed = pd.to_datetime(series, errors="coerce", utc=True)
        seconds = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
        return seconds.to_numpy(dtype="float64", na_value=np.nan)
    if series.dtype.kind in "fiub":
        return series.to_numpy(dtype="float64", na_value=np.nan)
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def _sorted_finite(values: np.ndarray) -> np.ndarray:
    """Sort once and drop NaNs (``np.sort`` puts them last)."""
    out = np.sort(values)
    if out.size and np.isnan(out[-1]):
        return out[: out.size - np.count_nonzero(np.isnan(out))]
    return out


def ks_wasserstein_sorted(ref: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    """Return (KS statistic, Wasserstein distance) of two sorted samples without NaNs.

    Both come from the two empirical CDFs on the merged sample points, evaluated exactly as
    scipy does (counts divided by sample sizes), so ties are handled the same way. Only the
    reference points are searched in the current sample; the current sample's own CDF
    comes from its positions, so the cost beyond the sort is linear.

    Args:
        ref: sorted reference values (non-empty, no NaN).
        cur: sorted current values (non-empty, no NaN).

    Returns:
        The KS statistic (sup of |F_ref - F_cur|) and the Wasserstein-1 distance.
    """
    n1, n2 = ref.size, cur.size
    left = np.searchsorted(cur, ref, side="left")  # current values < r_k
    right = np.searchsorted(cur, ref, side="right")  # current values <= r_k
    own_right = np.searchsorted(ref, ref, side="right")
    own_left = np.searchsorted(ref, ref, side="left")
    # F_ref - F_cur is nonincreasing between reference points: its max is at a reference
    # point, its min at the left limit of one (the value at the previous merged point).
    max_s = float(np.max(own_right / n1 - right / n2))
    min_s = min(max(float(np.max(left / n2 - own_left / n1)), 0.0), 1.0)
    ks = min_s if min_s > max_s else max_s
    top = max(ref[-1], cur[-1])
    # Segments that start at a current point: F_ref there counts reference values <= c_i.
    below = np.cumsum(np.bincount(left, minlength=n2 + 1)[:n2])
    ref_ext = np.append(ref, top)
    cur_next = np.append(cur[1:], top)
    seg = np.minimum(cur_next, ref_ext[below]) - cur
    gap = np.abs(below / n1 - np.arange(1, n2 + 1) / n2)
    total = float(np.dot(gap, seg))
    # Segments that start at a reference point not also present in the current sample.
    cur_ext = np.append(cur, top)
    ref_next = np.append(ref[1:], top)
    seg_r = np.minimum(ref_next, cur_ext[right]) - ref
    seg_r[left != right] = 0.0
    gap_r = np.abs(np.arange(1, n1 + 1) / n1 - right / n2)
    total += float(np.dot(gap_r, seg_r))
    return float(ks), total


def ks_pvalue(statistic: float, n1: int, n2: int, ref: np.ndarray, cur: np.ndarray) -> float:
    """Return ks_2samp's two-sided p-value (scipy itself for small, exact-mode samples)."""
    if max(n1, n2) <= KS_EXACT_MAX_N:
        return float(stats.ks_2samp(ref, cur).pvalue)
    m, n = sorted([float(n1), float(n2)], reverse=True)
    en = m * n / (m + n)
    return float(np.clip(stats.distributions.kstwo.sf(statistic, np.round(en)), 0.0, 1.0))


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total else np.zeros_like(counts, dtype=float)


def psi(ref_counts: np.ndarray, cur_counts: np.ndarray, eps: float = PSI_EPSILON) -> float:
    """Return the population stability index of two count vectors over the same bins."""
    p = np.maximum(_shares(np.asarray(ref_counts, dtype=float)), eps)
    q = np.maximum(_shares(np.asarray(cur_counts, dtype=float)), eps)
    return float(np.sum((q - p) * np.log(q / p)))


def js_distance(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    """Return the base-2 Jensen-Shannon distance of two count vectors over the same bins."""
    p = _shares(np.asarray(ref_counts, dtype=float))
    q = _shares(np.asarray(cur_counts, dtype=float))
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log(p / m), 0.0).sum()
        kl_q = np.where(q > 0, q * np.log(q / m), 0.0).sum()
    return float(math.sqrt(max((kl_p + kl_q) / 2, 0.0) / math.log(2)))


def quantile_edges(sorted_ref: np.ndarray, bins: int) -> np.ndarray:
    """Return the distinct inner bin edges at the reference's quantiles."""
    edges = np.quantile(sorted_ref, np.linspace(0, 1, bins + 1))
    return np.unique(edges[1:-1])


def binned_counts(sorted_values: np.ndarray, inner_edges: np.ndarray) -> np.ndarray:
    """Count sorted values in bins ``[e_j, e_j+1)`` with open-ended outer bins."""
    pos = np.searchsorted(sorted_values, inner_edges, side="left")
    return np.diff(np.concatenate(([0], pos, [sorted_values.size])))


def _row(column: str, kind: str, n_ref: int, n_cur: int, note: str = "") -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(RESULT_COLUMNS, np.nan)
    row.update(column=column, kind=kind, n_reference=n_ref, n_current=n_cur, note=note)
    row.update(metric=DECISION_METRIC.get(kind, ""), drifted=False)
    return row


def _numeric_row(column: str, kind: str, ref: np.ndarray, cur: np.ndarray, bins: int) -> dict:
    r, c = _sorted_finite(ref), _sorted_finite(cur)
    row = _row(column, kind, r.size, c.size)
    if r.size == 0 or c.size == 0:
        row["note"] = "no values to compare (all missing)"
        return row
    ks, wd = ks_wasserstein_sorted(r, c)
    std = float(np.std(r, ddof=1)) if r.size > 1 else 0.0
    edges = quantile_edges(r, bins)
    ref_counts, cur_counts = binned_counts(r, edges), binned_counts(c, edges)
    row.update(
        wasserstein_distance=wd,
        normalized_wasserstein_distance=wd / std if std > 0 else wd,
        ks_statistic=ks,
        two_sample_kolmogorov_smirnov_test=ks_pvalue(ks, r.size, c.size, r, c),
        jensen_shannon_distance=js_distance(ref_counts, cur_counts),
        population_stability_index=psi(ref_counts, cur_counts),
    )
    if std == 0:
        row["note"] = "constant reference: raw Wasserstein distance reported"
    return row


def category_labels(values: Any, kind: str = "categorical") -> pd.Series:
    """Return non-missing values as strings (booleans as ``"true"``/``"false"``)."""
    series = values if isinstance(values, pd.Series) else pd.Series(values)
    series = series.dropna()
    labels = series.astype(str)
    return labels.str.lower() if kind == "boolean" else labels


def _categorical_row(column: str, kind: str, ref: pd.Series, cur: pd.Series) -> dict:
    ref_counts = category_labels(ref, kind).value_counts()
    cur_counts = category_labels(cur, kind).value_counts()
    row = _row(column, kind, int(ref_counts.sum()), int(cur_counts.sum()))
    if not len(ref_counts) or not len(cur_counts):
        row["note"] = "no values to compare (all missing)"
        return row
    categories = ref_counts.index.union(cur_counts.index)
    a = ref_counts.reindex(categories, fill_value=0).to_numpy(dtype=float)
    b = cur_counts.reindex(categories, fill_value=0).to_numpy(dtype=float)
    chi2, p_value = 0.0, 1.0
    if len(categories) > 1:
        result = stats.chi2_contingency(np.vstack([a, b]), correction=False)
        chi2, p_value = float(result.statistic), float(result.pvalue)
    row.update(
        jensen_shannon_distance=js_distance(a, b),
        population_stability_index=psi(a, b),
        chi_squared_statistic=chi2,
        pearsons_chi_squared_test=p_value,
    )
    return row


def _decide(row: dict[str, Any], thresholds: Mapping[str, float]) -> dict[str, Any]:
    metric = row["metric"]
    if metric:
        row["threshold"] = thresholds[metric]
        row["value"] = row[metric]
        row["drifted"] = bool(np.isfinite(row["value"]) and row["value"] > row["threshold"])
    return row


def _usable_cpus() -> int:
    """Return the CPUs this process may run on (affinity-aware, unlike ``os.cpu_count``)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def _check_kinds(column_kinds: Mapping[str, str]) -> None:
    for column, kind in column_kinds.items():
        if kind not in KINDS:
            raise ValueError(
                f"column {column!r} has kind {kind!r}; expected one of {', '.join(KINDS)}. "
                "Fix feature_types in the manifest or the schema in data_config.json."
            )


def compute_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    column_kinds: Mapping[str, str],
    thresholds: Mapping[str, Any] | None = None,
    bins: int = 10,
    max_workers: int | None = None,
) -> pd.DataFrame:
    """Compare each column of ``current`` with ``reference`` and flag drifted columns.

    Args:
        reference: the reference rows (the training split).
        current: the production rows.
        column_kinds: ``{column: kind}``; kinds as in docs/contracts.md. Text columns are
            listed with a note and never flagged.
        thresholds: overrides of ``DEFAULT_THRESHOLDS`` (see :func:`resolve_thresholds`).
        bins: number of reference-quantile bins for PSI and Jensen-Shannon on numbers.
        max_workers: threads over columns (default: the usable CPUs, at most 8).

    Returns:
        One row per column with the columns of ``RESULT_COLUMNS``: every metric (NaN where it
        does not apply), the decision ``metric``, its ``value`` and ``threshold``, and
        ``drifted`` (value above threshold).

    Raises:
        ValueError: an unknown kind, a bad threshold, or ``bins`` below 2.
    """
    if bins < 2:
        raise ValueError(f"bins is {bins}; use at least 2 bins for PSI and Jensen-Shannon")
    limits = resolve_thresholds(thresholds)
    _check_kinds(column_kinds)

    def one(column: str) -> dict[str, Any]:
        kind = column_kinds[column]
        missing = [
            name
            for name, df in (("reference", reference), ("current", current))
            if column not in df.columns
        ]
        if missing:
            return _row(column, kind, 0, 0, f"column missing from {' and '.join(missing)} data")
        if kind == "text":
            return _row(column, kind, len(reference), len(current), "text: not compared")
        if kind in MEASURED_KINDS:
            ref = numeric_values(reference[column], kind)
            cur = numeric_values(current[column], kind)
            return _decide(_numeric_row(column, kind, ref, cur, bins), limits)
        row = _categorical_row(column, kind, reference[column], current[column])
        return _decide(row, limits)

    workers = max_workers or min(8, _usable_cpus())
    with ThreadPoolExecutor(max_workers=workers) as pool:
        rows = list(pool.map(one, list(column_kinds)))
    result = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    result["drifted"] = result["drifted"].astype(bool)
    logger.info("drift: %d of %d columns drifted", result["drifted"].sum(), len(result))
    return result


def prediction_drift(
    reference_pred: Any,
    current_pred: Any,
    kind: str = "categorical",
    thresholds: Mapping[str, Any] | None = None,
    bins: int = 10,
) -> pd.DataFrame:
    """Return the drift of model outputs, in the shape of :func:`compute_drift`.

    Args:
        reference_pred: predictions on the reference data: a Series or array of labels or
            values, or a DataFrame of class-probability columns.
        current_pred: predictions on the current data, in the same shape.
        kind: ``categorical`` for class labels, ``numeric`` for regression outputs or
            probabilities (a DataFrame is always compared column by column).
        thresholds: overrides of ``DEFAULT_THRESHOLDS``.
        bins: quantile bins for the binned metrics of numeric outputs.

    Returns:
        One row per prediction column (``prediction`` for an unnamed Series or array).
    """

    def frame(values: Any) -> pd.DataFrame:
        if isinstance(values, pd.DataFrame):
            return values.reset_index(drop=True)
        series = pd.Series(np.asarray(values) if not isinstance(values, pd.Series) else values)
        return series.rename(series.name or "prediction").reset_index(drop=True).to_frame()

    ref, cur = frame(reference_pred), frame(current_pred)
    if isinstance(reference_pred, pd.DataFrame):
        kind = "numeric"
    return compute_drift(ref, cur, dict.fromkeys(ref.columns, kind), thresholds, bins)
