"""The train -> evaluate -> track -> register -> champion-gate sequence, as reusable steps.

``04_model_training_evaluation`` walks through these steps one cell at a time;
``07_monitoring`` calls :func:`retrain` to run them all when drift fires the retraining rule.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from amlkit.config import ModelConfig
from amlkit.data.manifests import ProcessedManifest
from amlkit.data.preprocess import Processed
from amlkit.registry import champion, store, tracking
from amlkit.training import evaluate, search

logger = logging.getLogger(__name__)

EXPERIMENT = "amlkit-training"


@dataclass
class TrainedModel:
    """A registered version with what produced it and what the champion gate decided."""

    result: search.TrainingResult
    test_metrics: dict[str, float]
    version: store.ModelVersion
    decision: champion.PromotionDecision
    run_id: str


def default_model_name(dataset: str, task: str) -> str:
    """Return the registry name used when none is given: ``<dataset>-<task>``."""
    return f"{dataset}-{task}"


def data_info(processed: Processed) -> dict[str, Any]:
    """Return {dataset, version, sha256} of a processed version (the raw file's sha256)."""
    return processed.manifest.ref().model_dump()


def split_xy(frame: pd.DataFrame, manifest: ProcessedManifest) -> tuple[pd.DataFrame, pd.Series]:
    """Return the feature columns and the target of a processed split."""
    return frame[list(manifest.feature_types)], frame[manifest.target]


def score_on_test(model: Any, processed: Processed) -> dict[str, float]:
    """Score a model once on the held-out test split."""
    X, y = split_xy(processed.test, processed.manifest)
    return evaluate.evaluate_model(model, X, y, processed.manifest.task)


def track_and_register(
    result: search.TrainingResult,
    processed: Processed,
    metrics: Mapping[str, Any],
    *,
    name: str,
    figures: Mapping[str, Any] | None = None,
    experiment: str = EXPERIMENT,
) -> tuple[store.ModelVersion, str]:
    """Log the run to MLflow (parameters, metrics, figures, data, comparison) and register it.

    Args:
        result: the training result; its chosen candidate is registered.
        processed: the processed data it was trained on.
        metrics: ``{split: {metric: value}}`` to record.
        name: the registry name.
        figures: ``{file stem: Figure}`` to log as PNG.
        experiment: the MLflow experiment.

    Returns:
        (the new version, the MLflow run id)
    """
    best = result.best
    info = data_info(processed)
    tags = {"task": result.task, "candidate": best.name, "model_name": name}
    with tracking.start_run(
        experiment, run_name=f"{name}-{best.name}", tags=tags, data_info=info
    ) as run:
        tracking.log_params({"candidate": best.name, **best.best_params})
        tracking.log_params(processed.manifest.params, prefix="split_")
        tracking.log_metrics(dict(metrics))
        tracking.log_dict(
            result.comparison.reset_index().to_dict(orient="records"), "comparison.json"
        )
        for stem, figure in (figures or {}).items():
            tracking.log_figure(figure, f"figures/{stem}.png")
        X, _ = split_xy(processed.train, processed.manifest)
        version = store.register_sklearn_model(
            best.estimator,
            name=name,
            task=result.task,
            target=result.target,
            feature_types=processed.manifest.feature_types,
            classes=result.classes or None,
            data_info=info,
            metrics=metrics,
            hyperparameters={"candidate": best.name, **best.best_params},
            input_example=X.head(5),
            run_id=run.info.run_id,
        )
    return version, run.info.run_id


def champion_gate(
    version: store.ModelVersion, processed: Processed, model_config: ModelConfig
) -> champion.PromotionDecision:
    """Compare ``version`` with the champion on this test split; promote if it wins."""
    task = processed.manifest.task
    metric = model_config.primary_metric[task]

    def score(candidate: store.ModelVersion) -> float:
        model = store.load_model(candidate.name, candidate.version)
        return score_on_test(model, processed)[metric]

    return champion.promote_if_better(
        version,
        metric=metric,
        greater_is_better=evaluate.greater_is_better(metric),
        margin=model_config.promotion_margin,
        score=score,
    )


def retrain(
    processed: Processed, model_config: ModelConfig, *, name: str | None = None
) -> TrainedModel:
    """Train every candidate, register the best, and put it through the champion gate."""
    m = processed.manifest
    name = name or default_model_name(m.dataset, m.task)
    result = search.train_all(
        processed.train,
        processed.validation,
        target=m.target,
        feature_types=m.feature_types,
        task=m.task,
        model_config=model_config,
    )
    scores = score_on_test(result.best.estimator, processed)
    metrics = {"validation": result.best.validation_metrics, "test": scores}
    X, y = split_xy(processed.test, m)
    figures = evaluate.evaluation_figures(result.best.estimator, X, y, m.task)
    version, run_id = track_and_register(result, processed, metrics, name=name, figures=figures)
    for figure in figures.values():
        plt.close(figure)
    decision = champion_gate(version, processed, model_config)
    return TrainedModel(result, scores, version, decision, run_id)
