"""Trends over time from the monitoring history."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from amlkit.monitoring import trends


def line(end: str, requests: int, errors: int, drift: float, estimated: float | None = None):
    return {
        "window": {"start": end, "end": end},
        "requests": requests,
        "errors": errors,
        "rows": requests,
        "latency_ms": {"p50": 1.0, "p90": 2.0, "p99": 4.0},
        "drift": {"x": drift, "c": 0.05},
        "prediction_drift": 0.02,
        "performance": {
            "metric": "accuracy",
            "estimated": estimated,
            "estimated_std": 0.01,
            "realized": None,
        },
    }


def test_read_history_skips_lines_without_a_window(tmp_path):
    path = tmp_path / "history.jsonl"
    path.write_text(
        json.dumps({"rows": 3}) + "\n" + json.dumps(line("2026-01-01T10:00:00Z", 5, 0, 0.1)) + "\n"
    )
    assert [h["requests"] for h in trends.read_history(path)] == [5]
    assert trends.read_history(tmp_path / "missing.jsonl") == []


def test_trend_frame_buckets_windows_by_the_span_summing_volumes_and_averaging_rates():
    lines = [
        line("2026-01-01T10:00:10Z", 100, 10, 0.2),
        line("2026-01-01T10:20:00Z", 100, 0, 0.4),  # same 10-minute bucket as the next
        line("2026-01-01T10:25:00Z", 300, 0, 0.6),
        line("2026-01-01T11:30:00Z", 50, 5, 0.1),
    ]
    frame, bucket = trends.trend_frame(lines)
    assert bucket == "10 minutes"  # 90 minutes: at most 60 points
    assert list(frame.index) == list(
        pd.to_datetime(["2026-01-01 10:00", "2026-01-01 10:20", "2026-01-01 11:30"])
    )
    assert list(frame["requests"]) == [100, 400, 50]
    assert list(frame["drift x"]) == pytest.approx([0.2, 0.5, 0.1])
    assert list(frame["error rate"]) == pytest.approx([0.1, 0.0, 0.1])


def test_trend_charts_draw_drift_volume_latency_and_performance_with_alt_texts():
    lines = [
        line(f"2026-01-0{d}T10:00:00Z", 100 * d, d, 0.05 * d, 0.95 - 0.01 * d) for d in (1, 2, 3)
    ]
    charts = trends.trend_charts(lines, threshold=0.1, metric="accuracy", baseline=0.97)
    alts = [chart.alt for chart in charts]
    assert alts[0] == (
        "Drift per hour over 3 time points: in the latest, 1 of 2 inputs above the threshold "
        "0.1 (x); prediction drift 0.020"
    )
    assert alts[1].startswith(
        "Requests per hour: 600 in 3 time points, latest 300; error rate latest 1.0%"
    )
    assert alts[2].startswith("Latency per hour, latest: p50 1.0 ms, p90 2.0 ms, p99 4.0 ms")
    assert (
        alts[3]
        == "accuracy per hour: estimated 0.940 first, 0.920 latest; training test score 0.970"
    )
    assert all(chart.src.startswith("data:image/png;base64,") for chart in charts)
    assert trends.trend_charts([], metric="accuracy") == []
