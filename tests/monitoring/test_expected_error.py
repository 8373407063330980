"""Expected error of a regression model before labels arrive, and estimates in monitoring."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from amlkit.monitoring import expected_error, monitor, probabilities

TYPES = {"x": "numeric", "group": "categorical"}
HALF_NORMAL = math.sqrt(2 / math.pi)  # E|e| of a standard normal error


def rows(n: int, seed: int, share_b: float = 0.5, shift: float = 0.0) -> pd.DataFrame:
    """Inputs x (uniform 0..10, plus ``shift``) and group a/b (b with ``share_b``)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.uniform(0, 10, n) + shift,
            "group": np.where(rng.random(n) < share_b, "b", "a"),
        }
    )


def predictions_and_truth(frame: pd.DataFrame, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A model predicting 2x; the truth is off by a normal error of std 1 (group a) or 3 (b)."""
    rng = np.random.default_rng(seed)
    pred = 2 * frame["x"].to_numpy()
    scale = np.where(frame["group"] == "b", 3.0, 1.0)
    return pred, pred + rng.normal(0, scale)


def test_a_model_with_a_constant_error_is_expected_to_make_that_error():
    reference = rows(300, seed=0)
    pred = 2 * reference["x"].to_numpy()
    signs = np.random.default_rng(1).choice([-1.0, 1.0], len(pred))
    errors = expected_error.fit(reference, pred + 1.5 * signs, pred, TYPES)
    window = rows(200, seed=2)
    found = errors.estimate(window, 2 * window["x"].to_numpy())
    assert found["mae"] == pytest.approx(1.5) and found["rmse"] == pytest.approx(1.5)
    assert found["mae_low"] == pytest.approx(1.5) and found["mae_high"] == pytest.approx(1.5)
    assert found["n"] == 200 and found["reliable"] and found["unreliable_reason"] is None


@pytest.mark.parametrize("share_b", [0.1, 0.9])
def test_expected_error_follows_the_mix_of_rows_the_window_holds(share_b):
    reference = rows(3000, seed=3)
    pred, truth = predictions_and_truth(reference, seed=4)
    errors = expected_error.fit(reference, truth, pred, TYPES)
    assert errors.absolute_weight > 0.8  # the group does predict the error
    window = rows(2000, seed=5, share_b=share_b)
    window_pred, window_truth = predictions_and_truth(window, seed=6)
    found = errors.estimate(window, window_pred)
    share = (window["group"] == "b").mean()
    expected_mae = HALF_NORMAL * (1 * (1 - share) + 3 * share)
    expected_rmse = math.sqrt(1 * (1 - share) + 9 * share)
    assert found["mae"] == pytest.approx(expected_mae, rel=0.05)
    assert found["rmse"] == pytest.approx(expected_rmse, rel=0.05)
    realized = np.abs(window_truth - window_pred).mean()
    assert found["mae_low"] < realized < found["mae_high"]
    assert found["mae_high"] - found["mae_low"] < 0.4


def test_inputs_that_do_not_predict_the_error_leave_the_reference_level():
    reference = rows(150, seed=7)
    pred = 2 * reference["x"].to_numpy()
    truth = pred + np.random.default_rng(8).normal(0, 2, len(pred))  # same error everywhere
    errors = expected_error.fit(reference, truth, pred, TYPES)
    assert errors.absolute_weight < 0.5
    window = rows(200, seed=9, share_b=0.9)
    found = errors.estimate(window, 2 * window["x"].to_numpy())
    assert found["mae"] == pytest.approx(np.abs(truth - pred).mean(), rel=0.1)


def test_rows_outside_the_reference_make_the_estimate_unreliable():
    reference = rows(300, seed=10)
    pred, truth = predictions_and_truth(reference, seed=11)
    errors = expected_error.fit(reference, truth, pred, TYPES)
    calm = rows(200, seed=12)
    assert errors.estimate(calm, 2 * calm["x"].to_numpy())["reliable"]

    def outside_x(frame: pd.DataFrame) -> pd.Series:
        x, seen = frame["x"], reference["x"]
        return (x < seen.min()) | (x > seen.max()) | (2 * x < pred.min()) | (2 * x > pred.max())

    shifted = rows(200, seed=12, shift=5.0)  # half the rows above the reference's largest x
    found = errors.estimate(shifted, 2 * shifted["x"].to_numpy())
    assert not found["reliable"] and found["outside_share"] == pytest.approx(
        outside_x(shifted).mean()
    )
    assert 0.4 < found["outside_share"] < 0.6
    assert "x outside the reference's" in found["unreliable_reason"]
    unseen = calm.assign(group=np.where(np.arange(200) < 40, "c", calm["group"]))
    found = errors.estimate(unseen, 2 * unseen["x"].to_numpy())
    assert not found["reliable"] and found["outside_share"] == pytest.approx(
        ((unseen["group"] == "c") | outside_x(unseen)).mean()
    )
    assert "group has a category the reference never had in 40 rows" in found["unreliable_reason"]


def test_bad_input_is_named():
    reference = rows(20, seed=13)
    pred = reference["x"].to_numpy()
    with pytest.raises(ValueError, match="one target and one prediction per row"):
        expected_error.fit(reference, pred[:-1], pred, TYPES)
    with pytest.raises(ValueError, match="lack the inputs"):
        expected_error.fit(reference[["x"]], pred, pred, TYPES)
    errors = expected_error.fit(reference, pred + 1, pred, TYPES)
    with pytest.raises(ValueError, match="lack the model inputs"):
        errors.estimate(reference[["x"]], pred)
    assert errors.estimate(reference.head(0), pred[:0]) is None


def write_processed(dataset: str, target: str, task: str):
    """Ingest a bundled set with ``target`` and write a processed version (60/20/20)."""
    from amlkit.data import ingest, preprocess, profile

    ingest.ingest(dataset, target=target, task=task, progress=False)
    frame, raw = ingest.load_raw(dataset)
    cleaned = preprocess.clean(frame, raw)
    shuffled = cleaned.frame.sample(frac=1.0, random_state=0).reset_index(drop=True)
    a, b = int(0.6 * len(shuffled)), int(0.8 * len(shuffled))
    parts = {"train": shuffled[:a], "validation": shuffled[a:b], "test": shuffled[b:]}
    splits = {name: part.reset_index(drop=True) for name, part in parts.items()}
    baseline = profile.build_profile(
        splits["train"], feature_types=cleaned.feature_types, target=target, task=task
    )
    processed, _ = preprocess.write_processed(
        splits, raw=raw, cleaned=cleaned, params={}, stratified=False, profile=baseline
    )
    return processed


def test_a_regression_champion_gets_an_expected_error(project, feature_preprocessor, tmp_path):
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.pipeline import Pipeline

    cars = write_processed("cars", "Miles_per_Gallon", "regression")
    types, target = cars.manifest.feature_types, cars.manifest.target
    model = Pipeline(
        [
            ("preprocess", feature_preprocessor(types)),
            ("model", RandomForestRegressor(n_estimators=30, random_state=0, n_jobs=1)),
        ]
    ).fit(cars.train[list(types)], cars.train[target])
    window = cars.validation.assign(prediction=lambda f: model.predict(f[list(types)]))
    result = monitor.run_monitoring(window, cars, model=model)
    estimated, realized = result.performance["estimated"], result.performance["realized"]
    assert estimated["n"] == len(window) and estimated["reliable"]
    assert estimated["mae_low"] < realized["metrics"]["mae"] < estimated["mae_high"]
    assert result.summary()["estimated"]["mae"] == pytest.approx(estimated["mae"], abs=1e-4)
    html_path, _ = monitor.write_monitoring_report(result, cars, tmp_path)
    page = html_path.read_text()
    assert "expected MAE" in page and f"{estimated['mae']:.3f}" in page
    assert "realized MAE" in page


def test_a_keras_classifier_gets_an_estimate_from_its_probabilities(project, feature_preprocessor):
    import keras
    from sklearn.pipeline import Pipeline

    from amlkit.deep import determinism

    penguins = write_processed("penguins", "species", "classification")
    types, target = penguins.manifest.feature_types, penguins.manifest.target
    prepare = feature_preprocessor(types).fit(penguins.train[list(types)])
    classes = sorted(penguins.train[target].unique())
    determinism.set_determinism(0)
    network = keras.Sequential(
        [
            keras.Input((prepare.transform(penguins.train.head(1)).shape[1],)),
            keras.layers.Dense(len(classes), activation="softmax"),
        ]
    )
    network.compile(keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy")
    x = prepare.transform(penguins.train[list(types)])
    network.fit(x, np.searchsorted(classes, penguins.train[target]), epochs=30, verbose=0)
    model = Pipeline([("preprocess", prepare), ("network", network)])
    seen = probabilities.as_classifier(model, penguins.train[target])
    assert list(seen.classes_) == classes
    window = penguins.validation.assign(prediction=lambda f: seen.predict(f[list(types)]))
    result = monitor.run_monitoring(window, penguins, model=model)
    estimated, realized = result.performance["estimated"], result.performance["realized"]
    assert estimated["n"] == len(window)
    assert abs(estimated["accuracy"] - realized["metrics"]["accuracy"]) < 0.1
