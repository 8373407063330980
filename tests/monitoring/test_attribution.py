"""Feature attribution drift: the NDCG of the importance ranking, as Azure ML defines it."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from amlkit.config import MonitoringConfig
from amlkit.monitoring import attribution, monitor, report, verdict

FEATURES = ["x1", "x2", "x3", "colour"]


def test_ndcg_matches_a_ranking_computed_by_hand():
    reference = pd.Series({"a": 3.0, "b": 2.0, "c": 1.0})
    production = pd.Series({"a": 0.1, "b": 0.2, "c": 0.3})  # ranks c, b, a: reversed
    # production order c, b, a: gains are the reference importances 1, 2, 3 at ranks 1, 2, 3
    dcg = 1.0 / math.log2(2) + 2.0 / math.log2(3) + 3.0 / math.log2(4)
    # best order a, b, c
    ideal = 3.0 / math.log2(2) + 2.0 / math.log2(3) + 1.0 / math.log2(4)
    assert dcg == pytest.approx(1 + 1.2618595 + 1.5)
    assert ideal == pytest.approx(3 + 1.2618595 + 0.5)
    assert attribution.ndcg(reference, production) == pytest.approx(dcg / ideal)
    assert attribution.ndcg(reference, production) == pytest.approx(0.78999, abs=1e-5)


def test_ndcg_is_one_for_the_same_order_and_counts_a_missing_feature_as_zero():
    reference = pd.Series({"a": 3.0, "b": 2.0, "c": 1.0})
    assert attribution.ndcg(reference, pd.Series({"a": 9.0, "b": 5.0, "c": 0.5})) == 1.0
    # production lacks "a": order b, c, a; gains 2, 1, 3
    dcg = 2.0 / math.log2(2) + 1.0 / math.log2(3) + 3.0 / math.log2(4)
    ideal = 3.0 / math.log2(2) + 2.0 / math.log2(3) + 1.0 / math.log2(4)
    found = attribution.ndcg(reference, pd.Series({"b": 2.0, "c": 1.0}))
    assert found == pytest.approx(dcg / ideal)


def test_ndcg_refuses_negative_importances():
    with pytest.raises(ValueError, match="must not be negative"):
        attribution.ndcg(pd.Series({"a": 1.0, "b": -0.1}), pd.Series({"a": 1.0, "b": 0.0}))


def _rows(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "x1": rng.normal(size=n),
            "x2": rng.normal(size=n),
            "x3": rng.normal(size=n),
            "colour": rng.choice(["red", "blue"], size=n),
        }
    )
    frame["label"] = np.where(frame["x1"] + 0.4 * frame["x2"] > 0, "yes", "no")
    return frame


@pytest.fixture(scope="module")
def classifier():
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    pre = ColumnTransformer(
        [("num", StandardScaler(), ["x1", "x2", "x3"]), ("cat", OneHotEncoder(), ["colour"])]
    )
    train = _rows(400, 0)
    model = Pipeline([("pre", pre), ("model", LogisticRegression(C=10.0))])
    return model.fit(train[FEATURES], train["label"]), train


def _drift(classifier, production, **kwargs):
    model, train = classifier
    return attribution.attribution_drift(
        model, train, production, features=FEATURES, target="label", task="classification",
        **kwargs,
    )  # fmt: skip


def test_an_undrifted_window_keeps_the_ranking(classifier):
    found = _drift(classifier, _rows(300, 1))
    assert list(found.reference.index[:2]) == ["x1", "x2"]
    assert list(found.production.index[:2]) == ["x1", "x2"]
    assert found.ndcg > 0.99 and not found.drifted


def test_a_window_whose_most_important_input_is_stuck_has_drifted(classifier):
    production = _rows(300, 1).assign(x1=0.0)  # a broken feed: the key input is constant
    found = _drift(classifier, production)
    assert found.production["x1"] == 0.0
    assert found.production.index[0] == "x2"
    assert found.ndcg < 0.9 and found.drifted
    frame = found.rankings(2)
    assert list(frame["training feature"]) == ["x1", "x2"]
    assert frame["production feature"].iloc[0] == "x2"


def test_attribution_is_deterministic_for_a_seed_and_uses_the_given_predictions(classifier):
    model, _ = classifier
    production = _rows(300, 2)
    first = _drift(classifier, production, random_state=3)
    again = _drift(classifier, production, random_state=3)
    assert first.to_dict() == again.to_dict()
    given = _drift(classifier, production, random_state=3, predictions=model.predict(production))
    assert given.to_dict() == first.to_dict()
    # failed requests carry no prediction: their rows are left out
    answered = np.where(np.arange(300) < 100, None, model.predict(production[FEATURES]))
    assert _drift(classifier, production, predictions=answered).production_rows == 200


def test_attribution_names_a_missing_column(classifier):
    with pytest.raises(ValueError, match=r"the production rows lack \['x3'\]"):
        _drift(classifier, _rows(20, 1).drop(columns="x3"))


def _decide(found, **rules):
    drift = pd.DataFrame(
        columns=["column", "metric", "value", "drifted", "two_sample_kolmogorov_smirnov_test",
                 "pearsons_chi_squared_test"]
    )  # fmt: skip
    quality = pd.DataFrame(columns=["column", *verdict.QUALITY_PHRASES])
    config = MonitoringConfig.model_validate({"retraining": rules})
    return monitor.decide_retraining(drift, quality, n_rows=300, config=config, attribution=found)


def test_retraining_rule_fires_when_the_ranking_changed_and_says_so(classifier):
    found = _drift(classifier, _rows(300, 1).assign(x1=0.0))
    decision = _decide(found)
    check = decision.checks["attribution_drift"]
    assert check["fired"] and check["value"] == round(found.ndcg, 4) and check["limit"] == 0.9
    assert decision.retrain
    assert decision.reasons == [f"attribution_drift {check['value']} < 0.9"]
    assert "the ranking of what drives predictions changed (NDCG" in decision.verdict
    assert "attribution_drift" not in _decide(found, attribution_drift=False).checks
    calm = _decide(_drift(classifier, _rows(300, 1)))
    assert not calm.checks["attribution_drift"]["fired"] and not calm.retrain


def test_report_shows_both_rankings_in_words_with_the_code_name_in_a_tooltip(classifier, tmp_path):
    found = _drift(classifier, _rows(300, 1).assign(x1=0.0))
    drift = pd.DataFrame(
        {"column": ["x1"], "kind": ["numerical"], "metric": ["normalized_wasserstein_distance"],
         "value": [0.5], "threshold": [0.1], "drifted": [True],
         "two_sample_kolmogorov_smirnov_test": [0.0], "pearsons_chi_squared_test": [np.nan],
         "population_stability_index": [0.3], "note": [""]}
    )  # fmt: skip
    quality = pd.DataFrame(columns=["column", "flagged"])
    html_path, json_path = report.write_report(
        tmp_path / "r.html", drift=drift, quality=quality, attribution=found
    )
    page = html_path.read_text()
    assert "What drives the predictions" in page
    assert "The ranking of what drives predictions\n<b>changed</b>" in page
    assert f"(NDCG)</span> {found.ndcg:.3f}" in page
    assert page.count("normalized_discounted_cumulative_gain") == 1  # the tooltip only
    assert 'title="normalized_discounted_cumulative_gain"' in page
    assert "<td>x1</td>" in page and '<td class="bad">x2</td>' in page
    twin = json.loads(json_path.read_text())["attribution"]
    assert twin["value"] == pytest.approx(found.ndcg, abs=1e-6) and twin["drifted"] is True


@pytest.fixture
def forest(processed_penguins, feature_preprocessor):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline

    types = processed_penguins.manifest.feature_types
    model = Pipeline(
        [
            ("preprocess", feature_preprocessor(types)),
            ("model", RandomForestClassifier(n_estimators=30, random_state=0, n_jobs=1)),
        ]
    )
    return model.fit(processed_penguins.train[list(types)], processed_penguins.train["species"])


def test_monitoring_a_penguin_window_compares_the_importance_rankings(processed_penguins, forest):
    from amlkit.monitoring import traffic

    features = list(processed_penguins.manifest.feature_types)
    rows = traffic.sample_rows(traffic.held_out_rows(processed_penguins), 300, seed=0)
    rows["prediction"] = forest.predict(rows[features])
    calm = monitor.run_monitoring(rows, processed_penguins, model=forest)
    top = calm.attribution.reference.index[0]
    assert calm.attribution.ndcg > 0.9 and not calm.decision.checks["attribution_drift"]["fired"]
    assert calm.summary()["attribution_ndcg"] == round(calm.attribution.ndcg, 4)
    stuck = rows.assign(**{top: processed_penguins.train[top].mode()[0]})
    stuck["prediction"] = forest.predict(stuck[features])
    broken = monitor.run_monitoring(stuck, processed_penguins, model=forest)
    assert broken.attribution.production[top] == 0.0
    assert broken.attribution.ndcg < calm.attribution.ndcg


def test_attribution_does_not_depend_on_the_order_rows_arrived_in(classifier):
    production = _rows(300, 2)
    shuffled = production.sample(frac=1.0, random_state=7)
    assert _drift(classifier, shuffled).to_dict() == _drift(classifier, production).to_dict()
