"""Model performance in production: realized on labelled rows, estimated before labels arrive.

Realized performance uses training's metric names (``f1_macro``, ``precision_weighted``,
``rmse`` ... from :mod:`amlkit.training.evaluate`), so it sits beside the training test
score. The estimate is confidence-based performance estimation (the idea behind NannyML's
CBPE): the model's probabilities are calibrated on labelled reference rows (one isotonic
curve per class, one-vs-rest, rows renormalised), and a window's expected confusion
matrix follows from them: expected accuracy is the mean calibrated probability of the
predicted class, expected F1 per class comes from the expected true and false positives
and false negatives. It holds while the relation between inputs and label stays as it was
(covariate shift, no concept drift); ``benchmarks/performance_estimation_benchmark.py``
measures how close it comes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression

from amlkit.training import evaluate


@dataclass(frozen=True)
class Calibration:
    """Per-class isotonic curves mapping a model's probabilities to observed frequencies."""

    classes: np.ndarray
    curves: list[IsotonicRegression]

    def apply(self, proba: Any) -> np.ndarray:
        """Return calibrated probabilities (columns in the order of ``classes``; rows sum to 1)."""
        raw = np.asarray(proba, dtype=float)
        out = np.column_stack([c.predict(raw[:, k]) for k, c in enumerate(self.curves)])
        total = out.sum(axis=1, keepdims=True)
        return np.where(total > 0, out / np.where(total > 0, total, 1), 1 / len(self.classes))


def calibrate(proba: Any, y_true: Any, classes: Sequence[Any]) -> Calibration:
    """Fit the calibration on labelled reference rows (the test split the model never saw).

    Args:
        proba: the model's probabilities for the reference rows, columns in ``classes`` order.
        y_true: their labels.
        classes: the model's classes (``model.classes_``).

    Raises:
        ValueError: ``proba`` and ``classes`` disagree, or fewer than two rows.
    """
    raw, truth, labels = np.asarray(proba, dtype=float), np.asarray(y_true), np.asarray(classes)
    if raw.ndim != 2 or raw.shape[1] != len(labels) or len(raw) != len(truth) or len(raw) < 2:
        raise ValueError(
            f"probabilities of shape {raw.shape} do not fit {len(truth)} labels and classes "
            f"{labels.tolist()}; pass predict_proba of at least two labelled rows"
        )
    curves = [
        IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(raw[:, k], truth == c)
        for k, c in enumerate(labels)
    ]
    return Calibration(labels, curves)


def expected_metrics(calibrated: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Return expected ``accuracy`` (with its sampling ``accuracy_std``) and ``f1_macro``.

    Args:
        calibrated: calibrated probabilities, one row per scored row.
        predicted: the column index of each row's predicted class.
    """
    n = len(predicted)
    hit = calibrated[np.arange(n), predicted]
    chosen = np.eye(calibrated.shape[1], dtype=bool)[predicted]
    tp = (calibrated * chosen).sum(axis=0)
    fp = ((1 - calibrated) * chosen).sum(axis=0)
    fn = (calibrated * ~chosen).sum(axis=0)
    seen = (tp + fp + fn) > 0  # classes expected or predicted, as sklearn's macro F1 counts
    f1 = np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros_like(tp), where=seen)
    return {
        "accuracy": float(hit.mean()),
        "accuracy_std": float(np.sqrt((hit * (1 - hit)).sum()) / n),
        "f1_macro": float(f1[seen].mean()),
        "n": n,
    }


def estimate(calibration: Calibration, proba: Any) -> dict[str, float] | None:
    """Estimate accuracy and macro F1 of rows scored with ``proba`` (None for no rows)."""
    raw = np.asarray(proba, dtype=float)
    if not len(raw):
        return None
    return expected_metrics(calibration.apply(raw), raw.argmax(axis=1))


def realized(y_true: Any, y_pred: Any, task: str) -> dict[str, Any] | None:
    """Return performance on the labelled rows (missing labels left out), training's names.

    Returns:
        None without labelled rows; else ``metrics`` (``evaluate.classification_metrics``
        or ``regression_metrics``) and ``n``, and for classification ``per_class``
        (precision, recall, f1, support per label) and ``labels``.
    """
    from sklearn.metrics import precision_recall_fscore_support

    truth, pred = pd.Series(y_true).reset_index(drop=True), pd.Series(y_pred).reset_index(drop=True)
    if len(truth) != len(pred):
        raise ValueError(f"{len(truth)} labels for {len(pred)} predictions; pass one per row")
    keep = (truth.notna() & pred.notna()).to_numpy()
    truth, pred = truth[keep], pred[keep]
    if not len(truth):
        return None
    if evaluate.check_task(task) == "regression":
        return {"metrics": evaluate.regression_metrics(truth, pred), "n": len(truth)}
    truth, pred = truth.astype(str), pred.astype(str)
    labels = sorted(set(truth) | set(pred))
    p, r, f, s = precision_recall_fscore_support(truth, pred, labels=labels, zero_division=0)
    per_class = {
        label: {
            "precision": float(p[i]),
            "recall": float(r[i]),
            "f1": float(f[i]),
            "support": int(s[i]),
        }
        for i, label in enumerate(labels)
    }
    metrics = evaluate.classification_metrics(truth, pred, classes=labels)
    return {"metrics": metrics, "n": len(truth), "per_class": per_class, "labels": labels}
