"""Deep learning on images with Keras: determinism, the CNN, training and evaluation.

Typical use (the notebook ``05_deep_learning`` does this)::

    from amlkit.deep import network
    from amlkit.deep import images
    network.set_determinism(42)            # first, before any TensorFlow op runs
    splits = images.prepare_images() # digits by default, or a path to an .npz
    model, history = network.train_cnn(splits, network.cnn_params(model_config["deep_learning"]))
    network.evaluate_cnn(model, splits)    # {split: {metric: value}}

Saving as an MLflow model and serving live in :mod:`amlkit.deep.pyfunc`.

Determinism: with :func:`set_determinism` called once at the start of the process, the same
seed, data and thread counts give bit-identical weights and predictions, in one process or in
separate ones, on the same machine type. A GPU is used when TensorFlow sees one (see
:func:`compute_device`); its results differ from the CPU's, and op determinism is meant to
make them repeatable there too (checked on CPU only: no GPU was available when written).
"""

from __future__ import annotations

from amlkit.deep import quiet  # noqa: F401  (imports TensorFlow before Keras, quietly)

# isort: split
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import tensorflow as tf
from matplotlib.figure import Figure
from sklearn import metrics as skm

from amlkit.deep.images import SPLITS, ImageSplits
from amlkit.training import evaluate

logger = logging.getLogger(__name__)

DEFAULT_PARAMS: dict[str, Any] = {
    "conv_filters": [16, 32],
    "kernel_size": 3,
    "dense_units": 64,
    "dropout": 0.25,
    "learning_rate": 0.002,
    "epochs": 40,
    "batch_size": 32,
    "patience": 6,
}
BUILD_KEYS = ("conv_filters", "kernel_size", "dense_units", "dropout", "learning_rate")
FIT_KEYS = ("epochs", "batch_size", "patience")
PREDICT_CHUNK = 1024


def set_determinism(
    seed: int = 42, *, intra_op_threads: int = 1, inter_op_threads: int = 1
) -> None:
    """Make TensorFlow training repeatable: seeds, op determinism and fixed thread counts.

    Call it once, at the start of the process, before any TensorFlow op runs (thread counts
    cannot change once TensorFlow's runtime has started; a later call keeps the first counts
    and logs a warning when they differ). Calling it again resets the seeds.

    It sets ``PYTHONHASHSEED`` (which only affects Python processes started afterwards),
    seeds Python, NumPy and TensorFlow (:func:`keras.utils.set_random_seed`), turns on
    :func:`tf.config.experimental.enable_op_determinism` and fixes the intra- and inter-op
    thread pools. Results are identical across runs with the same thread counts on the same
    kind of machine.

    Args:
        seed: the seed for every random generator.
        intra_op_threads: threads inside one op (0 lets TensorFlow choose).
        inter_op_threads: ops run at the same time (0 lets TensorFlow choose).
    """
    os.environ["PYTHONHASHSEED"] = str(seed)
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    threading = tf.config.threading
    wanted = (intra_op_threads, inter_op_threads)
    current = (
        threading.get_intra_op_parallelism_threads(),
        threading.get_inter_op_parallelism_threads(),
    )
    if current != wanted:
        try:
            threading.set_intra_op_parallelism_threads(intra_op_threads)
            threading.set_inter_op_parallelism_threads(inter_op_threads)
        except RuntimeError:
            logger.warning(
                "TensorFlow already started with intra/inter-op threads %s; keeping them "
                "(asked for %s). Call set_determinism before any TensorFlow work.",
                current,
                wanted,
            )
    actual = (
        threading.get_intra_op_parallelism_threads(),
        threading.get_inter_op_parallelism_threads(),
    )
    logger.info("determinism: seed %d, threads %s, device %s", seed, actual, compute_device())


def compute_device() -> str:
    """Return where Keras trains: ``"GPU (<name>)"`` when TensorFlow sees a GPU, else ``"CPU"``."""
    gpus = tf.config.list_physical_devices("GPU")
    return f"GPU ({gpus[0].name})" if gpus else "CPU"


def cnn_params(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return the network's parameters: :data:`DEFAULT_PARAMS` updated with ``overrides``.

    Args:
        overrides: for example ``model_config["deep_learning"]`` or papermill parameters.

    Raises:
        ValueError: an unknown key, or a value out of range.
    """
    params = dict(DEFAULT_PARAMS)
    unknown = sorted(set(overrides or {}) - set(params))
    if unknown:
        raise ValueError(
            f"unknown deep-learning parameter(s) {unknown}; expected some of {sorted(params)} "
            "(config/model_config.json 'deep_learning')."
        )
    params.update(overrides or {})
    filters = params["conv_filters"]
    if not filters or not all(isinstance(f, int) and f > 0 for f in filters):
        raise ValueError(f"conv_filters must be a non-empty list of positive integers: {filters}")
    if not 0 <= params["dropout"] < 1:
        raise ValueError(f"dropout must be in [0, 1): {params['dropout']}")
    for key in ("kernel_size", "dense_units", "epochs", "batch_size", "patience"):
        if not isinstance(params[key], int) or params[key] < 1:
            raise ValueError(f"{key} must be a positive integer: {params[key]!r}")
    if not params["learning_rate"] > 0:
        raise ValueError(f"learning_rate must be positive: {params['learning_rate']}")
    params["conv_filters"] = list(filters)
    return params


def build_cnn(
    input_shape: Sequence[int],
    n_classes: int,
    *,
    conv_filters: Sequence[int] = (16, 32),
    kernel_size: int = 3,
    dense_units: int = 64,
    dropout: float = 0.25,
    learning_rate: float = 0.002,
) -> keras.Model:
    """Build and compile a small convolutional classifier.

    One block per entry of ``conv_filters``: Conv2D (same padding, ReLU) then 2×2 max
    pooling while the feature map is at least 2×2; then Flatten, Dropout, a ReLU Dense
    layer, Dropout and a softmax output. Adam, sparse categorical cross-entropy, accuracy.

    Args:
        input_shape: ``(height, width, channels)``.
        n_classes: number of classes (output units).
        conv_filters: filters of each convolution block.
        kernel_size: side of the square convolution kernels.
        dense_units: units of the hidden dense layer.
        dropout: dropout rate before and after the dense layer.
        learning_rate: Adam's initial learning rate.

    Returns:
        The compiled model.
    """
    height, width, channels = (int(d) for d in input_shape)
    layers: list[keras.layers.Layer] = [keras.Input((height, width, channels), name="image")]
    for i, filters in enumerate(conv_filters):
        layers.append(
            keras.layers.Conv2D(
                filters, kernel_size, padding="same", activation="relu", name=f"conv{i + 1}"
            )
        )
        if min(height, width) >= 2:
            layers.append(keras.layers.MaxPooling2D(2, name=f"pool{i + 1}"))
            height, width = height // 2, width // 2
    layers += [
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dropout(dropout, name="dropout1"),
        keras.layers.Dense(dense_units, activation="relu", name="dense"),
        keras.layers.Dropout(dropout, name="dropout2"),
        keras.layers.Dense(n_classes, activation="softmax", name="probabilities"),
    ]
    model = keras.Sequential(layers, name="image_cnn")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def fit_cnn(
    model: keras.Model,
    splits: ImageSplits,
    *,
    epochs: int = 40,
    batch_size: int = 32,
    patience: int = 6,
) -> keras.callbacks.History:
    """Train on the training split, watching the validation loss.

    EarlyStopping stops after ``patience`` epochs without improvement and restores the best
    weights; ReduceLROnPlateau halves the learning rate after ``patience // 2`` (at least 1)
    such epochs. Runs with ``verbose=0``.

    Args:
        model: a compiled model (:func:`build_cnn`).
        splits: the data (:func:`amlkit.deep.images.prepare_images`).
        epochs: the most epochs to run.
        batch_size: images per gradient step.
        patience: epochs without improvement of the validation loss before stopping.

    Returns:
        The Keras History (``history.history`` holds loss, accuracy, val_loss,
        val_accuracy and learning_rate per epoch).
    """
    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=patience, restore_best_weights=True
        ),
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=0.5, patience=max(1, patience // 2), min_lr=1e-5
        ),
    ]
    logger.info(
        "training %s on %s: %d images, up to %d epochs",
        model.name,
        compute_device(),
        len(splits.x_train),
        epochs,
    )
    history = model.fit(
        splits.x_train,
        splits.y_train,
        validation_data=(splits.x_val, splits.y_val),
        epochs=epochs,
        batch_size=batch_size,
        callbacks=callbacks,
        shuffle=True,
        verbose=0,
    )
    logger.info("stopped after %d epochs", len(history.history["loss"]))
    return history


def train_cnn(
    splits: ImageSplits, params: Mapping[str, Any] | None = None, *, seed: int = 42
) -> tuple[keras.Model, keras.callbacks.History]:
    """Seed, build (:func:`build_cnn`) and train (:func:`fit_cnn`) a network.

    Args:
        splits: the data.
        params: overrides of :data:`DEFAULT_PARAMS` (see :func:`cnn_params`).
        seed: reseeds Python, NumPy and TensorFlow first, so two calls give the same model.

    Returns:
        ``(model, history)``.
    """
    full = cnn_params(params)
    keras.utils.set_random_seed(seed)
    model = build_cnn(
        splits.x_train.shape[1:],
        len(splits.classes),
        **{k: full[k] for k in BUILD_KEYS},
    )
    history = fit_cnn(model, splits, **{k: full[k] for k in FIT_KEYS})
    return model, history


def predict_proba(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """Return class probabilities (N×classes) for scaled images.

    Uses ``predict_on_batch`` in chunks of :data:`PREDICT_CHUNK`: a compiled function, about
    0.5 ms for one image on two cores, against about 8 ms for an eager call and 100 ms for
    ``model.predict``.
    """
    x = np.asarray(x, dtype=np.float32)
    out = [
        model.predict_on_batch(x[i : i + PREDICT_CHUNK]) for i in range(0, len(x), PREDICT_CHUNK)
    ]
    return np.concatenate(out) if out else np.zeros((0, model.output_shape[-1]), np.float32)


def predict_classes(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """Return the predicted class index of each scaled image."""
    return predict_proba(model, x).argmax(axis=1)


def evaluate_cnn(model: keras.Model, splits: ImageSplits, digits: int = 4) -> dict[str, Any]:
    """Score every split with the project's classification metrics.

    Args:
        model: the trained network.
        splits: the data.
        digits: decimals to round to (stable notebook output).

    Returns:
        ``{split: {metric: value}}`` (accuracy, balanced_accuracy, precision/recall/f1 macro
        and weighted, roc_auc, log_loss), the shape of ``performance_metrics.json``.
    """
    labels = np.arange(len(splits.classes))
    result = {}
    for name in SPLITS:
        x, y = splits.split(name)
        proba = predict_proba(model, x).astype(np.float64)
        proba /= proba.sum(axis=1, keepdims=True)  # float32 softmax sums to 1 only roughly
        scores = evaluate.classification_metrics(y, proba.argmax(axis=1), proba, labels)
        result[name] = {k: round(v, digits) for k, v in scores.items()}
    return result


def classification_table(
    y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[Any], digits: int = 3
) -> pd.DataFrame:
    """Return per-class precision, recall, f1 and support (class indices in, labels shown)."""
    p, r, f, s = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=np.arange(len(classes)), zero_division=0
    )
    table = pd.DataFrame({"precision": p, "recall": r, "f1": f}).round(digits)
    table["support"] = s
    table.index = pd.Index(list(classes), name="class")
    return table


def plot_confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[Any]) -> Figure:
    """Plot the confusion matrix of class indices, labelled with the class names."""
    labels = list(classes)
    return evaluate.plot_confusion_matrix(
        [labels[i] for i in y_true], [labels[i] for i in y_pred], labels
    )


def plot_learning_curves(history: keras.callbacks.History | Mapping[str, list[float]]) -> Figure:
    """Plot loss and accuracy per epoch, training against validation, with the best epoch.

    Args:
        history: the History from :func:`fit_cnn`, or its ``history`` dict.
    """
    logs = history.history if hasattr(history, "history") else history
    epochs = np.arange(1, len(logs["loss"]) + 1)
    best = int(np.argmin(logs["val_loss"])) + 1
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        ax.plot(epochs, logs[metric], label="train")
        ax.plot(epochs, logs[f"val_{metric}"], label="validation")
        ax.axvline(best, color="grey", linestyle="--", linewidth=1, label=f"best epoch {best}")
        ax.set_xlabel("epoch")
        ax.set_title(metric.capitalize())
        ax.legend()
    fig.tight_layout()
    return fig


def plot_misclassified(
    x: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    classes: Sequence[Any],
    *,
    max_images: int = 16,
    columns: int = 8,
) -> Figure:
    """Show the first misclassified images (in data order), titled ``true → predicted``.

    Args:
        x: scaled images N×H×W×C.
        y_true: true class indices.
        y_pred: predicted class indices.
        classes: the labels.
        max_images: the most images to show.
        columns: images per row.
    """
    wrong = np.flatnonzero(np.asarray(y_true) != np.asarray(y_pred))[:max_images]
    if len(wrong) == 0:
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.text(0.5, 0.5, "no misclassified images", ha="center", va="center")
        ax.axis("off")
        return fig
    cols = min(columns, len(wrong))
    rows = -(-len(wrong) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong, strict=False):
        image = x[i][..., 0] if x.shape[-1] == 1 else np.clip(x[i], 0, 1)
        ax.imshow(image, cmap="gray_r" if x.shape[-1] == 1 else None, vmin=0, vmax=1)
        ax.set_title(f"{classes[y_true[i]]} → {classes[y_pred[i]]}", fontsize=9)
    fig.suptitle(f"Misclassified: first {len(wrong)} (true → predicted)", fontsize=10)
    fig.tight_layout()
    return fig
