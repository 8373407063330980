"""Performance on labelled rows and its confidence-based estimate before labels arrive."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from amlkit.monitoring import performance

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
    assert 0 < estimate["accuracy_std"] < 0.01 and estimate["n"] == 4000


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
