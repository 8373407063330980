"""Track, register and champion-gate a Keras image classifier, as the sklearn side does.

``05_deep_learning`` walks through these steps one cell at a time; they mirror
:mod:`amlkit.training.workflow`: an MLflow run with parameters, metrics (per split and per epoch),
figures, the data version and hash and the code commit; a registry version that is an MLflow
model (Keras format inside) carrying ``model_metadata.json``, ``performance_metrics.json`` and
``hyperparameters.yaml``; and :func:`~amlkit.registry.champion.promote_if_better`
    scoring the candidate
and the champion on the same test split.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Mapping
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import keras
import numpy as np

from amlkit import io, paths
from amlkit.config import ModelConfig
from amlkit.deep import images, network, pyfunc
from amlkit.deep.images import ImageSplits
from amlkit.registry import champion, store, tracking
from amlkit.training import evaluate

logger = logging.getLogger(__name__)

EXPERIMENT = "amlkit-deep-learning"
TASK = "classification"
TARGET = "label"
NAME_SUFFIX = "-cnn"
SCALAR_KEYS = ("epochs", "batch_size", "learning_rate", "patience", "dense_units")


def resolve_source(source: str | Path) -> str | Path:
    """Return ``"digits"`` or the absolute path of an ``.npz`` file.

    Args:
        source: ``"digits"`` (or empty) for the bundled digits, or a path; a relative path is
            taken from the project root (papermill runs notebooks inside ``notebooks/``).

    Returns:
        ``"digits"`` or an absolute :class:`~pathlib.Path` (not checked for existence here;
        :func:`amlkit.deep.images.load_images` says when it is missing).
    """
    text = str(source).strip()
    if text in ("", images.DIGITS, f"bundled:{images.DIGITS}"):
        return images.DIGITS
    path = Path(text).expanduser()
    return path if path.is_absolute() else paths.project_root() / path


def dataset_name(source: str | Path) -> str:
    """Return the data set's name: ``"digits"`` or the ``.npz`` file's stem."""
    return images.DIGITS if str(source) == images.DIGITS else Path(source).stem


def default_model_name(dataset: str) -> str:
    """Return the registry name used when none is given: ``<dataset>-cnn``.

    Characters the registry does not allow in names become ``-``.
    """
    clean = re.sub(r"[^A-Za-z0-9._-]+", "-", dataset).strip("-._") or "images"
    return f"{clean[: 128 - len(NAME_SUFFIX)]}{NAME_SUFFIX}"


def array_sha256(x: np.ndarray, y: np.ndarray) -> str:
    """Return the sha256 of an image set's arrays (dtype, shape and bytes of ``x`` and ``y``)."""
    digest = hashlib.sha256()
    for arr in (np.ascontiguousarray(x), np.ascontiguousarray(y)):
        digest.update(f"{arr.dtype.str}{arr.shape}".encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


def data_info(source: str | Path, x: np.ndarray, y: np.ndarray) -> dict[str, str]:
    """Return ``{dataset, version, sha256}`` of the images, for tracking and the registry.

    Args:
        source: ``"digits"`` or the ``.npz`` path (from :func:`resolve_source`).
        x: the images as loaded (:func:`amlkit.deep.images.load_images`).
        y: their labels.

    Returns:
        ``sha256`` is that of the ``.npz`` file's bytes, or of the digits arrays
        (:func:`array_sha256`); ``version`` is its first 12 characters.
    """
    digits = str(source) == images.DIGITS
    sha = array_sha256(x, y) if digits else io.sha256_file(source)
    return {"dataset": dataset_name(source), "version": sha[:12], "sha256": sha}


def cnn_config(
    model_config: ModelConfig,
    overrides: Mapping[str, Any] | None = None,
    **scalars: Any,
) -> dict[str, Any]:
    """Merge the network's parameters: defaults, ``model_config``, then notebook parameters.

    Args:
        model_config: the content of ``config/model_config.json`` (its ``deep_learning``).
        overrides: any ``deep_learning`` keys to override (a papermill dict parameter).
        **scalars: single parameters such as ``epochs=10``; 0, 0.0 or None mean "keep".

    Returns:
        The validated parameters (:func:`amlkit.deep.cnn_params`).

    Raises:
        ValueError: an unknown key or a value out of range.
    """
    merged = model_config.deep_learning.model_dump()
    merged |= dict(overrides or {})
    merged |= {key: value for key, value in scalars.items() if value not in (None, 0, 0.0)}
    return network.cnn_params(merged)


def split_scores(model: keras.Model, splits: ImageSplits, split: str = "test") -> dict[str, float]:
    """Score a network on one split with the project's classification metrics (unrounded)."""
    x, y = splits.split(split)
    proba = network.predict_proba(model, x).astype(np.float64)
    proba /= proba.sum(axis=1, keepdims=True)
    labels = np.arange(len(splits.classes))
    return evaluate.classification_metrics(y, proba.argmax(axis=1), proba, labels)


def _epoch_metrics(history: Mapping[str, list[float]]) -> list[Any]:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [
        Metric(f"epoch_{key}", float(value), now, step)
        for key, values in history.items()
        for step, value in enumerate(values, start=1)
        if np.isfinite(value)
    ]


def _versions(*packages: str) -> dict[str, str]:
    found = {}
    for package in packages:
        try:
            found[package] = importlib_metadata.version(package)
        except importlib_metadata.PackageNotFoundError:
            continue
    return found


def track_and_register(
    model: keras.Model,
    history: keras.callbacks.History | Mapping[str, list[float]],
    splits: ImageSplits,
    metrics: Mapping[str, Any],
    *,
    name: str,
    data: Mapping[str, Any],
    hyperparameters: Mapping[str, Any],
    figures: Mapping[str, Any] | None = None,
    experiment: str = EXPERIMENT,
) -> tuple[store.ModelVersion, str]:
    """Log the run to MLflow and register the network as a new version of ``name``.

    The run holds the hyperparameters, the metrics per split, the curves per epoch
    (``epoch_loss``, ``epoch_val_accuracy``, ``epoch_learning_rate`` ...), the figures, the
    preprocessing record, and tags for the data (``data.dataset``, ``data.version``,
    ``data.sha256``, ``data.source``), the code commit and the compute device. The version
    folder is an MLflow model (:func:`amlkit.deep.pyfunc.save_mlflow_model`) with the network
    in the Keras format, plus the registry's metadata, metrics and hyperparameter files.

    Args:
        model: the trained network.
        history: its Keras History (or the ``history`` dict).
        splits: the data it was trained on.
        metrics: ``{split: {metric: value}}`` to record.
        name: the registry name.
        data: ``{dataset, version, sha256}`` (:func:`data_info`).
        hyperparameters: what produced the model (network, training and split settings).
        figures: ``{file stem: Figure}`` to log as PNG under ``figures/``.
        experiment: the MLflow experiment.

    Returns:
        (the new version, the MLflow run id)
    """
    logs = history.history if hasattr(history, "history") else history
    pre = splits.preprocessing
    device = network.compute_device()
    tags = {
        "task": TASK,
        "model_name": name,
        "flavor": "keras",
        "compute_device": device,
        "data.source": pre.get("source", ""),
    }
    run_name = f"{name}-{model.name}"
    with tracking.start_run(experiment, run_name=run_name, tags=tags, data_info=data) as run:
        run_id = run.info.run_id
        tracking.log_params(hyperparameters)
        tracking.log_metrics(dict(metrics))
        from mlflow import MlflowClient

        MlflowClient().log_batch(run_id, metrics=_epoch_metrics(logs))
        tracking.log_dict(pre, "preprocessing.json")
        for stem, figure in (figures or {}).items():
            tracking.log_figure(figure, f"figures/{stem}.png")
        metadata = {
            "model_type": f"keras.{type(model).__name__}",
            "task": TASK,
            "target": TARGET,
            "feature_columns": ["image"],
            "feature_types": {"image": "image"},
            "classes": list(splits.classes),
            "data": dict(data),
            "input_shape": [pre["height"], pre["width"], pre["channels"]],
            "preprocessing": pre,
            "compute_device": device,
            "library_versions": _versions("tensorflow", "keras", "pillow"),
        }
        version = store.write_version(
            name,
            lambda folder: pyfunc.save_mlflow_model(model, folder, preprocessing=pre),
            flavor="keras",
            model_file=pyfunc.KERAS_FILE,
            metadata=metadata,
            metrics=metrics,
            hyperparameters=hyperparameters,
            run_id=run_id,
        )
    logger.info("registered %s version %d (run %s)", name, version.version, run_id)
    return version, run_id


def _check_compatible(version: store.ModelVersion, splits: ImageSplits) -> None:
    """Refuse to score a version on images of another shape or with other classes."""
    pre = splits.preprocessing
    meta = version.metadata
    expected = [pre["height"], pre["width"], pre["channels"]]
    where = f"{version.name} version {version.version}"
    if meta.get("flavor") != "keras" or meta.get("input_shape") != expected:
        raise ValueError(
            f"{where} is a {meta.get('flavor')} model for input {meta.get('input_shape')}, "
            f"not a Keras network for images {expected}; it cannot be scored on this data. "
            "Register under another name (model_name parameter)."
        )
    if meta.get("classes") != list(splits.classes):
        raise ValueError(
            f"{where} predicts classes {meta.get('classes')}, this data has "
            f"{list(splits.classes)}; register under another name (model_name parameter)."
        )


def champion_gate(
    version: store.ModelVersion,
    splits: ImageSplits,
    model_config: ModelConfig,
    *,
    split: str = "test",
) -> champion.PromotionDecision:
    """Compare ``version`` with the champion on the same split; promote it if it wins.

    Both versions are loaded back from the registry (files verified against their hashes)
    and scored on ``split`` with ``model_config.primary_metric["classification"]``;
    the candidate must win by more than ``model_config.promotion_margin``.

    Args:
        version: the new version (:func:`track_and_register`).
        splits: the data; both versions are scored on the same images.
        model_config: the content of ``config/model_config.json``.
        split: the split to score on.

    Returns:
        The decision (also in ``decisions.jsonl`` and on the candidate's MLflow run).

    Raises:
        ValueError: the champion takes images of another shape or predicts other classes.
    """
    metric = model_config.primary_metric[TASK]

    def score(candidate: store.ModelVersion) -> float:
        _check_compatible(candidate, splits)
        network = store.load_model(candidate.name, candidate.version)
        return split_scores(network, splits, split)[metric]

    return champion.promote_if_better(
        version,
        metric=metric,
        greater_is_better=evaluate.greater_is_better(metric),
        margin=model_config.promotion_margin,
        score=score,
    )


def load_pyfunc(version: store.ModelVersion) -> Any:
    """Verify a version's files, then load it as a generic MLflow pyfunc model.

    Its ``predict`` takes a float64 array N×H×W×C in the original scale and returns a
    DataFrame: ``prediction`` and one ``probability_<class>`` column per class.

    Raises:
        amlkit.registry.ModelIntegrityError: a file differs from what was recorded.
    """
    import mlflow.pyfunc

    store.verify(version)
    return mlflow.pyfunc.load_model(str(version.path))


def serving_requests(splits: ImageSplits, n: int = 5, split: str = "test") -> dict[str, list[Any]]:
    """Return the first ``n`` images of a split as the two request forms a service accepts.

    Args:
        splits: the data.
        n: how many images.
        split: which split.

    Returns:
        ``{"lists": nested lists in the original scale, "base64_png": [PNG strings]}``;
        ``base64_png`` is empty for images with other than 1 or 3 channels.
    """
    pre = splits.preprocessing
    x, _ = splits.split(split)
    raw = np.round(x[:n].astype(np.float64) * pre["scale"], 6)
    if pre["channels"] == 1:
        raw = raw[..., 0]
    pngs = []
    if pre["channels"] in (1, 3):  # PNG carries grayscale or RGB only
        pngs = [images.encode_png(image, pre["scale"]) for image in raw]
    return {"lists": raw.tolist(), "base64_png": pngs}
