"""Track, register and champion-gate a Keras image classifier, as the scikit-learn side does.

``05_deep_learning`` builds and trains the network; these steps give it the same record as
the scikit-learn models of notebook 04: an MLflow run with parameters,
metrics (per split and per epoch), figures, the data version and hash and the code commit; a
registry version that is an MLflow model (Keras format inside) carrying
``model_metadata.json``, ``performance_metrics.json`` and ``hyperparameters.yaml``; and
:func:`~amlkit.registry.champion.promote_if_better` scoring the candidate and the champion on
the same test split with :func:`score_split`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from typing import Any

import keras
import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric

from amlkit.config import ModelConfig
from amlkit.deep import pyfunc
from amlkit.deep.determinism import compute_device
from amlkit.deep.images import ImageSplits
from amlkit.registry import champion, store, tracking
from amlkit.training import evaluate

logger = logging.getLogger(__name__)

EXPERIMENT = "amlkit-deep-learning"
TASK = "classification"
TARGET = "label"
NAME_SUFFIX = "-cnn"
LIBRARIES = ("tensorflow", "keras", "pillow")
NOTEBOOK = "notebooks/05_deep_learning.ipynb"


def default_model_name(dataset: str) -> str:
    """Return the registry name used when none is given: ``<dataset>-cnn``.

    Characters the registry does not allow in names become ``-``.
    """
    clean = re.sub(r"[^A-Za-z0-9._-]+", "-", dataset).strip("-._") or "images"
    return f"{clean[: 128 - len(NAME_SUFFIX)]}{NAME_SUFFIX}"


def score_split(model: keras.Model, splits: ImageSplits, split: str = "test") -> dict[str, float]:
    """Score a network on one split with the project's classification metrics.

    The notebook's table and the champion gate both score this way, so they agree.

    Args:
        model: the network (trained in the notebook, or loaded from the registry).
        splits: the data.
        split: ``"train"``, ``"validation"`` or ``"test"``.

    Returns:
        ``{metric: value}``: accuracy, balanced_accuracy, precision/recall/f1 macro and
        weighted, roc_auc and log_loss.
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
        history: its per-epoch logs (``model.fit(...).history``).
        splits: the data it was trained on.
        metrics: ``{split: {metric: value}}`` to record.
        name: the registry name.
        data: ``{dataset, version, sha256}`` (:func:`amlkit.deep.images.data_info`).
        hyperparameters: what produced the model (network, training and split settings).
        figures: ``{file stem: Figure}`` to log as PNG under ``figures/``.
        experiment: the MLflow experiment.

    Returns:
        (the new version, the MLflow run id)
    """
    pre = splits.preprocessing
    device = compute_device()
    tags = {
        "task": TASK,
        "model_name": name,
        "flavor": "keras",
        "compute_device": device,
        "data.source": pre.get("source", ""),
    }
    run_name = f"{name}-{model.name}"
    tags |= {f"data.{key}": str(value) for key, value in data.items()}
    tags |= tracking.source_tags(NOTEBOOK)
    tracking.set_experiment(experiment)
    with mlflow.start_run(run_name=run_name, tags=tags) as run:
        run_id = run.info.run_id
        mlflow.log_params(hyperparameters)
        mlflow.log_metrics(
            {
                f"{split}_{key}": value
                for split, scores in metrics.items()
                for key, value in scores.items()
            }
        )
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
    version: store.ModelVersion,
    splits: ImageSplits,
    model_config: ModelConfig,
    *,
    split: str = "test",
) -> champion.PromotionDecision:
    """Compare ``version`` with the champion on the same split; promote it if it wins.

    Both versions are loaded back from the registry (files verified against their hashes)
    and scored on ``split`` (:func:`score_split`) with
    ``model_config.primary_metric["classification"]``; the candidate must win by more than
    ``model_config.promotion_margin``.

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
        return score_split(network, splits, split)[metric]

    return champion.promote_if_better(
        version,
        metric=metric,
        greater_is_better=evaluate.greater_is_better(metric),
        margin=model_config.promotion_margin,
        score=score,
    )
