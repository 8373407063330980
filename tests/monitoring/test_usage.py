import numpy as np
import pandas as pd
import pytest

from amlkit.monitoring.usage import usage_summary


@pytest.mark.parametrize(
    ("hours", "interval"),
    [(0.01, "second"), (0.5, "minute"), (1.5, "10 minutes"), (30, "hour"), (24 * 10, "6 hours")],
)
def test_usage_summary_picks_the_interval_from_the_time_span(request_log, hours, interval):
    usage = usage_summary(request_log(hours=hours))
    assert usage["interval"] == interval
    assert usage["frames"]["volume"]["requests"].sum() == 120


def test_usage_summary_reports_latency_percentiles_errors_and_predictions(request_log):
    usage = usage_summary(request_log(), predictions=["a", "b", "b", "b"])
    latency = np.arange(1, 121, dtype=float)
    assert usage["latency_ms"]["p50"] == pytest.approx(np.percentile(latency, 50))
    assert usage["latency_ms"]["p99"] == pytest.approx(np.percentile(latency, 99))
    assert usage["error_rate"] == pytest.approx(12 / 120)
    assert usage["status_counts"] == {"200": 108, "500": 12}
    assert usage["rows_scored"] == 240
    assert usage["prediction_distribution"] == {"a": 0.25, "b": 0.75}


def test_usage_summary_describes_continuous_predictions(request_log):
    values = np.linspace(0.0, 10.0, 50)
    usage = usage_summary(request_log(), predictions=values)
    assert usage["prediction_distribution"]["mean"] == pytest.approx(5.0)
    assert usage["prediction_distribution"]["max"] == pytest.approx(10.0)


def test_usage_summary_names_missing_log_columns():
    with pytest.raises(ValueError, match="latency_ms"):
        usage_summary(pd.DataFrame({"request_id": [], "time": [], "status": [], "n_rows": []}))
