import logging

import cloudpickle
import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.model_selection import KFold, StratifiedKFold

from amlkit.config import CandidateConfig, ConfigError, ModelConfig
from amlkit.training import evaluate, search

FEATURE_TYPES = {
    "x1": "numeric",
    "x2": "integer",
    "color": "categorical",
    "flag": "boolean",
    "when": "datetime",
}


def small_raw() -> dict:
    return {
        "random_state": 7,
        "cv_folds": 3,
        "search_iterations": 2,
        "primary_metric": {"classification": "f1_macro", "regression": "rmse"},
        "promotion_margin": 0.0,
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


def small_config(**overrides) -> ModelConfig:
    return ModelConfig.from_dict(small_raw() | overrides)


def synthetic(task: str, n: int = 90, n_classes: int = 2, seed: int = 0) -> pd.DataFrame:
    """Rows with every column kind, missing values, and a target that depends on them."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "x1": rng.normal(size=n),
            "x2": rng.integers(0, 5, size=n).astype(float),
            "color": rng.choice(["red", "green", "blue"], size=n).astype(object),
            "flag": rng.choice(["true", "false"], size=n).astype(object),
            "when": pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 700, n), "D"),
        }
    )
    signal = frame["x1"] + 0.5 * (frame["color"] == "red") + 0.3 * frame["x2"]
    if task == "regression":
        frame["target"] = 3.0 * signal + rng.normal(scale=0.1, size=n)
    else:
        edges = np.quantile(signal, np.linspace(0, 1, n_classes + 1)[1:-1])
        frame["target"] = np.asarray([f"c{i}" for i in range(n_classes)])[
            np.searchsorted(edges, signal)
        ]
    frame.loc[::7, "x1"] = np.nan
    frame.loc[::9, "color"] = None
    frame.loc[::11, "when"] = pd.NaT
    return frame


def test_build_candidates_returns_preprocess_then_model_with_prefixed_space():
    built = search.build_candidates("classification", small_config(), feature_types=FEATURE_TYPES)
    assert list(built) == ["linear", "forest"]
    pipeline, space = built["forest"]
    assert [name for name, _ in pipeline.steps] == ["preprocess", "model"]
    assert type(pipeline.named_steps["model"]).__name__ == "RandomForestClassifier"
    assert pipeline.named_steps["model"].random_state == 7
    assert set(space) == {"model__n_estimators", "model__max_depth"}
    assert space["model__max_depth"] == [None, 3]
    assert pipeline.named_steps["model"].n_jobs == 1


def test_build_candidates_skips_candidates_of_other_tasks():
    raw = small_raw()
    raw["candidates"]["forest"]["tasks"] = ["regression"]
    built = search.build_candidates(
        "classification", ModelConfig.from_dict(raw), feature_types=FEATURE_TYPES
    )
    assert list(built) == ["linear"]
    raw["candidates"]["linear"]["tasks"] = []
    with pytest.raises(ConfigError, match="no candidate for task 'classification'"):
        search.build_candidates(
            "classification", ModelConfig.from_dict(raw), feature_types=FEATURE_TYPES
        )


def test_repository_model_config_builds_for_both_tasks(repo):
    model_config = ModelConfig.load(repo / "config")
    for task in ("classification", "regression"):
        built = search.build_candidates(task, model_config, feature_types=FEATURE_TYPES)
        assert set(built) == set(model_config.candidates)
        assert all(k.startswith("model__") for _, space in built.values() for k in space)


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
        model_config = ModelConfig.from_dict(raw)
        search.build_candidates("classification", model_config, feature_types=FEATURE_TYPES)


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
        search.build_candidates(
            "classification", ModelConfig.from_dict(raw), feature_types=FEATURE_TYPES
        )


def test_make_cv_reduces_folds_for_small_classes_with_a_warning(caplog):
    y = ["a"] * 10 + ["b"] * 3
    with caplog.at_level(logging.WARNING, logger="amlkit.training.search"):
        cv = search.make_cv("classification", y, 5, 0)
    assert isinstance(cv, StratifiedKFold)
    assert cv.get_n_splits() == 3
    assert "smallest class has 3 rows" in caplog.text
    regression_cv = search.make_cv("regression", np.arange(10.0), 5, 0)
    assert isinstance(regression_cv, KFold)
    assert regression_cv.shuffle
    assert regression_cv.get_n_splits() == 5
    with pytest.raises(ValueError, match="at least 2"):
        search.make_cv("classification", ["a"] * 5, 5, 0)


def test_search_candidate_uses_the_seeded_folds_and_the_given_scoring():
    df = synthetic("classification", n=60)
    pipeline, space = search.build_candidates(
        "classification", small_config(), feature_types=FEATURE_TYPES
    )["linear"]
    fitted = search.search_candidate(
        "linear",
        pipeline,
        space,
        df[list(FEATURE_TYPES)],
        df["target"],
        task="classification",
        cv_folds=3,
        n_iter=2,
        random_state=3,
        scoring="f1_macro",
    )
    assert isinstance(fitted.cv, StratifiedKFold)
    assert fitted.cv.random_state == 3
    assert fitted.scoring == "f1_macro"
    assert fitted.n_jobs == 1
    assert len(fitted.cv_results_["params"]) == 2
    assert fitted.best_estimator_.predict(df[list(FEATURE_TYPES)].head(3)).shape == (3,)


@pytest.mark.parametrize(
    ("task", "n_classes", "metric"),
    [
        ("classification", 2, "f1_macro"),
        ("classification", 3, "f1_macro"),
        ("regression", 0, "rmse"),
    ],
)
def test_train_all_ranks_candidates_by_validation_primary_metric(task, n_classes, metric):
    train_df = synthetic(task, n=90, n_classes=n_classes, seed=0)
    valid_df = synthetic(task, n=45, n_classes=n_classes, seed=1)
    result = search.train_all(
        train_df,
        valid_df,
        target="target",
        feature_types=FEATURE_TYPES,
        task=task,
        model_config=small_config(),
    )
    assert result.primary_metric == metric
    assert set(result.candidates) == {"linear", "forest"}
    column = f"validation_{metric}"
    values = result.comparison[column].tolist()
    assert values == sorted(values, reverse=evaluate.greater_is_better(metric))
    assert result.chosen == result.comparison.index[0]
    best = result.best
    X_val = valid_df[result.feature_columns]
    assert best.validation_metrics == evaluate.evaluate_model(
        best.estimator, X_val, valid_df["target"], task
    )
    assert result.comparison.loc[result.chosen, column] == best.validation_metrics[metric]
    assert result.comparison.loc[result.chosen, "model"] == type(best.estimator[-1]).__name__
    assert best.cv_score == pytest.approx(
        abs(best.search.best_score_) if metric == "rmse" else best.search.best_score_
    )
    assert best.fit_seconds > 0
    if task == "classification":
        assert result.classes == [f"c{i}" for i in range(n_classes)]
        assert best.validation_metrics["accuracy"] > 1 / n_classes
    else:
        assert best.validation_metrics["r2"] > 0.8


def test_train_all_is_deterministic():
    train_df = synthetic("classification", n=80, n_classes=3, seed=2)
    valid_df = synthetic("classification", n=40, n_classes=3, seed=3)
    kwargs = dict(target="target", feature_types=FEATURE_TYPES, task="classification")
    first = search.train_all(train_df, valid_df, model_config=small_config(), **kwargs)
    second = search.train_all(train_df, valid_df, model_config=small_config(), **kwargs)
    assert first.chosen == second.chosen
    pd.testing.assert_frame_equal(
        first.comparison.drop(columns="fit_seconds"), second.comparison.drop(columns="fit_seconds")
    )
    for name in first.candidates:
        assert first.candidates[name].best_params == second.candidates[name].best_params
    X = valid_df[first.feature_columns]
    np.testing.assert_array_equal(
        first.best.estimator.predict_proba(X), second.best.estimator.predict_proba(X)
    )


def test_best_params_are_plain_python_values():
    df = synthetic("regression", n=40)
    result = search.train_all(
        df,
        None,
        target="target",
        feature_types=FEATURE_TYPES,
        task="regression",
        model_config=small_config(),
    )
    for res in result.candidates.values():
        assert all(type(v) in (int, float, str, type(None)) for v in res.best_params.values())


def test_train_all_without_validation_ranks_by_cv_score():
    df = synthetic("regression", n=60)
    result = search.train_all(
        df,
        None,
        target="target",
        feature_types=FEATURE_TYPES,
        task="regression",
        model_config=small_config(),
    )
    assert result.best.validation_metrics == {}
    cv = result.comparison["cv_rmse"].tolist()
    assert cv == sorted(cv)


def test_trained_pipeline_round_trips_through_cloudpickle_and_serves_raw_requests():
    df = synthetic("classification", n=60)
    result = search.train_all(
        df,
        None,
        target="target",
        feature_types=FEATURE_TYPES,
        task="classification",
        model_config=small_config(),
    )
    model = cloudpickle.loads(cloudpickle.dumps(result.best.estimator))
    X = df[result.feature_columns]
    np.testing.assert_array_equal(model.predict(X), result.best.estimator.predict(X))
    request = pd.DataFrame(
        {
            "x1": [0.5, None],
            "x2": [1, 3],
            "color": ["violet", 7],
            "flag": [True, None],
            "when": ["2021-03-04", "2021-03-04T10:00:00Z"],
        }
    )
    assert set(model.predict(request)) <= set(result.classes)
    assert np.allclose(model.predict_proba(request).sum(axis=1), 1.0)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda df: df.drop(columns="color"), r"training data lacks columns \['color'\]"),
        (lambda df: df.assign(target=df["target"].where(df.index > 2)), "3 missing values"),
    ],
)
def test_train_all_rejects_incomplete_training_data(mutate, message):
    df = mutate(synthetic("classification", n=30))
    with pytest.raises(ValueError, match=message):
        search.train_all(
            df,
            None,
            target="target",
            feature_types=FEATURE_TYPES,
            task="classification",
            model_config=small_config(),
        )


def test_train_all_rejects_unknown_task():
    with pytest.raises(ValueError, match="task must be one of classification, regression"):
        search.train_all(
            synthetic("regression", n=20),
            None,
            target="target",
            feature_types=FEATURE_TYPES,
            task="forecasting",
            model_config=small_config(),
        )


def test_train_all_on_palmer_penguins():
    from palmerpenguins import load_penguins

    df = load_penguins().sample(frac=1.0, random_state=0).reset_index(drop=True)
    df = df.dropna(subset=["species"])
    types = {
        "island": "categorical",
        "bill_length_mm": "numeric",
        "bill_depth_mm": "numeric",
        "flipper_length_mm": "numeric",
        "body_mass_g": "numeric",
        "sex": "categorical",
        "year": "integer",
    }
    result = search.train_all(
        df.iloc[:240],
        df.iloc[240:],
        target="species",
        feature_types=types,
        task="classification",
        model_config=small_config(),
    )
    assert result.classes == ["Adelie", "Chinstrap", "Gentoo"]
    assert result.best.validation_metrics["f1_macro"] > 0.9


def test_train_all_on_vega_cars_with_a_datetime_column():
    from vega_datasets import local_data

    df = local_data.cars().dropna(subset=["Miles_per_Gallon"]).reset_index(drop=True)
    df = df.sample(frac=1.0, random_state=0).reset_index(drop=True)
    types = {
        "Cylinders": "categorical",
        "Displacement": "numeric",
        "Horsepower": "numeric",
        "Weight_in_lbs": "integer",
        "Acceleration": "numeric",
        "Year": "datetime",
        "Origin": "categorical",
    }
    result = search.train_all(
        df.iloc[:300],
        df.iloc[300:],
        target="Miles_per_Gallon",
        feature_types=types,
        task="regression",
        model_config=small_config(),
    )
    assert result.best.validation_metrics["r2"] > 0.7
    assert "Year_year" in result.best.estimator[0].get_feature_names_out()


def test_candidate_without_search_space_is_fitted_once():
    raw = small_raw()
    raw["candidates"] = {
        "baseline": {
            "tasks": ["classification"],
            "estimator": {"classification": "sklearn.dummy.DummyClassifier"},
        },
        **raw["candidates"],
    }
    cfg = ModelConfig.from_dict(raw)
    df = synthetic("classification", n=60)
    result = search.train_all(
        df,
        synthetic("classification", n=30, seed=5),
        target="target",
        feature_types=FEATURE_TYPES,
        task="classification",
        model_config=cfg,
    )
    baseline = result.candidates["baseline"]
    assert baseline.best_params == {}
    assert len(baseline.search.cv_results_["params"]) == 1
    assert result.comparison.index[-1] == "baseline"
    assert result.chosen != "baseline"


def test_train_all_on_seattle_weather_with_rare_classes(caplog):
    from vega_datasets import local_data

    df = local_data.seattle_weather().sample(frac=1.0, random_state=0).reset_index(drop=True)
    types = {
        "date": "datetime",
        "precipitation": "numeric",
        "temp_max": "numeric",
        "temp_min": "numeric",
        "wind": "numeric",
    }
    train_df, valid_df = df.iloc[:200], df.iloc[200:300]  # only 2 "snow" rows in training
    with caplog.at_level(logging.WARNING, logger="amlkit.training.search"):
        result = search.train_all(
            train_df,
            valid_df,
            target="weather",
            feature_types=types,
            task="classification",
            model_config=small_config(cv_folds=5),
        )
    assert "smallest class has 2 rows, fewer than cv_folds=5; using 2 folds" in caplog.text
    assert result.classes == sorted(train_df["weather"].unique())
    metrics = result.best.validation_metrics
    assert 0.0 <= metrics["balanced_accuracy"] <= 1.0
    assert metrics["accuracy"] > 0.5
