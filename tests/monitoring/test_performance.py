"""Performance on labelled rows and its confidence-based estimate before labels arrive."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score

from amlkit.monitoring import performance, shift_sensitivity

CLASSES = np.array(["a", "b", "c"])


def calibrated_rows(n: int, seed: int, sharpness: float = 1.0):
    """Probabilities whose labels are drawn from them: calibrated by construction."""
    rng = np.random.default_rng(seed)
    proba = rng.dirichlet(np.full(3, sharpness), n)
    labels = CLASSES[[rng.choice(3, p=p) for p in proba]]
    return proba, labels


@pytest.mark.parametrize("sharpness", [0.3, 1.0])
def test_estimate_matches_realized_accuracy_and_f1_on_calibrated_probabilities(sharpness):
    reference, reference_labels = calibrated_rows(4000, seed=0, sharpness=sharpness)
    calibration = performance.calibrate(reference, reference_labels, CLASSES)
    proba, labels = calibrated_rows(4000, seed=1, sharpness=sharpness)
    estimate = performance.estimate(calibration, proba)
    predicted = CLASSES[proba.argmax(axis=1)]
    assert estimate["accuracy"] == pytest.approx(accuracy_score(labels, predicted), abs=0.03)
    assert estimate["f1_macro"] == pytest.approx(
        f1_score(labels, predicted, average="macro"), abs=0.03
    )
    # window sampling and the reference gap's error, each about 0.007 here
    assert 0 < estimate["accuracy_std"] < 0.015 and estimate["n"] == 4000
    assert estimate["accuracy_low"] < estimate["accuracy"] < estimate["accuracy_high"]
    assert estimate["reliable"] and estimate["method"] == "difference of confidences"


def test_calibration_corrects_an_overconfident_model():
    proba, labels = calibrated_rows(4000, seed=2)
    sharp = proba**3 / (proba**3).sum(axis=1, keepdims=True)  # same ranking, overconfident
    calibration = performance.calibrate(sharp[:2000], labels[:2000], CLASSES)
    realized = accuracy_score(labels[2000:], CLASSES[sharp[2000:].argmax(axis=1)])
    raw_confidence = sharp[2000:].max(axis=1).mean()
    estimate = performance.estimate(calibration, sharp[2000:])["accuracy"]
    assert abs(raw_confidence - realized) > 0.08
    assert estimate == pytest.approx(realized, abs=0.03)


def test_calibrate_rejects_probabilities_that_do_not_fit_the_classes():
    with pytest.raises(ValueError, match="shape"):
        performance.calibrate(np.ones((4, 2)), ["a"] * 4, CLASSES)
    proba, labels = calibrated_rows(50, seed=3)
    assert performance.estimate(performance.calibrate(proba, labels, CLASSES), proba[:0]) is None


def test_difference_of_confidences_and_its_interval_by_hand():
    reference = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    # predictions a, a, b, a: all right, so the gap is 1 - mean top probability 0.75
    calibration = performance.calibrate(reference, ["a", "a", "b", "a"], ["a", "b"])
    found = performance.estimate(calibration, np.array([[0.7, 0.3], [0.4, 0.6], [0.45, 0.55]]))
    hits = np.array([0.95, 0.85, 0.80])  # top probability + 0.25
    # the gap's error: (4 + 0.5) / (4 + 1) right, binomial over 4 rows
    variance = (hits * (1 - hits)).sum() / 9 + 0.9 * 0.1 / 4
    assert found["accuracy"] == pytest.approx(hits.mean())
    assert found["accuracy_std"] == pytest.approx(np.sqrt(variance))
    assert found["accuracy_low"] == pytest.approx(hits.mean() - 1.959964 * np.sqrt(variance))
    assert found["accuracy_high"] == 1.0
    # 0.55 is below the reference's lowest top probability (0.6): one row of three outside
    assert found["outside_share"] == pytest.approx(1 / 3)
    assert not found["reliable"]
    assert "1 of" not in found["unreliable_reason"]
    assert "33% of rows lie outside" in found["unreliable_reason"]
    assert "only 4 reference rows" in found["unreliable_reason"]
    assert found["shift_correction"] == 0.0


def test_shift_statistics_and_rows_outside_the_reference_by_hand():
    reference = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0], "c": ["p", "p", "q", "q"]})
    space = shift_sensitivity.ReferenceSpace.fit(reference, {"x": "numeric", "c": "categorical"})
    std = np.sqrt(1.25)  # population std of 0..3
    window = pd.DataFrame({"x": reference["x"] + 2 * std, "c": ["p", "r", None, "q"]})
    stats = space.statistics(window)
    # x: mean moved 2 stds, spread unchanged, no new missing values
    assert stats[:3] == pytest.approx([2.0, 0.0, 0.0])
    # c: one of three labels unseen, a quarter missing (none before), shares 1/3 vs 1/2
    assert stats[3:] == pytest.approx([1 / 3, 0.25, 0.5 * (1 / 6 + 1 / 6)])
    flags, columns = space.outside(window)
    # x is 2.24, 3.24, 4.24, 5.24: above the reference's 3 in rows 1-3; "r" and the
    # missing label (none in the reference) in rows 1 and 2
    assert flags.tolist() == [False, True, True, True]
    assert columns == {"x": 0.75, "c": 0.5}


def shifted_world(seed: int):
    """A model on two features whose label follows x1; reference, clean and shifted windows."""
    rng = np.random.default_rng(seed)

    def rows(n):
        x = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n)})
        noisy = x["x1"] + 0.4 * rng.normal(size=n)
        return x, np.where(noisy > 0, "up", "down")

    train, train_y = rows(2000)
    model = LogisticRegression().fit(train, train_y)
    reference, reference_y = rows(400)
    clean, clean_y = rows(1000)
    shifted = clean.assign(x1=clean["x1"] + 2.0)  # a sensor offset: labels stay
    return model, (reference, reference_y), (clean, clean_y), (shifted, clean_y)


def test_shift_correction_and_reliability_on_a_shifted_window():
    model, (reference, reference_y), clean, shifted = shifted_world(seed=7)
    kinds_ = {"x1": "numeric", "x2": "numeric"}
    calibration = performance.calibrate(
        model.predict_proba(reference),
        reference_y,
        model.classes_,
        features=reference,
        feature_types=kinds_,
        predict_proba=model.predict_proba,
        synthetic_windows=300,
    )
    plain = performance.calibrate(model.predict_proba(reference), reference_y, model.classes_)
    results = {}
    for name, (x, y) in {"clean": clean, "shifted": shifted}.items():
        proba = model.predict_proba(x)
        realized = accuracy_score(y, model.classes_[proba.argmax(axis=1)])
        with_features = performance.estimate(calibration, proba, features=x)
        without = performance.estimate(plain, proba)
        results[name] = (realized, with_features, without)
    realized, found, without = results["clean"]
    assert found["reliable"] and found["unreliable_reason"] == ""
    assert found["accuracy"] == pytest.approx(realized, abs=0.03)
    assert found["accuracy_low"] <= realized <= found["accuracy_high"]
    realized, found, without = results["shifted"]
    # the offset costs accuracy the confidence does not show; the correction recovers part
    assert without["accuracy"] - realized > 0.05
    assert abs(found["accuracy"] - realized) < abs(without["accuracy"] - realized)
    assert found["shift_correction"] < 0
    assert found["accuracy_low"] <= realized <= found["accuracy_high"]
    # rows beyond the reference's ranges or below its lowest top probability, counted here
    x, lowest = shifted[0], model.predict_proba(reference).max(axis=1).min()
    beyond = [(x[c] < reference[c].min()) | (x[c] > reference[c].max()) for c in x.columns]
    below = model.predict_proba(x).max(axis=1) < lowest
    expected = np.mean(beyond[0] | beyond[1] | below)
    assert found["outside_share"] == pytest.approx(expected)
    assert expected > 0.1 and not found["reliable"]
    assert "x1" in found["unreliable_reason"]
    assert found["method"] == performance.METHOD


def test_calibrate_rejects_features_without_their_kinds():
    model, (reference, reference_y), _, _ = shifted_world(seed=1)
    proba = model.predict_proba(reference)
    with pytest.raises(ValueError, match="feature_types"):
        performance.calibrate(proba, reference_y, model.classes_, features=reference)
    with pytest.raises(ValueError, match="lack columns"):
        performance.calibrate(
            proba, reference_y, model.classes_, features=reference, feature_types={"x3": "numeric"}
        )


def test_realized_classification_uses_training_metric_names_and_labelled_rows_only():
    found = performance.realized(["a", "a", "b", None], ["a", "b", "b", "a"], "classification")
    assert found["n"] == 3 and found["labels"] == ["a", "b"]
    metrics = found["metrics"]
    assert metrics["accuracy"] == pytest.approx(2 / 3)
    assert metrics["precision_macro"] == pytest.approx(0.75)
    assert metrics["f1_weighted"] == pytest.approx(
        f1_score(["a", "a", "b"], ["a", "b", "b"], average="weighted")
    )
    assert found["per_class"]["a"] == {
        "precision": 1.0,
        "recall": 0.5,
        "f1": pytest.approx(2 / 3),
        "support": 2,
    }


def test_realized_regression_and_no_labels():
    found = performance.realized([1.0, 2.0, 4.0, np.nan], [1.0, 3.0, 2.0, 5.0], "regression")
    assert found["n"] == 3
    assert found["metrics"]["mae"] == pytest.approx(1.0)
    assert found["metrics"]["rmse"] == pytest.approx(np.sqrt(5 / 3))
    assert performance.realized([None, None], ["a", "b"], "classification") is None
    with pytest.raises(ValueError, match="ranking"):
        performance.realized([1], [1], "ranking")
