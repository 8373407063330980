import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from amlkit.config import MonitoringConfig
from amlkit.monitoring import drift, quality


def _pairs():
    rng = np.random.default_rng(7)
    return {
        "continuous": (rng.normal(0, 1, 300), rng.normal(0.4, 1.3, 500)),
        "integer_ties": (
            rng.integers(0, 6, 400).astype(float),
            rng.integers(1, 8, 250).astype(float),
        ),
        "shared_values": (np.array([1.0, 2, 2, 3, 5, 5, 5]), np.array([2.0, 2, 5, 6, 6])),
        "one_value_each": (np.array([3.0]), np.array([4.0])),
        "large_asymptotic": (rng.normal(0, 1, 12_000), rng.normal(0.02, 1, 15_000)),
        "large_ties": (
            rng.poisson(3, 20_000).astype(float),
            rng.poisson(3.1, 30_000).astype(float),
        ),
    }


@pytest.mark.parametrize("case", list(_pairs()))
def test_numeric_metrics_agree_with_scipy(case):
    ref, cur = _pairs()[case]
    frame_ref, frame_cur = pd.DataFrame({"x": ref}), pd.DataFrame({"x": cur})
    row = drift.compute_drift(frame_ref, frame_cur, {"x": "numeric"}).iloc[0]
    expected = stats.ks_2samp(ref, cur)
    assert row["ks_statistic"] == pytest.approx(expected.statistic, rel=1e-12, abs=1e-15)
    assert row["two_sample_kolmogorov_smirnov_test"] == pytest.approx(
        expected.pvalue, rel=1e-9, abs=1e-300
    )
    distance = stats.wasserstein_distance(ref, cur)
    assert row["wasserstein_distance"] == pytest.approx(distance, rel=1e-12, abs=1e-15)
    std = np.std(ref, ddof=1) if ref.size > 1 else 0.0
    normalized = distance / std if std > 0 else distance
    assert row["normalized_wasserstein_distance"] == pytest.approx(normalized, rel=1e-12)


def test_missing_values_are_dropped_before_comparing():
    ref = np.array([1.0, np.nan, 2, 3, 4, np.nan, 5])
    cur = np.array([np.nan, 2.5, 3, 3, 6, 7])
    row = drift.compute_drift(
        pd.DataFrame({"x": ref}), pd.DataFrame({"x": cur}), {"x": "numeric"}
    ).iloc[0]
    a, b = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
    assert (row["n_reference"], row["n_current"]) == (5, 5)
    assert row["ks_statistic"] == pytest.approx(stats.ks_2samp(a, b).statistic)
    assert row["wasserstein_distance"] == pytest.approx(stats.wasserstein_distance(a, b))


def test_text_in_a_numeric_column_is_dropped_from_drift():
    cur = pd.DataFrame({"x": [1.0, "n/a", 2.0, 3.0]})
    row = drift.compute_drift(pd.DataFrame({"x": [1.0, 2.0, 3.0]}), cur, {"x": "numeric"})
    assert row.loc[0, "n_current"] == 3
    assert row.loc[0, "wasserstein_distance"] == pytest.approx(0.0)


def test_binned_numeric_metrics_use_reference_quantile_bins():
    rng = np.random.default_rng(3)
    ref, cur = rng.normal(0, 1, 2000), rng.normal(0.5, 1, 3000)
    row = drift.compute_drift(
        pd.DataFrame({"x": ref}), pd.DataFrame({"x": cur}), {"x": "numeric"}, bins=10
    ).iloc[0]
    inner = np.quantile(ref, np.linspace(0, 1, 11))[1:-1]
    p = np.bincount(np.digitize(ref, inner), minlength=10) / ref.size
    q = np.bincount(np.digitize(cur, inner), minlength=10) / cur.size
    assert row["jensen_shannon_distance"] == pytest.approx(jensenshannon(p, q, base=2))
    assert row["population_stability_index"] == pytest.approx(np.sum((q - p) * np.log(q / p)))


def test_categorical_metrics_agree_with_scipy():
    ref = pd.DataFrame({"c": ["a"] * 50 + ["b"] * 30 + ["c"] * 20 + [None] * 5})
    cur = pd.DataFrame({"c": ["a"] * 20 + ["b"] * 30 + ["d"] * 10})
    row = drift.compute_drift(ref, cur, {"c": "categorical"}).iloc[0]
    p = np.array([50, 30, 20, 0]) / 100
    q = np.array([20, 30, 0, 10]) / 60
    table = np.array([[50, 30, 20, 0], [20, 30, 0, 10]])
    chi = stats.chi2_contingency(table, correction=False)
    assert row["jensen_shannon_distance"] == pytest.approx(jensenshannon(p, q, base=2))
    assert row["chi_squared_statistic"] == pytest.approx(chi.statistic)
    assert row["pearsons_chi_squared_test"] == pytest.approx(chi.pvalue)
    pe, qe = np.maximum(p, drift.PSI_EPSILON), np.maximum(q, drift.PSI_EPSILON)
    assert row["population_stability_index"] == pytest.approx(np.sum((qe - pe) * np.log(qe / pe)))
    assert row["metric"] == "jensen_shannon_distance" and bool(row["drifted"])


def test_boolean_values_compare_case_insensitively():
    ref = pd.DataFrame({"b": [True, False, True, False]})
    cur = pd.DataFrame({"b": ["true", "FALSE", "True", "false"]})
    row = drift.compute_drift(ref, cur, {"b": "boolean"}).iloc[0]
    assert row["jensen_shannon_distance"] == pytest.approx(0.0)
    assert not row["drifted"]


def test_datetime_columns_compare_timestamps_in_seconds():
    ref = pd.DataFrame({"t": pd.date_range("2024-01-01", periods=100, freq="D")})
    cur = pd.DataFrame(
        {"t": pd.date_range("2024-01-01", periods=100, freq="D") + pd.Timedelta(days=30)}
    )
    row = drift.compute_drift(ref, cur, {"t": "datetime"}).iloc[0]
    assert row["wasserstein_distance"] == pytest.approx(30 * 86400)
    assert row["drifted"]


def test_decision_flags_only_columns_above_their_threshold():
    rng = np.random.default_rng(11)
    ref = pd.DataFrame(
        {"same": rng.normal(size=5000), "shifted": rng.normal(size=5000), "text": ["x"] * 5000}
    )
    cur = pd.DataFrame(
        {"same": rng.normal(size=8000), "shifted": rng.normal(0.5, 1, 8000), "text": ["y"] * 8000}
    )
    kinds = {"same": "numeric", "shifted": "numeric", "text": "text"}
    result = drift.compute_drift(ref, cur, kinds).set_index("column")
    assert list(result.index[result["drifted"]]) == ["shifted"]
    assert result.loc["shifted", "threshold"] == 0.1
    assert result.loc["text", "note"] == "text: not compared"
    looser = drift.compute_drift(
        ref, cur, kinds, thresholds={"normalized_wasserstein_distance": 0.6}
    )
    assert not looser["drifted"].any()


def test_thresholds_accept_the_monitoring_section_of_the_deployment_config():
    section = json.loads('{"thresholds": {"jensen_shannon_distance": 0.2}, "bins": 10}')
    limits = drift.resolve_thresholds(MonitoringConfig.model_validate(section))
    assert limits["jensen_shannon_distance"] == 0.2
    assert limits["normalized_wasserstein_distance"] == 0.1


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"wasserstein": 0.1}, "threshold 'wasserstein': Extra inputs"),
        ({"null_value_rate": -1}, "greater than or equal to 0"),
    ],
)
def test_bad_thresholds_are_rejected_with_the_key(overrides, message):
    with pytest.raises(ValueError, match=message):
        drift.resolve_thresholds(overrides)


def test_unknown_kind_and_missing_column_are_reported():
    frame = pd.DataFrame({"x": [1.0, 2.0]})
    with pytest.raises(ValueError, match="kind 'float'"):
        drift.compute_drift(frame, frame, {"x": "float"})
    result = drift.compute_drift(frame, frame.rename(columns={"x": "y"}), {"x": "numeric"})
    assert result.loc[0, "note"] == "column missing from current data"
    assert not result.loc[0, "drifted"]


def test_constant_reference_reports_the_raw_distance():
    ref, cur = pd.DataFrame({"x": [2.0] * 10}), pd.DataFrame({"x": [2.0] * 5 + [3.0] * 5})
    row = drift.compute_drift(ref, cur, {"x": "numeric"}).iloc[0]
    assert row["normalized_wasserstein_distance"] == pytest.approx(0.5)
    assert "constant reference" in row["note"]


def test_prediction_drift_on_labels_and_on_probabilities():
    labels = drift.prediction_drift(["a", "a", "b", "b"], ["a", "b", "b", "b"], kind="categorical")
    assert labels.loc[0, "column"] == "prediction"
    assert labels.loc[0, "jensen_shannon_distance"] == pytest.approx(
        jensenshannon([0.5, 0.5], [0.25, 0.75], base=2)
    )
    rng = np.random.default_rng(5)
    ref = pd.DataFrame({"p_a": rng.uniform(size=500), "p_b": rng.uniform(size=500)})
    cur = pd.DataFrame({"p_a": rng.uniform(size=400) ** 3, "p_b": rng.uniform(size=400)})
    probs = drift.prediction_drift(ref, cur).set_index("column")
    assert probs.loc["p_a", "drifted"] and not probs.loc["p_b", "drifted"]


def test_quality_counts_nulls_type_errors_and_out_of_bounds():
    ref = pd.DataFrame(
        {
            "n": [1.0, 2.0, 3.0],
            "i": [1.0, 2.0, 5.0],
            "c": ["a", "b", "a"],
            "b": ["true", "false", "true"],
            "t": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"]),
        }
    )
    kinds = {"n": "numeric", "i": "integer", "c": "categorical", "b": "boolean", "t": "datetime"}
    profile = {"columns": quality.build_profile(ref, kinds)}
    cur = pd.DataFrame(
        {
            "n": [1.5, "n/a", None, 9.0],
            "i": [1.0, 2.5, 6.0, np.nan],
            "c": ["a", "z", 3.5, None],
            "b": [True, "FALSE", "maybe", None],
            "t": ["2024-01-02", "not a date", "2025-01-01", None],
        }
    )
    result = quality.compute_quality(cur, profile).set_index("column")
    counts = result[["nulls", "type_errors", "out_of_bounds"]].to_dict(orient="index")
    assert counts == {
        "n": {"nulls": 1, "type_errors": 1, "out_of_bounds": 1},
        "i": {"nulls": 1, "type_errors": 1, "out_of_bounds": 1},
        "c": {"nulls": 1, "type_errors": 1, "out_of_bounds": 1},
        "b": {"nulls": 1, "type_errors": 1, "out_of_bounds": 0},
        "t": {"nulls": 1, "type_errors": 1, "out_of_bounds": 1},
    }
    assert result.loc["n", "null_value_rate"] == pytest.approx(0.25)
    assert result["flagged"].all()


def test_quality_passes_clean_rows_and_reports_a_missing_feature():
    ref = pd.DataFrame({"n": [1.0, 2.0, 3.0], "c": ["a", "b", "a"]})
    profile = {"columns": quality.build_profile(ref, {"n": "numeric", "c": "categorical"})}
    result = quality.compute_quality(pd.DataFrame({"n": [1.0, 3.0]}), profile).set_index("column")
    assert not result.loc["n", "flagged"]
    assert result.loc["c", "note"] == "column missing"
    assert result.loc["c", "null_value_rate"] == 1.0


def test_build_profile_follows_the_contract_format():
    ref = pd.DataFrame({"n": np.arange(100, dtype=float), "c": ["a"] * 70 + ["b"] * 30})
    columns = quality.build_profile(ref, {"n": "numeric", "c": "categorical"})
    assert columns["n"]["min"] == 0.0 and columns["n"]["max"] == 99.0
    assert len(columns["n"]["bin_edges"]) == 11 and sum(columns["n"]["bin_counts"]) == 100
    assert columns["c"]["categories"] == {"a": 0.7, "b": 0.3}
    json.dumps(columns)


def test_boolean_profile_from_python_bools_accepts_text_labels():
    profile = {
        "columns": quality.build_profile(pd.DataFrame({"b": [True, False]}), {"b": "boolean"})
    }
    result = quality.compute_quality(pd.DataFrame({"b": ["true", "False", True]}), profile)
    assert result.loc[0, "out_of_bounds"] == 0 and result.loc[0, "type_errors"] == 0
