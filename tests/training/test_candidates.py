"""The candidates of model_config.json, as notebook 04 builds them: estimators and search spaces."""

import pytest
from scipy import stats
from sklearn.base import BaseEstimator

from amlkit.config import CandidateConfig, ConfigError, ModelConfig


def small_raw() -> dict:
    return {
        "random_state": 7,
        "candidates": {
            "linear": {
                "tasks": ["classification", "regression"],
                "estimator": {
                    "classification": "sklearn.linear_model.LogisticRegression",
                    "regression": "sklearn.linear_model.Ridge",
                },
                "params": {"classification": {"max_iter": 500}, "regression": {}},
                "search_space": {
                    "classification": {"C": {"loguniform": [0.1, 10.0]}},
                    "regression": {"alpha": {"loguniform": [0.01, 10.0]}},
                },
            },
            "forest": {
                "tasks": ["classification", "regression"],
                "estimator": {
                    "classification": "sklearn.ensemble.RandomForestClassifier",
                    "regression": "sklearn.ensemble.RandomForestRegressor",
                },
                "params": {"classification": {"n_jobs": 1}, "regression": {"n_jobs": 1}},
                "search_space": {
                    "classification": {
                        "n_estimators": {"randint": [5, 15]},
                        "max_depth": {"choice": [None, 3]},
                    },
                    "regression": {"n_estimators": {"randint": [5, 15]}},
                },
            },
        },
    }


def test_candidates_for_keeps_the_task_candidates_in_file_order():
    raw = small_raw()
    raw["candidates"]["forest"]["tasks"] = ["regression"]
    model_config = ModelConfig.from_dict(raw)

    assert list(model_config.candidates_for("classification")) == ["linear"]
    assert list(model_config.candidates_for("regression")) == ["linear", "forest"]
    raw["candidates"]["linear"]["tasks"] = []
    with pytest.raises(ConfigError, match="no candidate for task 'classification'"):
        ModelConfig.from_dict(raw).candidates_for("classification")


def test_estimator_gets_the_fixed_params_and_the_seed():
    forest = ModelConfig.from_dict(small_raw()).candidates["forest"]

    estimator = forest.estimator_for("classification", random_state=7)

    assert type(estimator).__name__ == "RandomForestClassifier"
    assert (estimator.n_jobs, estimator.random_state) == (1, 7)
    space = forest.distributions_for("classification")
    assert set(space) == {"model__n_estimators", "model__max_depth"}
    assert space["model__max_depth"] == [None, 3]


def test_repository_model_config_builds_every_candidate_for_both_tasks(repo):
    model_config = ModelConfig.load(repo / "config")
    for task in ("classification", "regression"):
        for candidate in model_config.candidates_for(task).values():
            assert isinstance(candidate.estimator_for(task, 42), BaseEstimator)
            assert all(k.startswith("model__") for k in candidate.distributions_for(task))


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("os.system", r"estimator.classification = 'os\.system' is not allowed"),
        ("sklearn.linear_model.Logistic", "has no estimator class 'Logistic'"),
        ("sklearn.linear_model.enet_path", "has no estimator class 'enet_path'"),
    ],
)
def test_unknown_or_forbidden_estimator_is_rejected_naming_the_key(path, message):
    raw = small_raw()
    raw["candidates"]["linear"]["estimator"]["classification"] = path
    with pytest.raises(ConfigError, match=message):
        ModelConfig.from_dict(raw).candidates["linear"].estimator_for("classification")


@pytest.mark.parametrize(
    ("spec", "check"),
    [
        ({"loguniform": [0.01, 100.0]}, lambda d: d.support() == pytest.approx((0.01, 100.0))),
        ({"uniform": [0.2, 0.5]}, lambda d: d.support() == (0.2, pytest.approx(0.5))),
        ({"randint": [1, 5]}, lambda d: d.support() == (1, 4)),
        ({"choice": ["a", None]}, lambda d: d == ["a", None]),
    ],
)
def test_search_space_entries_become_distributions(spec, check):
    candidate = CandidateConfig.model_validate(
        {
            "tasks": ["classification"],
            "estimator": {"classification": "sklearn.svm.SVC"},
            "search_space": {"classification": {"C": spec}},
        }
    )
    dist = candidate.distributions_for("classification")["model__C"]
    assert check(dist)
    if not isinstance(dist, list):
        assert isinstance(dist, stats.distributions.rv_frozen)


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"C": {"normal": [0, 1]}}, "search_space.classification.C.normal"),
        ({"C": {"uniform": [1.0, 0.5]}}, "low < high"),
        ({"C": {"loguniform": [0.0, 1.0]}}, "low must be > 0"),
        ({"C": {"randint": [1.5, 4]}}, "must be integers"),
        ({"C": {"choice": []}}, "non-empty list"),
        ({"gamma_typo": {"choice": [1]}}, "SVC has no parameter 'gamma_typo'"),
    ],
)
def test_malformed_search_space_is_rejected(space, message):
    raw = small_raw()
    raw["candidates"]["linear"]["estimator"]["classification"] = "sklearn.svm.SVC"
    raw["candidates"]["linear"]["params"] = {}
    raw["candidates"]["linear"]["search_space"] = {"classification": space}
    with pytest.raises(ConfigError, match=message):
        ModelConfig.from_dict(raw).candidates["linear"].estimator_for("classification")


def test_bad_fixed_params_are_reported_with_the_key():
    raw = small_raw()
    raw["candidates"]["linear"]["params"]["classification"] = {"max_iterations": 5}
    with pytest.raises(ConfigError, match=r"params\.classification"):
        ModelConfig.from_dict(raw).candidates["linear"].estimator_for("classification")
