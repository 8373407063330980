"""Service usage from the endpoint's request log: volume, latency, errors, predictions served.

One row per request (``monitor.requests_frame`` collapses a read log to that shape). The
summary is plain values for the JSON report, plus under ``frames`` the series the report's
usage charts draw.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

LOG_COLUMNS = ("request_id", "time", "latency_ms", "status", "n_rows")


BUCKETS = (
    ("s", "second"),
    ("10s", "10 seconds"),
    ("min", "minute"),
    ("10min", "10 minutes"),
    ("h", "hour"),
    ("6h", "6 hours"),
    ("D", "day"),
    ("7D", "week"),
)
MAX_BUCKETS = 60  # points a time chart shows at most


def time_bucket(span: pd.Timedelta) -> tuple[str, str]:
    """Return the smallest bucket (pandas frequency, its name) giving ``span`` at most 60 points."""
    for rule, name in BUCKETS:
        if span <= pd.to_timedelta(pd.tseries.frequencies.to_offset(rule)) * MAX_BUCKETS:
            return rule, name
    return BUCKETS[-1]


def usage_summary(log: pd.DataFrame, predictions: Any = None) -> dict[str, Any]:
    """Summarise a request log for the report.

    Args:
        log: request-log rows with columns ``request_id``, ``time`` (UTC), ``latency_ms``,
            ``status`` (HTTP code) and ``n_rows``.
        predictions: optional predictions served over the period (labels or values).

    Returns:
        A dict of plain values (``requests``, ``rows_scored``, ``start``, ``end``,
        ``interval``, ``latency_ms`` {p50, p90, p99, mean}, ``error_rate``,
        ``status_counts``, ``prediction_distribution``) and, under ``frames``, the
        DataFrames the plots use (``volume``: requests and errors per interval).

    Raises:
        ValueError: a required column is missing.
    """
    missing = [c for c in LOG_COLUMNS if c not in log.columns]
    if missing:
        raise ValueError(
            f"request log lacks columns {missing}; expected {list(LOG_COLUMNS)} "
            "as written by the scoring script's request log"
        )
    times = pd.to_datetime(log["time"], utc=True, errors="coerce")
    status = pd.to_numeric(log["status"], errors="coerce")
    latency = pd.to_numeric(log["latency_ms"], errors="coerce").dropna()
    errors = status >= 400
    summary: dict[str, Any] = {"requests": len(log), "frames": {}}
    summary["rows_scored"] = int(pd.to_numeric(log["n_rows"], errors="coerce").fillna(0).sum())
    if len(log) and times.notna().any():
        start, end = times.min(), times.max()
        rule, unit = time_bucket(end - start)
        frame = pd.DataFrame({"requests": 1, "errors": errors.astype(int)}).set_index(times)
        summary["frames"]["volume"] = frame[frame.index.notna()].resample(rule).sum()
        summary.update(start=start.isoformat(), end=end.isoformat(), interval=unit)
    else:
        summary.update(start=None, end=None, interval=None)
    quantiles = latency.quantile([0.5, 0.9, 0.99]) if len(latency) else pd.Series(dtype=float)
    summary["latency_ms"] = {
        name: float(quantiles[q]) if len(latency) else None
        for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))
    }
    summary["latency_ms"]["mean"] = float(latency.mean()) if len(latency) else None
    summary["frames"]["latency"] = latency.to_numpy()
    summary["error_rate"] = float(errors.mean()) if len(log) else 0.0
    counts = status.dropna().astype(int).value_counts().sort_index()
    summary["status_counts"] = {str(k): int(v) for k, v in counts.items()}
    summary["prediction_distribution"] = None
    if predictions is not None:
        pred = pd.Series(np.asarray(predictions)).dropna()
        if is_continuous(pred):
            summary["prediction_distribution"] = {
                k: float(v) for k, v in pred.describe().drop("count").items()
            }
        else:
            shares = pred.astype(str).value_counts(normalize=True).sort_index()
            summary["prediction_distribution"] = {str(k): float(v) for k, v in shares.items()}
        summary["frames"]["predictions"] = pred
    return summary


def is_continuous(predictions: pd.Series) -> bool:
    """Tell whether predictions are values to bin (floats, over 20 distinct) or labels to count."""
    return predictions.dtype.kind == "f" and predictions.nunique() > 20
