"""Model performance in production: realized on labelled rows, estimated before labels arrive.

Realized performance uses training's metric names (``f1_macro``, ``precision_weighted``,
``rmse`` ... from :mod:`amlkit.training.evaluate`), so it sits beside the training test
score.

The estimate of accuracy, chosen on ``benchmarks/performance_estimation_benchmark.py``
(NannyML 0.13's CBPE measured beside it on the same windows), has two parts:

1. Difference of confidences: the window's mean top probability plus the gap between
   accuracy and mean top probability on the labelled reference rows (Guillory et al., 2021).
   One number learnt from the reference, so it holds up on the small reference sets that
   per-class calibration curves overfit (CBPE: one isotonic curve per class).
2. Given the reference rows' features and the model (``calibrate(..., features=,
   feature_types=, predict_proba=)``) and the window's features (``estimate(...,
   features=)``): a correction for shifted inputs and class priors learnt on perturbed
   reference rows (:mod:`amlkit.monitoring.shift_sensitivity`), which catches the accuracy
   that a confident model loses when its inputs move. Undrifted windows get next to none.

Measured and set aside on the same benchmark: per-class isotonic CBPE (overfits reference
sets of 70-300 rows and misses shifted inputs), average thresholded confidence (Garg et
al., 2022; far too pessimistic for an under-confident forest under shift), top-label Platt
scaling, and a per-row correctness model over confidence and distance to the reference.
Importance weighting by a domain classifier cannot help where shifted inputs keep their old
labels: it up-weights reference rows that look like the shifted ones, whose labels fit.

Expected macro F1 comes from per-class isotonic calibration (CBPE's expected confusion
matrix), without the shift correction. All assume the relation between inputs and label
holds as in the reference rows, apart from the shifts the correction learnt.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression

from amlkit.monitoring import shift_sensitivity
from amlkit.training import evaluate

METHOD = "difference of confidences + learnt shift correction"
Z95 = 1.959964
OUTSIDE_LIMIT = 0.10  # more rows than this outside the reference: the estimate is unreliable
MIN_REFERENCE_ROWS = 30
CORRECTION_LIMIT = 0.10  # a larger shift correction: the estimate rests on extrapolation


@dataclass(frozen=True)
class Calibration:
    """What the estimate learnt from the labelled reference rows.

    ``curves`` (per-class isotonic) give expected F1; ``reference_accuracy`` and
    ``reference_confidence`` (mean top probability) give the difference of confidences;
    ``space`` (given reference features) tells rows outside the reference;
    ``sensitivity`` (given features and the model) corrects for shifted inputs.
    """

    classes: np.ndarray
    curves: list[IsotonicRegression]
    reference_accuracy: float = float("nan")
    reference_confidence: float = float("nan")
    reference_min_confidence: float = 0.0
    n_reference: int = 0
    space: shift_sensitivity.ReferenceSpace | None = None
    sensitivity: shift_sensitivity.Sensitivity | None = None

    def apply(self, proba: Any) -> np.ndarray:
        """Return calibrated probabilities (columns in the order of ``classes``; rows sum to 1)."""
        raw = np.asarray(proba, dtype=float)
        out = np.column_stack([c.predict(raw[:, k]) for k, c in enumerate(self.curves)])
        total = out.sum(axis=1, keepdims=True)
        return np.where(total > 0, out / np.where(total > 0, total, 1), 1 / len(self.classes))

    @property
    def gap(self) -> float:
        """Reference accuracy minus reference mean top probability."""
        return self.reference_accuracy - self.reference_confidence

    @property
    def gap_std(self) -> float:
        """Standard error of ``gap`` (binomial, with half a pseudo-count at 0% or 100%)."""
        n = max(self.n_reference, 1)
        hit = (self.reference_accuracy * n + 0.5) / (n + 1)
        return float(np.sqrt(hit * (1 - hit) / n))


def calibrate(
    proba: Any,
    y_true: Any,
    classes: Sequence[Any],
    *,
    features: pd.DataFrame | None = None,
    feature_types: Mapping[str, str] | None = None,
    predict_proba: Callable[[pd.DataFrame], Any] | None = None,
    synthetic_windows: int = 600,
    seed: int = 0,
) -> Calibration:
    """Fit the estimate on labelled reference rows (the test split the model never saw).

    Args:
        proba: the model's probabilities for the reference rows, columns in ``classes`` order.
        y_true: their labels.
        classes: the model's classes (``model.classes_``).
        features: the reference rows' features; with ``feature_types``, the estimate can
            tell window rows outside what the reference holds (``outside_share``).
        feature_types: column kinds of the features (``manifest.feature_types``).
        predict_proba: the model's ``predict_proba``; with features, the shift correction
            is learnt from ``synthetic_windows`` perturbed bootstraps of the reference rows
            (seconds: each is scored by the model).
        synthetic_windows: how many (the benchmark uses the default).
        seed: seeds the synthetic windows.

    Raises:
        ValueError: ``proba`` and ``classes`` disagree, fewer than two rows, features without
            their kinds or of another length than the labels.
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
    text = labels.astype(str)
    label_index = np.array(
        [int(np.argmax(text == v)) if v in text else -1 for v in truth.astype(str)]
    )
    confidence = raw.max(axis=1)
    found = Calibration(
        labels,
        curves,
        reference_accuracy=float(np.mean(raw.argmax(axis=1) == label_index)),
        reference_confidence=float(confidence.mean()),
        reference_min_confidence=float(confidence.min()),
        n_reference=len(raw),
    )
    if features is None:
        return found
    if feature_types is None or len(features) != len(raw):
        raise ValueError(
            f"{len(features)} feature rows for {len(raw)} labels, feature kinds "
            f"{'missing' if feature_types is None else 'given'}; pass the reference rows' "
            "features with feature_types (manifest.feature_types)"
        )
    space = shift_sensitivity.ReferenceSpace.fit(features, feature_types)
    sensitivity = None
    if predict_proba is not None:
        columns = list(features.columns)

        def scored(rows: pd.DataFrame) -> np.ndarray:
            return np.asarray(predict_proba(rows[columns]), dtype=float)

        sensitivity = shift_sensitivity.fit_sensitivity(
            space,
            features,
            label_index,
            scored,
            lambda p: float(p.max(axis=1).mean()) + found.gap,
            windows=synthetic_windows,
            seed=seed,
        )
    return Calibration(**{**found.__dict__, "space": space, "sensitivity": sensitivity})


def expected_metrics(calibrated: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Return CBPE's expected ``accuracy`` (with its sampling ``accuracy_std``) and ``f1_macro``.

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


def estimate(
    calibration: Calibration, proba: Any, *, features: pd.DataFrame | None = None
) -> dict[str, Any] | None:
    """Estimate accuracy and macro F1 of rows scored with ``proba`` (None for no rows).

    Args:
        calibration: from :func:`calibrate`.
        proba: the window's probabilities (columns in ``calibration.classes`` order).
        features: the window's features, row for row; used when the calibration holds the
            reference features (rows outside them, and the shift correction).

    Returns:
        ``accuracy``: the estimate; ``accuracy_std``: its standard error (window sampling,
        the reference gap's error and, when the shift correction acts, its error on the
        synthetic windows, added in quadrature); ``accuracy_low``/``accuracy_high``: the
        95% interval (``accuracy ± 1.96 accuracy_std`` clipped to [0, 1]); ``f1_macro``
        (CBPE's expected macro F1); ``n``; ``method``; ``shift_correction`` (what the
        correction added, 0 without it); ``outside_share``: the share of rows outside
        what the reference rows held (a value beyond their range, an unseen label, a
        missing value where they had none; without features, a top probability below
        the lowest the reference rows had); ``outside_columns`` (share per column);
        ``reliable`` and ``unreliable_reason`` (empty when reliable). The estimate is
        unreliable when more than 10% of the rows are outside, when the shift
        correction exceeds 0.10 (the estimate then rests on what perturbed reference
        rows taught, an extrapolation), or when fewer than 30 reference rows calibrated it.
    """
    raw = np.asarray(proba, dtype=float)
    if not len(raw):
        return None
    if features is not None and len(features) != len(raw):
        raise ValueError(
            f"{len(features)} feature rows for {len(raw)} probabilities; pass one each"
        )
    found: dict[str, Any] = expected_metrics(calibration.apply(raw), raw.argmax(axis=1))
    confidence = raw.max(axis=1)
    n = len(raw)
    if not np.isfinite(calibration.reference_accuracy):  # a Calibration built by hand
        return found
    hit = np.clip(confidence + calibration.gap, 0.0, 1.0)
    accuracy = float(hit.mean())
    variance = float((hit * (1 - hit)).sum()) / n**2 + calibration.gap_std**2
    correction = 0.0
    use_features = features is not None and calibration.space is not None
    if use_features and calibration.sensitivity is not None:
        assert features is not None
        correction = calibration.sensitivity.correction(features, confidence)
        if correction:
            variance += calibration.sensitivity.residual_std**2
    accuracy = float(np.clip(accuracy + correction, 0.0, 1.0))
    std = float(np.sqrt(variance))
    outside = confidence < calibration.reference_min_confidence
    columns: dict[str, float] = {}
    if use_features:
        assert features is not None and calibration.space is not None
        beyond, columns = calibration.space.outside(features)
        outside = outside | beyond
    share = float(outside.mean())
    reasons = []
    if share > OUTSIDE_LIMIT:
        named = ", ".join(f"{c} {v:.0%}" for c, v in sorted(columns.items(), key=lambda kv: -kv[1]))
        where = f" ({named})" if named else " (top probability below the reference's)"
        reasons.append(
            f"{share:.0%} of rows lie outside what the {calibration.n_reference} reference "
            f"rows held{where}"
        )
    if abs(correction) > CORRECTION_LIMIT:
        reasons.append(
            f"the inputs shifted enough to move the estimate by {correction:+.2f}; that "
            "correction is learnt on perturbed reference rows, not observed"
        )
    if calibration.n_reference < MIN_REFERENCE_ROWS:
        reasons.append(f"only {calibration.n_reference} reference rows calibrated it")
    return found | {
        "accuracy": accuracy,
        "accuracy_std": std,
        "accuracy_low": max(0.0, accuracy - Z95 * std),
        "accuracy_high": min(1.0, accuracy + Z95 * std),
        "method": METHOD
        if calibration.sensitivity is not None and use_features
        else "difference of confidences",
        "shift_correction": correction,
        "outside_share": share,
        "outside_columns": columns,
        "reliable": not reasons,
        "unreliable_reason": "; ".join(reasons),
    }


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
