"""The verdict sentence: the retraining rule's own counts, in plain words."""

from __future__ import annotations

import numpy as np
import pandas as pd

from amlkit.config import MonitoringConfig
from amlkit.monitoring import monitor, verdict


def drift_frame(above: int, significant: int, n: int = 7) -> pd.DataFrame:
    """``n`` features: the first ``above`` over the distance threshold, the first
    ``significant`` of them with a significant test."""
    return pd.DataFrame(
        {
            "column": [f"f{i}" for i in range(n)],
            "metric": ["normalized_wasserstein_distance"] * n,
            "value": [0.5 if i < above else 0.01 for i in range(n)],
            "drifted": [i < above for i in range(n)],
            "two_sample_kolmogorov_smirnov_test": [
                0.001 if i < significant else 0.4 for i in range(n)
            ],
            "pearsons_chi_squared_test": [np.nan] * n,
        }
    )


def quality_frame(null_rates: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "column": list(null_rates),
            "null_value_rate": list(null_rates.values()),
            "data_type_error_rate": 0.0,
            "out_of_bounds_rate": 0.0,
        }
    )


def decide(drift, quality, n_rows=300, **rule):
    config = MonitoringConfig.model_validate({"retraining": {"top_n_features": 0, **rule}})
    return monitor.decide_retraining(drift, quality, n_rows=n_rows, config=config, ranking=[])


def test_verdict_counts_what_the_rule_counts_and_the_note_explains_the_rest():
    drift = drift_frame(above=5, significant=4)
    decision = decide(drift, quality_frame({"f0": 0.0, "sex": 0.2133}))
    assert decision.retrain
    assert decision.verdict == (
        "Retraining recommended: 4 of 7 inputs shifted significantly and 21% of 'sex' values "
        "are missing."
    )
    assert decision.checks["drifted_share"]["drifted"] == ["f0", "f1", "f2", "f3"]
    note = verdict.drift_note(decision.checks, drift)
    assert "significant: 4 of 7." in note
    assert "'f4' crosses the distance threshold without a significant test" in note


def test_verdict_without_significance_counts_distance_only():
    drift = drift_frame(above=5, significant=4)
    decision = decide(drift, quality_frame({"f0": 0.0}), require_significance=False)
    assert decision.verdict.startswith("Retraining recommended: 5 of 7 inputs shifted")
    assert verdict.drift_note(decision.checks, drift).endswith("above the threshold: 5 of 7.")


def test_verdict_names_extra_quality_columns_too_few_rows_and_calm_windows():
    bad = quality_frame({"a": 0.5, "b": 0.3, "c": 0.2})
    assert decide(drift_frame(0, 0), bad).verdict == (
        "Retraining recommended: 50% of 'a' values are missing (2 more columns over the limit)."
    )
    few = decide(drift_frame(0, 0), bad, n_rows=10)
    assert not few.retrain
    assert few.verdict == "Too few rows to decide: 10 in the window, the rule needs 50."
    calm = decide(drift_frame(1, 0), quality_frame({"a": 0.0}))
    assert not calm.retrain and calm.verdict.startswith("No action needed")
    off = decide(drift_frame(0, 0), bad, enabled=False)
    assert not off.retrain and off.verdict.startswith(
        "Retraining is disabled in the config; the checks"
    )


def test_facts_say_model_traffic_window_rows_reference_and_action():
    watched = verdict.Watched("penguins-classification", 2, {"blue": 90, "green": 10}, "none")
    window = {"start": "2026-01-01T10:00:00+00:00", "end": "2026-01-01T11:02:03+00:00"}
    assert dict(verdict.facts(watched, window, 1200, 206)) == {
        "model": "penguins-classification version 2",
        "deployments (traffic)": "blue 90%, green 10%",
        "window": "2026-01-01 10:00:00 to 2026-01-01 11:02:03 UTC (1 h 2 min 3 s)",
        "rows in the window": "1,200",
        "reference rows (training split)": "206",
        "action taken": "none",
    }
