"""Traffic simulation: seeded drift of replayed rows, and requests to a real loopback server."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from amlkit.monitoring import traffic

PROFILE = {"columns": {"x": {"mean": 10.0, "std": 2.0}, "y": {"mean": 0.0, "std": 1.0}}}


def rows(n: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "x": rng.normal(10, 2, n),
            "y": rng.normal(0, 1, n),
            "colour": rng.choice(["red", "blue"], n).astype(object),
            "label": rng.choice(["a", "b"], n),
        }
    )


def test_apply_drift_with_empty_spec_changes_nothing():
    frame = rows()
    pd.testing.assert_frame_equal(
        traffic.apply_drift(frame, traffic.DriftSpec(), PROFILE, seed=1), frame
    )


def test_apply_drift_is_seeded_and_bends_each_way():
    frame = rows()
    spec = traffic.DriftSpec(
        shift={"x": 1.5}, scale={"y": 3.0}, new_category={"colour": 0.3}, null_rate={"x": 0.2}
    )
    one = traffic.apply_drift(frame, spec, PROFILE, seed=7)
    two = traffic.apply_drift(frame, spec, PROFILE, seed=7)
    pd.testing.assert_frame_equal(one, two)
    assert one["x"].mean() == pytest.approx(frame["x"].mean() + 3.0, abs=0.6)
    assert one["y"].std() == pytest.approx(3 * frame["y"].std(), rel=0.01)
    assert 0.2 < (one["colour"] == traffic.NEW_CATEGORY).mean() < 0.4
    assert 0.1 < one["x"].isna().mean() < 0.3
    assert frame["x"].notna().all()  # the input is not changed


def test_default_drift_is_empty_at_zero_and_touches_features_otherwise():
    kinds = {"a": "numeric", "b": "numeric", "c": "integer", "d": "categorical", "e": "boolean"}
    assert traffic.default_drift(kinds, {}, 0).is_empty
    spec = traffic.default_drift(kinds, {}, 1.0)
    assert spec.shift == {"a": 1.0, "b": 1.0} and spec.scale == {"c": 1.5}
    assert spec.new_category == {"d": 0.2} and spec.null_rate == {"e": 0.2}


def test_sample_rows_uses_each_row_once_per_pass():
    frame = rows(10)
    drawn = traffic.sample_rows(frame, 25, seed=3)
    assert len(drawn) == 25
    counts = drawn.groupby(["x"]).size()
    assert counts.max() == 3 and counts.min() == 2


def test_simulate_traffic_refuses_addresses_beyond_loopback():
    class Remote:
        url = "http://example.com/score"

        def headers(self):
            return {}

    with pytest.raises(ValueError, match="loopback only"):
        traffic.simulate_traffic(Remote(), rows(3), feature_columns=["x"])


def test_simulate_traffic_sends_every_row_with_request_ids(stub_deployment):
    server = stub_deployment()
    frame = rows(21)
    result = traffic.simulate_traffic(
        server, frame, feature_columns=["x", "y", "colour"], batch_size=4, concurrency=3
    )
    assert result.summary() == {"requests": 6, "rows": 21, "errors": 0, "stopped_early": False}
    assert sorted(server.ids) == sorted(f"sim-{i}" for i in range(6))
    assert set(result.sent["prediction"]) == {"p"}
    assert list(result.sent["label"]) == list(frame["label"])


def test_request_body_sends_missing_values_as_null():
    frame = pd.DataFrame({"x": [1.0, np.nan], "c": ["a", None]})
    body = json.loads(traffic.request_body(frame, ["x", "c"]))
    assert body == {"input_data": {"columns": ["x", "c"], "data": [[1.0, "a"], [None, None]]}}
