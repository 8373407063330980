"""Model evaluation: metrics, the metric vocabulary, and evaluation plots.

Metric names are the project's vocabulary (``f1_macro``, ``rmse`` ...), used in
``config/model_config.json``, MLflow and ``performance_metrics.json``. Every value is computed
with scikit-learn's own functions. Plot functions return a matplotlib ``Figure`` created through
pyplot (so ``plt.show()`` displays it in a notebook) and never call ``show`` themselves; close
figures you do not display with ``plt.close(fig)``.
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

LOWER_IS_BETTER = frozenset({"mae", "rmse", "mse", "mape", "log_loss", "brier"})
# Project metric name -> scikit-learn scoring string (the scorer is always greater-is-better).
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
    """Return True when a larger value of ``metric`` means a better model.

    Args:
        metric: a project metric name such as ``f1_macro`` or ``rmse``.

    Raises:
        ValueError: the metric is unknown.
    """
    _check_metric(metric)
    return metric not in LOWER_IS_BETTER


def scoring_for(metric: str, *, n_classes: int = 2) -> str:
    """Return the scikit-learn ``scoring`` string that optimises ``metric``.

    Args:
        metric: a project metric name.
        n_classes: number of classes; ``roc_auc`` becomes one-vs-rest macro above two.

    Raises:
        ValueError: the metric is unknown.
    """
    _check_metric(metric)
    if metric == "roc_auc" and n_classes > 2:
        return "roc_auc_ovr"
    return SCORING[metric]


def classification_metrics(
    y_true: Any,
    y_pred: Any,
    y_proba: Any | None = None,
    classes: Sequence[Any] | None = None,
) -> dict[str, float]:
    """Compute the classification metrics.

    Args:
        y_true: true labels.
        y_pred: predicted labels.
        y_proba: class probabilities, columns in the order of ``classes`` (a 1-D array is
            taken as the positive class's probability for two classes). Without it,
            ``roc_auc`` and ``log_loss`` are left out.
        classes: the labels in the order of the probability columns (``model.classes_``);
            defaults to the sorted labels seen in ``y_true`` and ``y_pred``. For two classes
            the positive class is the last one.

    Returns:
        ``{metric: value}`` with accuracy, balanced_accuracy, precision/recall/f1 macro and
        weighted, and, with probabilities, roc_auc (binary: positive class; multiclass:
        one-vs-rest macro) and log_loss. A metric that is undefined for these labels (for
        example roc_auc with one class present) is NaN.
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
        unseen = sorted(set(np.unique(y_true).tolist()) - set(labels.tolist()), key=str)
        if unseen or len(np.unique(y_true)) < 2:
            logger.warning(
                "roc_auc and log_loss are undefined: true labels %s against classes %s",
                np.unique(y_true).tolist(),
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
    """Compute the regression metrics.

    Args:
        y_true: true values.
        y_pred: predicted values.

    Returns:
        ``{"mae", "rmse", "r2"}`` and ``"mape"`` (a fraction, not a percentage) when no true
        value is zero.
    """
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


def evaluate_model(
    model: Any, X: pd.DataFrame, y: Any, task: str, classes: Sequence[Any] | None = None
) -> dict[str, float]:
    """Score a fitted model on ``X``, ``y``.

    Args:
        model: a fitted estimator or pipeline.
        X: the raw feature columns.
        y: the true target.
        task: ``classification`` or ``regression``.
        classes: the order of ``predict_proba`` columns; defaults to ``model.classes_``.

    Returns:
        :func:`classification_metrics` or :func:`regression_metrics` of the predictions.
    """
    check_task(task)
    y_pred = model.predict(X)
    if task == "regression":
        return regression_metrics(y, y_pred)
    y_proba = model.predict_proba(X) if hasattr(model, "predict_proba") else None
    labels = classes if classes is not None else getattr(model, "classes_", None)
    return classification_metrics(y, y_pred, y_proba, labels)


# --- plots -----------------------------------------------------------------------------------


def plot_confusion_matrix(
    y_true: Any, y_pred: Any, classes: Sequence[Any], *, normalize: str | None = None
) -> Figure:
    """Plot the confusion matrix (rows: true label, columns: predicted label).

    Args:
        y_true: true labels.
        y_pred: predicted labels.
        classes: the labels, in display order.
        normalize: ``None`` for counts, or ``"true"``, ``"pred"``, ``"all"``.
    """
    fig, ax = plt.subplots(figsize=(4.5, 4))
    skm.ConfusionMatrixDisplay.from_predictions(
        y_true,
        y_pred,
        labels=list(classes),
        normalize=normalize,
        ax=ax,
        colorbar=False,
        cmap="Blues",
    )
    ax.grid(False)
    ax.set_title("Confusion matrix" + (f" (normalised by {normalize})" if normalize else ""))
    fig.tight_layout()
    return fig


def _one_vs_rest(classes: Sequence[Any]) -> list[tuple[int, Any]]:
    """Return the (column, label) pairs to draw: the positive class only for binary."""
    labels = list(classes)
    return [(1, labels[1])] if len(labels) == 2 else list(enumerate(labels))


def _curve_figure(
    y_true: Any, y_proba: Any, classes: Sequence[Any], display: Any, title: str, **options: Any
) -> Figure:
    y_true = np.asarray(y_true)
    proba = np.asarray(y_proba, dtype=float)
    fig, ax = plt.subplots(figsize=(5, 4))
    for column, label in _one_vs_rest(classes):
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
    """Plot reliability curves (predicted probability against observed frequency).

    Args:
        y_true: true labels.
        y_proba: class probabilities, columns in the order of ``classes``.
        classes: the labels; for binary only the positive (last) class is drawn.
        n_bins: number of equal-width probability bins.
    """
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
    n_jobs: int = 1,
) -> pd.DataFrame:
    """Permutation importance of each raw input column of a fitted pipeline.

    Args:
        model: a fitted pipeline that takes the raw columns of ``X``.
        X: the raw feature columns (for example the validation split).
        y: the true target.
        metric: a project metric name; defaults to the model's own ``score``.
        n_repeats: shuffles per column.
        random_state: seed of the shuffles.
        n_jobs: parallel jobs.

    Returns:
        A DataFrame with columns ``feature``, ``importance_mean``, ``importance_std``, sorted by
        decreasing importance (ties by name). Importance is the drop in the score.
    """
    scoring = None
    if metric is not None:
        n_classes = len(getattr(model, "classes_", [])) or 2
        scoring = scoring_for(metric, n_classes=n_classes)
    result = permutation_importance(
        model,
        X,
        y,
        scoring=scoring,
        n_repeats=n_repeats,
        random_state=random_state,
        n_jobs=n_jobs,
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


def evaluation_figures(
    model: Any, X: pd.DataFrame, y: Any, task: str, classes: Sequence[Any] | None = None
) -> dict[str, Figure]:
    """Draw the standard evaluation plots of a fitted model (for a report or MLflow).

    Args:
        model: a fitted estimator or pipeline.
        X: the raw feature columns.
        y: the true target.
        task: ``classification`` or ``regression``.
        classes: the order of ``predict_proba`` columns; defaults to ``model.classes_``.

    Returns:
        ``{file stem: Figure}``: ``residuals`` for regression; ``confusion_matrix`` and, when
        the model gives probabilities, ``roc_curves``, ``precision_recall_curves`` and
        ``calibration`` for classification.
    """
    check_task(task)
    y_pred = model.predict(X)
    if task == "regression":
        return {"residuals": plot_residuals(y, y_pred)}
    labels = list(classes if classes is not None else model.classes_)
    figures = {"confusion_matrix": plot_confusion_matrix(y, y_pred, labels)}
    if hasattr(model, "predict_proba"):
        proba = model.predict_proba(X)
        figures["roc_curves"] = plot_roc_curves(y, proba, labels)
        figures["precision_recall_curves"] = plot_precision_recall_curves(y, proba, labels)
        figures["calibration"] = plot_calibration(y, proba, labels)
    return figures
