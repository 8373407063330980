"""Trends over time from the monitoring history: drift, volume, errors, latency, performance.

Every report appends one line to ``history.jsonl`` beside it (:func:`history_line`). The
trend charts read those lines back, place each window at its end time, and group windows
into a time bucket that fits the span of the history (``usage.time_bucket``): volumes are
summed per bucket, rates, distances, latency percentiles and scores averaged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

from amlkit.monitoring.figures import COLORS, Image, to_image
from amlkit.monitoring.usage import time_bucket

SUMMED = ("requests", "errors", "rows")


def history_line(result: Any, watched: Any, metric: str) -> dict[str, Any]:
    """Return what the trends need of one window (``monitor.MonitoringResult``).

    ``watched`` is the ``verdict.Watched`` (or None); ``metric`` the performance metric traced.
    """
    usage, perf, drift = result.usage or {}, result.performance, result.drift
    real, est = perf.get("realized") or {}, perf.get("estimated") or {}
    pred = result.prediction_drift
    return {
        "model": watched.model if watched else None,
        "version": watched.version if watched else None,
        "traffic": dict(watched.traffic) if watched else {},
        "action": watched.action if watched else "none",
        "verdict": result.decision.verdict,
        "retrain": result.decision.retrain,
        "window": result.window(),
        "rows": len(result.current),
        "drift": drift.dropna(subset=["value"])
        .set_index("column")["value"]
        .astype(float)
        .to_dict(),
        "prediction_drift": float(pred["value"].iloc[0])
        if pred is not None and len(pred)
        else None,
        "requests": usage.get("requests"),
        "errors": sum(v for k, v in usage.get("status_counts", {}).items() if int(k) >= 400),
        "latency_ms": {k: v for k, v in usage.get("latency_ms", {}).items() if k != "mean"},
        "performance": {
            "metric": metric,
            "estimated": est.get(metric),
            "estimated_std": est.get(f"{metric}_std"),
            "realized": (real.get("metrics") or {}).get(metric),
            "baseline": (watched.baseline if watched else {}).get(metric),
        },
    }


def read_history(path: str | Path) -> list[dict[str, Any]]:
    """Return the history's lines that describe a window (older lines are skipped)."""
    path = Path(path)
    if not path.is_file():
        return []
    lines = (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line)
    return [line for line in lines if (line.get("window") or {}).get("end")]


def _flat(line: Mapping[str, Any]) -> dict[str, Any]:
    perf = line.get("performance") or {}
    out = {"time": pd.Timestamp(line["window"]["end"]), **{k: line.get(k) for k in SUMMED}}
    out |= {f"latency {k}": v for k, v in (line.get("latency_ms") or {}).items()}
    out |= {f"drift {k}": v for k, v in (line.get("drift") or {}).items()}
    out["prediction drift"] = line.get("prediction_drift")
    out |= {f"perf {k}": perf.get(k) for k in ("estimated", "estimated_std", "realized")}
    return out


def trend_frame(lines: list[dict[str, Any]]) -> tuple[pd.DataFrame, str]:
    """Return one row per occupied time bucket (index: bucket start, naive UTC) and its name."""
    frame = pd.DataFrame([_flat(line) for line in lines]).sort_values("time")
    frame["time"] = pd.to_datetime(frame["time"], utc=True).dt.tz_convert(None)
    rule, name = time_bucket(frame["time"].max() - frame["time"].min())
    values = frame.drop(columns="time").apply(pd.to_numeric, errors="coerce")
    grouped = values.groupby(frame["time"].dt.floor(rule))
    agg = {c: ("sum" if c in SUMMED else "mean") for c in values.columns}
    out = grouped.agg(agg)
    out["error rate"] = out["errors"] / out["requests"].where(out["requests"] > 0)
    return out, name


def _date_axis(ax: Any) -> None:
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.set_xlabel("window end (UTC)")


def _axes(title: str) -> tuple[Figure, Any]:
    fig = Figure(figsize=(9, 3))
    ax = fig.subplots()
    _date_axis(ax)
    ax.set_title(title)
    return fig, ax


def _drift_chart(frame: pd.DataFrame, bucket: str, threshold: float) -> Image:
    fig, ax = _axes(f"Drift per {bucket}: inputs and predictions; dashed: threshold")
    features = [c for c in frame.columns if c.startswith("drift ")]
    for column in features:
        ax.plot(frame.index, frame[column], marker="o", linewidth=1, label=column[6:])
    pred = frame["prediction drift"]
    if pred.notna().any():
        ax.plot(frame.index, pred, marker="s", color="black", linewidth=2.5, label="predictions")
    ax.axhline(threshold, color="#333", linestyle="--", linewidth=1)
    ax.set_ylabel("distance")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    latest = frame[features].iloc[-1]
    above = [c[6:] for c, v in latest.items() if v > threshold]
    alt = (
        f"Drift per {bucket} over {len(frame)} time points: in the latest, {len(above)} of "
        f"{len(features)} inputs above the threshold {threshold:g}"
        + (f" ({', '.join(above)})" if above else "")
    )
    if pred.notna().any():
        alt += f"; prediction drift {pred.iloc[-1]:.3f}"
    return to_image(fig, alt)


def _volume_chart(frame: pd.DataFrame, bucket: str) -> Image:
    fig = Figure(figsize=(9, 4))
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    width = (frame.index[1:] - frame.index[:-1]).min() * 0.8 if len(frame) > 1 else None
    top.bar(frame.index, frame["requests"], width=width or 0.0001, color=COLORS["reference"])
    top.set_title(f"Requests and error rate per {bucket}")
    top.set_ylabel("requests")
    bottom.plot(frame.index, 100 * frame["error rate"], marker="o", color=COLORS["bad"])
    bottom.set_ylabel("errors (%)")
    bottom.set_ylim(bottom=0)
    _date_axis(bottom)
    rate, total, latest = frame["error rate"], frame["requests"].sum(), frame["requests"].iloc[-1]
    return to_image(
        fig,
        f"Requests per {bucket}: {int(total):,} in {len(frame)} time points, latest "
        f"{int(latest):,}; error rate latest {rate.iloc[-1]:.1%}, highest {rate.max():.1%}",
    )


def _latency_chart(frame: pd.DataFrame, bucket: str) -> Image:
    fig, ax = _axes(f"Latency percentiles per {bucket} (mean of the windows' percentiles)")
    names = [c for c in ("latency p50", "latency p90", "latency p99") if c in frame]
    for column in names:
        ax.plot(frame.index, frame[column], marker="o", label=column[8:])
    ax.set_ylabel("ms")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    latest = ", ".join(f"{c[8:]} {frame[c].iloc[-1]:.1f} ms" for c in names)
    return to_image(
        fig, f"Latency per {bucket}, latest: {latest}; highest p99 {frame[names[-1]].max():.1f} ms"
    )


def _performance_chart(
    frame: pd.DataFrame, bucket: str, metric: str, baseline: float | None
) -> Image:
    fig, ax = _axes(f"{metric} per {bucket}: estimated before labels, realized once labelled")
    est, real = frame["perf estimated"], frame["perf realized"]
    parts = []
    if est.notna().any():
        band = 1.96 * frame["perf estimated_std"].fillna(0)
        ax.fill_between(frame.index, est - band, est + band, color=COLORS["reference"], alpha=0.2)
        ax.plot(frame.index, est, marker="o", color=COLORS["reference"], label="estimated (CBPE)")
        parts.append(
            f"estimated {est.dropna().iloc[0]:.3f} first, {est.dropna().iloc[-1]:.3f} latest"
        )
    if real.notna().any():
        ax.plot(
            frame.index, real, marker="D", linestyle=":", color=COLORS["current"], label="realized"
        )
        parts.append(
            f"realized {real.dropna().iloc[0]:.3f} first, {real.dropna().iloc[-1]:.3f} latest"
        )
    if baseline is not None:
        ax.axhline(baseline, color="#333", linestyle="--", linewidth=1, label="training test score")
        parts.append(f"training test score {baseline:.3f}")
    ax.set_ylabel(metric)
    ax.legend(fontsize=8)
    return to_image(fig, f"{metric} per {bucket}: " + "; ".join(parts))


def trend_charts(
    lines: list[dict[str, Any]],
    *,
    threshold: float = 0.1,
    metric: str | None = None,
    baseline: float | None = None,
) -> list[Image]:
    """Draw the trend charts of a history (none without a window).

    Args:
        lines: the history (:func:`read_history`), this window included.
        threshold: the drift threshold drawn as a dashed line.
        metric: the performance metric traced (``accuracy``, ``mae``); None leaves it out.
        baseline: that metric's training test score.
    """
    if not lines:
        return []
    frame, bucket = trend_frame(lines)
    charts = []
    if any(c.startswith("drift ") for c in frame.columns):
        charts.append(_drift_chart(frame, bucket, threshold))
    if frame["requests"].fillna(0).sum() > 0:
        charts.append(_volume_chart(frame, bucket))
    if "latency p50" in frame and frame["latency p50"].notna().any():
        charts.append(_latency_chart(frame, bucket))
    perf = frame[["perf estimated", "perf realized"]]
    if metric and np.isfinite(perf.to_numpy(dtype=float)).any():
        charts.append(_performance_chart(frame, bucket, metric, baseline))
    return charts
