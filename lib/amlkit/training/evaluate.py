"""Model evaluation: the metric vocabulary, scikit-learn's metrics, and evaluation plots.

Metric names are those of model_config.json, MLflow and the registry. Plots return pyplot
Figures and never call ``show``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn import metrics as skm
from sklearn.calibration import CalibrationDisplay
from sklearn.inspection import permutation_importance

from amlkit import kinds

logger = logging.getLogger(__name__)

# Project metric name -> scikit-learn scoring string; "neg_" marks the lower-is-better metrics.
SCORING = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced_accuracy",
    "precision_macro": "precision_macro",
    "recall_macro": "recall_macro",
    "f1_macro": "f1_macro",
    "precision_weighted": "precision_weighted",
    "recall_weighted": "recall_weighted",
    "f1_weighted": "f1_weighted",
    "roc_auc": "roc_auc",
    "log_loss": "neg_log_loss",
    "mae": "neg_mean_absolute_error",
    "rmse": "neg_root_mean_squared_error",
    "mse": "neg_mean_squared_error",
    "mape": "neg_mean_absolute_percentage_error",
    "r2": "r2",
}


def _check_metric(metric: str) -> None:
    if metric not in SCORING:
        raise ValueError(
            f"unknown metric {metric!r}; expected one of {', '.join(SCORING)}. "
            "Fix primary_metric in config/model_config.json."
        )


def check_task(task: str) -> str:
    """Return ``task`` if it is ``classification`` or ``regression``, else raise ValueError."""
    if task not in kinds.TASKS:
        raise ValueError(f"task must be one of {', '.join(kinds.TASKS)}; got {task!r}.")
    return task


def greater_is_better(metric: str) -> bool:
    """Return True when a larger value of ``metric`` means a better model; ValueError if unknown."""
    _check_metric(metric)
    return not SCORING[metric].startswith("neg_")


def scoring_for(metric: str, *, n_classes: int = 2) -> str:
    """Return the scikit-learn ``scoring`` for ``metric``; ValueError if unknown.

    ``roc_auc`` becomes one-vs-rest macro above two classes.
    """
    _check_metric(metric)
    if metric == "roc_auc" and n_classes > 2:
        return "roc_auc_ovr"
    return SCORING[metric]


def classification_metrics(
    y_true: Any,
    y_pred: Any,
    y_proba: Any | None = None,
    classes: Sequence[Any] | np.ndarray | None = None,
) -> dict[str, float]:
    """Return accuracy, balanced accuracy, precision/recall/F1 (macro and weighted).

    With ``y_proba`` (columns in the order of ``classes``, by default the sorted labels seen;
    a 1-D array is the positive, last, class's probability) also ``roc_auc`` (binary: positive
    class; multiclass: one-vs-rest macro) and ``log_loss``, NaN where undefined for the labels.
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if classes is None:
        classes = np.unique(np.concatenate([y_true, y_pred]))
    labels = np.asarray(classes)
    out = {
        "accuracy": skm.accuracy_score(y_true, y_pred),
        "balanced_accuracy": skm.balanced_accuracy_score(y_true, y_pred),
    }
    for average in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=average, zero_division=0
        )
        out |= {f"precision_{average}": p, f"recall_{average}": r, f"f1_{average}": f}
    if y_proba is not None:
        proba = np.asarray(y_proba, dtype=float)
        if proba.ndim == 1:
            proba = np.column_stack([1.0 - proba, proba])
        if proba.shape[1] != len(labels):
            raise ValueError(
                f"y_proba has {proba.shape[1]} columns but there are {len(labels)} classes "
                f"{list(labels)}; pass classes in the order of the probability columns."
            )
        seen = np.unique(y_true).tolist()
        if len(seen) < 2 or not set(seen) <= set(labels.tolist()):
            logger.warning(
                "roc_auc and log_loss are undefined: true labels %s against classes %s",
                seen,
                labels.tolist(),
            )
            out |= {"roc_auc": float("nan"), "log_loss": float("nan")}
        else:
            if len(labels) == 2:
                out["roc_auc"] = skm.roc_auc_score(y_true == labels[1], proba[:, 1])
            else:
                out["roc_auc"] = skm.roc_auc_score(
                    y_true, proba, multi_class="ovr", average="macro", labels=labels
                )
            out["log_loss"] = skm.log_loss(y_true, proba, labels=labels)
    return {k: float(v) for k, v in out.items()}


def regression_metrics(y_true: Any, y_pred: Any) -> dict[str, float]:
    """Return ``mae``, ``rmse``, ``r2``, and ``mape`` (a fraction) when no true value is zero."""
    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    out = {
        "mae": skm.mean_absolute_error(y_true, y_pred),
        "rmse": skm.root_mean_squared_error(y_true, y_pred),
        "r2": skm.r2_score(y_true, y_pred),
    }
    if not np.any(y_true == 0):
        out["mape"] = skm.mean_absolute_percentage_error(y_true, y_pred)
    return {k: float(v) for k, v in out.items()}


def evaluate_model(model: Any, X: pd.DataFrame, y: Any, task: str) -> dict[str, float]:
    """Score a fitted model: :func:`classification_metrics` or :func:`regression_metrics`."""
    check_task(task)
    y_pred = model.predict(X)
    if task == "regression":
        return regression_metrics(y, y_pred)
    y_proba = model.predict_proba(X) if hasattr(model, "predict_proba") else None
    return classification_metrics(y, y_pred, y_proba, getattr(model, "classes_", None))


# --- plots -----------------------------------------------------------------------------------


def plot_confusion_matrix(y_true: Any, y_pred: Any, classes: Sequence[Any]) -> Figure:
    """Plot the confusion matrix (rows: true, columns: predicted; ``classes`` in that order)."""
    fig, ax = plt.subplots(figsize=(4.5, 4))
    skm.ConfusionMatrixDisplay.from_predictions(
        y_true, y_pred, labels=list(classes), ax=ax, colorbar=False, cmap="Blues"
    )
    ax.grid(False)
    ax.set_title("Confusion matrix")
    fig.tight_layout()
    return fig


def _curve_figure(
    y_true: Any, y_proba: Any, classes: Sequence[Any], display: Any, title: str, **options: Any
) -> Figure:
    """Draw one curve per class (one-vs-rest), or the positive (last) class's for binary."""
    y_true = np.asarray(y_true)
    proba = np.asarray(y_proba, dtype=float)
    labels = list(classes)
    fig, ax = plt.subplots(figsize=(5, 4))
    for column, label in [(1, labels[1])] if len(labels) == 2 else enumerate(labels):
        display.from_predictions(
            y_true == label, proba[:, column], pos_label=True, name=str(label), ax=ax, **options
        )
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_roc_curves(y_true: Any, y_proba: Any, classes: Sequence[Any]) -> Figure:
    """Plot ROC curves: the positive class for binary, one-vs-rest per class otherwise."""
    return _curve_figure(y_true, y_proba, classes, skm.RocCurveDisplay, "ROC curves")


def plot_precision_recall_curves(y_true: Any, y_proba: Any, classes: Sequence[Any]) -> Figure:
    """Plot precision-recall curves: the positive class for binary, one-vs-rest otherwise."""
    return _curve_figure(
        y_true, y_proba, classes, skm.PrecisionRecallDisplay, "Precision-recall curves"
    )


def plot_calibration(
    y_true: Any, y_proba: Any, classes: Sequence[Any], *, n_bins: int = 10
) -> Figure:
    """Plot reliability curves in ``n_bins`` equal-width bins (binary: the positive class)."""
    title = "Calibration (reliability) curves"
    return _curve_figure(y_true, y_proba, classes, CalibrationDisplay, title, n_bins=n_bins)


def plot_residuals(y_true: Any, y_pred: Any, *, bins: int = 30) -> Figure:
    """Plot regression residuals: against the prediction, and their histogram."""
    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    residuals = y_true - y_pred
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.8))
    left.scatter(y_pred, residuals, s=12, alpha=0.6)
    left.axhline(0.0, color="black", linewidth=1)
    left.set(xlabel="predicted", ylabel="residual (true - predicted)", title="Residuals")
    right.hist(residuals, bins=bins, color="tab:blue", alpha=0.8)
    right.axvline(0.0, color="black", linewidth=1)
    right.set(xlabel="residual", ylabel="count", title="Residual distribution")
    fig.tight_layout()
    return fig


def permutation_importance_frame(
    model: Any,
    X: pd.DataFrame,
    y: Any,
    *,
    metric: str | None = None,
    n_repeats: int = 5,
    random_state: int = 0,
) -> pd.DataFrame:
    """Permutation importance (drop in ``metric``, default the model's ``score``) of each column.

    Columns ``feature``, ``importance_mean``, ``importance_std``; most important first.
    """
    scoring = None
    if metric is not None:
        n_classes = len(getattr(model, "classes_", [])) or 2
        scoring = scoring_for(metric, n_classes=n_classes)
    result = permutation_importance(
        model, X, y, scoring=scoring, n_repeats=n_repeats, random_state=random_state
    )
    frame = pd.DataFrame(
        {
            "feature": [str(c) for c in X.columns],
            "importance_mean": result.importances_mean,
            "importance_std": result.importances_std,
        }
    )
    return frame.sort_values(
        ["importance_mean", "feature"], ascending=[False, True], kind="mergesort"
    ).reset_index(drop=True)


def plot_permutation_importance(importance: pd.DataFrame, *, top: int = 20) -> Figure:
    """Bar plot of :func:`permutation_importance_frame`, most important at the top."""
    shown = importance.head(top).iloc[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(shown) + 1.2))
    ax.barh(shown["feature"], shown["importance_mean"], xerr=shown["importance_std"])
    ax.axvline(0.0, color="black", linewidth=1)
    ax.set(xlabel="drop in score when the column is shuffled", title="Permutation importance")
    fig.tight_layout()
    return fig


def evaluation_figures(model: Any, X: pd.DataFrame, y: Any, task: str) -> dict[str, Figure]:
    """Draw a fitted model's evaluation plots as ``{file stem: Figure}``.

    Regression: residuals; classification: confusion matrix, and ROC, precision-recall and
    calibration curves when the model gives probabilities.
    """
    check_task(task)
    y_pred = model.predict(X)
    if task == "regression":
        return {"residuals": plot_residuals(y, y_pred)}
    labels = list(model.classes_)
    figures = {"confusion_matrix": plot_confusion_matrix(y, y_pred, labels)}
    if hasattr(model, "predict_proba"):
        proba = model.predict_proba(X)
        figures["roc_curves"] = plot_roc_curves(y, proba, labels)
        figures["precision_recall_curves"] = plot_precision_recall_curves(y, proba, labels)
        figures["calibration"] = plot_calibration(y, proba, labels)
    return figures
