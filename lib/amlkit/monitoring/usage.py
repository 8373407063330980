"""Service usage from the request log, a row per request: volume, latency, errors, predictions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

LOG_COLUMNS = ("request_id", "time", "latency_ms", "status", "n_rows")


def _freq(span: pd.Timedelta) -> tuple[str, str]:
    if span <= pd.Timedelta(hours=3):
        return "min", "minute"
    if span <= pd.Timedelta(days=3):
        return "h", "hour"
    return "D", "day"


def usage_summary(log: pd.DataFrame, predictions: Any = None) -> dict[str, Any]:
    """Summarise ``log`` (a row per request, ``LOG_COLUMNS``) and the predictions served.

    Plain values (``latency_ms`` has p50, p90, p99, mean) and, under ``frames``, what the
    charts draw. ValueError when a column is missing.
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
        rule, unit = _freq(end - start)
        frame = pd.DataFrame({"requests": 1, "errors": errors.astype(int)}).set_index(times)
        summary["frames"]["volume"] = frame[frame.index.notna()].resample(rule).sum()
        summary.update(start=start.isoformat(), end=end.isoformat(), interval=unit)
    else:
        summary.update(start=None, end=None, interval=None)
    points = {"p50": latency.quantile(0.5), "p90": latency.quantile(0.9)}
    points |= {"p99": latency.quantile(0.99), "mean": latency.mean()}
    summary["latency_ms"] = {k: float(v) if len(latency) else None for k, v in points.items()}
    summary["frames"]["latency"] = latency.to_numpy()
    summary["error_rate"] = float(errors.mean()) if len(log) else 0.0
    counts = status.dropna().astype(int).value_counts().sort_index()
    summary["status_counts"] = {str(k): int(v) for k, v in counts.items()}
    summary["prediction_distribution"] = None
    if predictions is not None:
        pred = pd.Series(np.asarray(predictions)).dropna()
        if is_continuous(pred):
            shares = pred.describe().drop("count")
        else:
            shares = pred.astype(str).value_counts(normalize=True).sort_index()
        summary["prediction_distribution"] = {str(k): float(v) for k, v in shares.items()}
        summary["frames"]["predictions"] = pred
    return summary


def is_continuous(predictions: pd.Series) -> bool:
    """Tell whether predictions are values to bin (floats, over 20 distinct) or labels to count."""
    return predictions.dtype.kind == "f" and predictions.nunique() > 20
