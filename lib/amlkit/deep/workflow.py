"""Track, register and champion-gate 05's Keras image classifier, as 04 does for scikit-learn.

The network gets the same record as 04's models: an MLflow run, a registry version (an MLflow
model, Keras inside, with the registry's files), and the champion gate.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from typing import Any, Final

import keras
import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric

from amlkit import kinds
from amlkit.config import ModelConfig
from amlkit.deep import pyfunc
from amlkit.deep.determinism import compute_device
from amlkit.deep.images import ImageSplits
from amlkit.registry import champion, store, tracking
from amlkit.training import evaluate

logger = logging.getLogger(__name__)

EXPERIMENT = "amlkit-deep-learning"
TASK: Final = kinds.CLASSIFICATION
TARGET = "label"
NAME_SUFFIX = "-cnn"
LIBRARIES = ("tensorflow", "keras", "pillow")
NOTEBOOK = "notebooks/05_deep_learning.ipynb"


def default_model_name(dataset: str) -> str:
    """Return the registry name used when none is given: ``<dataset>-cnn``, made a valid name."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "-", dataset).strip("-._") or "images"
    return f"{clean[: 128 - len(NAME_SUFFIX)]}{NAME_SUFFIX}"


def score_split(model: keras.Model, splits: ImageSplits, split: str = "test") -> dict[str, float]:
    """Score a network on one split with :func:`~amlkit.training.evaluate.classification_metrics`.

    The notebook's table and the champion gate both score this way, so they agree.
    """
    x, y = splits.split(split)
    proba = pyfunc.predict_proba(model, x).astype(np.float64)
    proba /= proba.sum(axis=1, keepdims=True)  # float32 softmax sums to 1 only roughly
    labels = np.arange(len(splits.classes))
    return evaluate.classification_metrics(y, proba.argmax(axis=1), proba, labels)


def _epoch_metrics(history: Mapping[str, list[float]]) -> list[Metric]:
    """Turn Keras' per-epoch logs into MLflow metrics ``epoch_<name>`` stepped by epoch."""
    now = int(time.time() * 1000)
    return [
        Metric(f"epoch_{key}", float(value), now, step)
        for key, values in history.items()
        for step, value in enumerate(values, start=1)
        if np.isfinite(value)
    ]


def track_and_register(
    model: keras.Model,
    history: Mapping[str, list[float]],
    splits: ImageSplits,
    metrics: Mapping[str, Any],
    *,
    name: str,
    data: Mapping[str, Any],
    hyperparameters: Mapping[str, Any],
    figures: Mapping[str, Any] | None = None,
) -> tuple[store.ModelVersion, str]:
    """Log the run to MLflow, register the network as a new version of ``name``; return both.

    The run holds the hyperparameters, ``metrics`` (``{split: {metric: value}}``), ``history``
    (``model.fit``'s) as ``epoch_<name>`` curves, the figures, the preprocessing record, and
    tags for the data (:func:`amlkit.deep.images.data_info`), code commit and compute device.
    Inside a job that run is the job's own (:func:`amlkit.registry.tracking.training_run`),
    elsewhere a new run in experiment ``amlkit-deep-learning``.
    """
    pre = splits.preprocessing
    device = compute_device()
    tags = {"task": TASK, "model_name": name, "flavor": "keras", "compute_device": device}
    tags["data.source"] = pre.get("source", "")
    tags |= {f"data.{key}": str(value) for key, value in data.items()}
    tags |= tracking.source_tags(NOTEBOOK)
    run_name = f"{name}-{model.name}"
    with tracking.training_run(run_name, tags=tags, experiment=EXPERIMENT) as run:
        run_id = run.info.run_id
        mlflow.log_params(dict(hyperparameters))
        scores = {f"{split}_{k}": v for split, values in metrics.items() for k, v in values.items()}
        mlflow.log_metrics(scores)
        MlflowClient().log_batch(run_id, metrics=_epoch_metrics(history))
        mlflow.log_dict(pre, "preprocessing.json")
        for stem, figure in (figures or {}).items():
            mlflow.log_figure(figure, f"figures/{stem}.png")
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
            "library_versions": store.library_versions(LIBRARIES),
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
            description=f"Keras image classifier {model.name} for {data['dataset']}",
        )
    return version, run_id


def _check_compatible(version: store.ModelVersion, splits: ImageSplits) -> None:
    """Refuse to score a version on images of another shape or with other classes."""
    pre = splits.preprocessing
    meta = version.metadata
    expected = [pre["height"], pre["width"], pre["channels"]]
    where = f"{version.name} version {version.version}"
    if meta.flavor != "keras" or meta.input_shape != expected:
        raise ValueError(
            f"{where} is a {meta.flavor} model for input {meta.input_shape}, "
            f"not a Keras network for images {expected}; it cannot be scored on this data. "
            "Register under another name (model_name parameter)."
        )
    if meta.classes != list(splits.classes):
        raise ValueError(
            f"{where} predicts classes {meta.classes}, this data has "
            f"{list(splits.classes)}; register under another name (model_name parameter)."
        )


def champion_gate(
    version: store.ModelVersion, splits: ImageSplits, model_config: ModelConfig
) -> champion.PromotionDecision:
    """Promote ``version`` if it beats the champion on the test split by the configured margin.

    Both are loaded back from the registry and scored with :func:`score_split`; ValueError
    when the champion takes images of another shape or predicts other classes.
    """
    metric = model_config.primary_metric[TASK]

    def score(candidate: store.ModelVersion) -> float:
        _check_compatible(candidate, splits)
        network = store.load_model(candidate.name, candidate.version)
        return score_split(network, splits)[metric]

    return champion.promote_if_better(
        version,
        metric=metric,
        greater_is_better=evaluate.greater_is_better(metric),
        margin=model_config.promotion_margin,
        score=score,
    )
