import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from sklearn import metrics as skm
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline

from amlkit.training import evaluate


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _probabilities(n: int, k: int, seed: int = 0) -> np.ndarray:
    raw = np.random.default_rng(seed).random((n, k)) + 0.05
    return raw / raw.sum(axis=1, keepdims=True)


@pytest.fixture
def binary():
    y_true = np.array(["no", "yes", "yes", "no", "yes", "no", "no", "yes"])
    proba = _probabilities(8, 2)
    classes = ["no", "yes"]
    y_pred = np.asarray(classes)[proba.argmax(axis=1)]
    return y_true, y_pred, proba, classes


@pytest.fixture
def multiclass():
    y_true = np.array([0, 1, 2, 2, 1, 0, 0, 1, 2, 2, 1, 0])
    proba = _probabilities(12, 3, seed=1)
    return y_true, proba.argmax(axis=1), proba, [0, 1, 2]


def test_binary_metrics_equal_sklearn_with_last_class_positive(binary):
    y_true, y_pred, proba, classes = binary
    got = evaluate.classification_metrics(y_true, y_pred, proba, classes)
    assert got["accuracy"] == skm.accuracy_score(y_true, y_pred)
    assert got["balanced_accuracy"] == skm.balanced_accuracy_score(y_true, y_pred)
    assert got["f1_macro"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro"))
    assert got["precision_weighted"] == pytest.approx(
        skm.precision_score(y_true, y_pred, average="weighted", zero_division=0)
    )
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y_true == "yes", proba[:, 1]))
    assert got["log_loss"] == pytest.approx(skm.log_loss(y_true, proba, labels=classes))
    assert set(got) == {
        *("accuracy", "balanced_accuracy", "roc_auc", "log_loss"),
        *(f"{m}_{a}" for m in ("precision", "recall", "f1") for a in ("macro", "weighted")),
    }
    assert all(type(v) is float for v in got.values())


def test_binary_metrics_accept_positive_class_probability_only(binary):
    y_true, y_pred, proba, classes = binary
    full = evaluate.classification_metrics(y_true, y_pred, proba, classes)
    one_d = evaluate.classification_metrics(y_true, y_pred, proba[:, 1], classes)
    assert one_d == pytest.approx(full)


def test_multiclass_metrics_equal_sklearn_ovr_macro(multiclass):
    y_true, y_pred, proba, classes = multiclass
    got = evaluate.classification_metrics(y_true, y_pred, proba, classes)
    assert got["roc_auc"] == pytest.approx(
        skm.roc_auc_score(y_true, proba, multi_class="ovr", average="macro")
    )
    assert got["recall_macro"] == pytest.approx(skm.recall_score(y_true, y_pred, average="macro"))
    assert got["f1_weighted"] == pytest.approx(skm.f1_score(y_true, y_pred, average="weighted"))
    assert got["log_loss"] == pytest.approx(skm.log_loss(y_true, proba))


def test_metrics_without_probabilities_leave_out_roc_auc_and_log_loss(multiclass):
    y_true, y_pred, _, classes = multiclass
    got = evaluate.classification_metrics(y_true, y_pred, classes=classes)
    assert "roc_auc" not in got
    assert "log_loss" not in got


@pytest.mark.filterwarnings("ignore:A single label was found")
def test_roc_auc_is_nan_when_only_one_class_is_present():
    got = evaluate.classification_metrics(
        ["a", "a"], ["a", "a"], [[0.6, 0.4], [0.7, 0.3]], classes=["a", "b"]
    )
    assert np.isnan(got["roc_auc"])
    assert np.isnan(got["log_loss"])
    assert got["accuracy"] == 1.0


def test_probability_columns_must_match_classes(multiclass):
    y_true, y_pred, proba, _ = multiclass
    with pytest.raises(ValueError, match="y_proba has 3 columns but there are 2 classes"):
        evaluate.classification_metrics(y_true, y_pred, proba, [0, 1])


def test_regression_metrics_equal_sklearn():
    y_true = np.array([3.0, 5.0, 2.5, 7.0])
    y_pred = np.array([2.5, 5.0, 3.0, 8.0])
    got = evaluate.regression_metrics(y_true, y_pred)
    assert got == pytest.approx(
        {
            "mae": skm.mean_absolute_error(y_true, y_pred),
            "rmse": skm.root_mean_squared_error(y_true, y_pred),
            "r2": skm.r2_score(y_true, y_pred),
            "mape": skm.mean_absolute_percentage_error(y_true, y_pred),
        }
    )


def test_regression_metrics_leave_out_mape_when_a_true_value_is_zero():
    got = evaluate.regression_metrics([0.0, 1.0, 2.0], [0.1, 1.0, 2.0])
    assert set(got) == {"mae", "rmse", "r2"}


@pytest.mark.parametrize(
    ("metric", "expected"),
    [("f1_macro", True), ("roc_auc", True), ("r2", True), ("rmse", False), ("log_loss", False)],
)
def test_greater_is_better(metric, expected):
    assert evaluate.greater_is_better(metric) is expected


def test_unknown_metric_is_rejected_with_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown metric 'f2'.*f1_macro"):
        evaluate.greater_is_better("f2")


@pytest.mark.parametrize(
    ("metric", "n_classes", "scoring"),
    [
        ("f1_macro", 3, "f1_macro"),
        ("roc_auc", 2, "roc_auc"),
        ("roc_auc", 3, "roc_auc_ovr"),
        ("rmse", 2, "neg_root_mean_squared_error"),
        ("log_loss", 2, "neg_log_loss"),
    ],
)
def test_scoring_for_maps_metrics_to_sklearn_scorers(metric, n_classes, scoring):
    assert evaluate.scoring_for(metric, n_classes=n_classes) == scoring


@pytest.fixture
def fitted_classifier(feature_preprocessor):
    frame = pd.DataFrame(
        {
            "signal": np.linspace(-2, 2, 40),
            "noise": np.random.default_rng(0).normal(size=40),
            "kind": ["a", "b"] * 20,
        }
    )
    y = np.where(frame["signal"] > 0, "pos", "neg")
    types = {"signal": "numeric", "noise": "numeric", "kind": "categorical"}
    model = Pipeline([("preprocess", feature_preprocessor(types)), ("model", LogisticRegression())])
    return model.fit(frame, y), frame, y


def test_evaluate_model_scores_the_predictions_of_a_pipeline(fitted_classifier):
    model, X, y = fitted_classifier
    got = evaluate.evaluate_model(model, X, y, "classification")
    expected = evaluate.classification_metrics(
        y, model.predict(X), model.predict_proba(X), model.classes_
    )
    assert got == expected
    assert got["accuracy"] > 0.9


def test_evaluate_model_for_regression_and_bad_task():
    X = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0]})
    y = 2 * X["a"] + 1
    model = LinearRegression().fit(X, y)
    assert evaluate.evaluate_model(model, X, y, "regression")["rmse"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="task must be one of"):
        evaluate.evaluate_model(model, X, y, "ranking")


def test_permutation_importance_ranks_the_informative_column_first(fitted_classifier):
    model, X, y = fitted_classifier
    first = evaluate.permutation_importance_frame(model, X, y, metric="f1_macro", n_repeats=3)
    again = evaluate.permutation_importance_frame(model, X, y, metric="f1_macro", n_repeats=3)
    pd.testing.assert_frame_equal(first, again)
    assert list(first.columns) == ["feature", "importance_mean", "importance_std"]
    assert first["feature"].iloc[0] == "signal"
    assert first["importance_mean"].iloc[0] > 0.3
    assert set(first["feature"]) == {"signal", "noise", "kind"}


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def test_classification_plots_draw_one_curve_per_class(multiclass):
    y_true, _, proba, classes = multiclass
    roc = evaluate.plot_roc_curves(y_true, proba, classes)
    pr = evaluate.plot_precision_recall_curves(y_true, proba, classes)
    cal = evaluate.plot_calibration(y_true, proba, classes, n_bins=4)
    for fig in (roc, pr):
        assert isinstance(fig, Figure)
        assert [t.get_text().split(" ")[0] for t in fig.axes[0].get_legend().get_texts()][:3] == [
            "0",
            "1",
            "2",
        ]
    labels = [line.get_label() for line in cal.axes[0].get_lines()]
    assert {"0", "1", "2"} <= set(labels)


def test_binary_plots_draw_the_positive_class_only(binary):
    y_true, _, proba, classes = binary
    fig = evaluate.plot_roc_curves(y_true, proba, classes)
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert texts[0].startswith("yes")
    assert not any(t.startswith("no") for t in texts)


def test_confusion_matrix_plot_shows_the_counts(binary):
    y_true, y_pred, _, classes = binary
    fig = evaluate.plot_confusion_matrix(y_true, y_pred, classes)
    shown = sorted(int(t.get_text()) for t in fig.axes[0].texts)
    expected = sorted(skm.confusion_matrix(y_true, y_pred, labels=classes).ravel())
    assert shown == expected


def test_plots_are_deterministic(binary):
    y_true, _, proba, classes = binary
    first = _png(evaluate.plot_calibration(y_true, proba, classes))
    second = _png(evaluate.plot_calibration(y_true, proba, classes))
    assert first == second


def test_residual_plot_has_scatter_and_histogram():
    y_true = np.array([1.0, 2.0, 3.0, 4.0])
    y_pred = np.array([1.5, 2.0, 2.0, 4.5])
    fig = evaluate.plot_residuals(y_true, y_pred, bins=3)
    scatter, hist = fig.axes
    np.testing.assert_allclose(scatter.collections[0].get_offsets()[:, 1], y_true - y_pred)
    assert sum(p.get_height() for p in hist.patches) == 4


def test_importance_plot_puts_the_most_important_column_on_top():
    importance = pd.DataFrame(
        {"feature": ["a", "b"], "importance_mean": [0.3, 0.1], "importance_std": [0.01, 0.02]}
    )
    fig = evaluate.plot_permutation_importance(importance)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["b", "a"]


def test_evaluation_figures_for_classification_and_regression(fitted_classifier):
    model, X, y = fitted_classifier
    figures = evaluate.evaluation_figures(model, X, y, "classification")
    assert list(figures) == [
        "confusion_matrix",
        "roc_curves",
        "precision_recall_curves",
        "calibration",
    ]
    assert all(isinstance(f, Figure) for f in figures.values())
    reg_X = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0]})
    reg = LinearRegression().fit(reg_X, [1.0, 2.1, 2.9, 4.2])
    assert list(evaluate.evaluation_figures(reg, reg_X, [1.0, 2.1, 2.9, 4.2], "regression")) == [
        "residuals"
    ]
