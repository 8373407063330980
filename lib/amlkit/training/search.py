"""Train and compare the scikit-learn candidates of ``config/model_config.json``.

Each candidate is a ``Pipeline`` (``preprocess``, then ``model``)
tuned by a seeded ``RandomizedSearchCV`` on the training split and scored on the validation
split; the best by the task's primary metric is chosen. Same inputs and configuration give
the same chosen model and metrics.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold, RandomizedSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline

from amlkit.config import ModelConfig
from amlkit.training import evaluate, transformers

logger = logging.getLogger(__name__)


def build_candidates(
    task: str,
    model_config: ModelConfig,
    *,
    feature_types: Mapping[str, str],
    missing_indicator: bool = True,
) -> dict[str, tuple[Pipeline, dict[str, Any]]]:
    """Build an unfitted pipeline and its search space for every candidate of ``task``.

    Args:
        task: ``classification`` or ``regression``.
        model_config: the loaded ``model_config.json``.
        feature_types: ``{column: kind}`` of the feature columns.
        missing_indicator: passed to :func:`amlkit.training.transformers.build_preprocessor`.

    Returns:
        ``{name: (Pipeline([("preprocess", ...), ("model", ...)]), param_distributions)}`` in
        the configuration's order. Estimators with a ``random_state`` get the configured one.

    Raises:
        ConfigError: no candidate for the task, or a bad estimator or parameter.
    """
    evaluate.check_task(task)
    out: dict[str, tuple[Pipeline, dict[str, Any]]] = {}
    for name, cand in model_config.candidates_for(task).items():
        estimator = cand.estimator_for(task, model_config.random_state)
        preprocess = transformers.build_preprocessor(
            feature_types, missing_indicator=missing_indicator
        )
        pipeline = Pipeline([("preprocess", preprocess), ("model", estimator)])
        out[name] = (pipeline, cand.distributions_for(task))
    return out


def make_cv(task: str, y: Any, cv_folds: int, random_state: int) -> KFold | StratifiedKFold:
    """Return a shuffled, seeded splitter, with fewer folds when the data are too small.

    Classification uses ``StratifiedKFold``; when the smallest class has fewer members than
    ``cv_folds`` the folds are reduced to that size (at least 2) with a warning.

    Raises:
        ValueError: fewer than 2 rows (or, for classification, fewer than 2 classes).
    """
    y = np.asarray(y)
    folds = int(cv_folds)
    if folds < 2:
        raise ValueError(f"cv_folds must be at least 2, got {cv_folds}; fix model_config.json.")
    if task == "classification":
        _, counts = np.unique(y, return_counts=True)
        if len(counts) < 2:
            raise ValueError(
                f"the training target has {len(counts)} class; classification needs at least 2."
            )
        if counts.min() < folds:
            reduced = max(2, int(counts.min()))
            logger.warning(
                "smallest class has %d rows, fewer than cv_folds=%d; using %d folds",
                counts.min(),
                folds,
                reduced,
            )
            folds = reduced
        return StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state)
    if len(y) < folds:
        if len(y) < 2:
            raise ValueError(f"need at least 2 training rows for cross-validation, got {len(y)}.")
        logger.warning(
            "only %d rows, fewer than cv_folds=%d; using %d folds", len(y), folds, len(y)
        )
        folds = len(y)
    return KFold(n_splits=folds, shuffle=True, random_state=random_state)


def search_candidate(
    name: str,
    pipeline: Pipeline,
    space: Mapping[str, Any],
    X: pd.DataFrame,
    y: Any,
    *,
    task: str,
    cv_folds: int,
    n_iter: int,
    random_state: int,
    scoring: str,
    n_jobs: int = 1,
) -> RandomizedSearchCV:
    """Tune one candidate with a seeded randomized search and refit it on all of ``X``.

    Args:
        name: the candidate's name (for logs).
        pipeline: the unfitted pipeline.
        space: ``model__``-prefixed parameter distributions (may be empty).
        X: training features.
        y: training target.
        task: ``classification`` or ``regression``.
        cv_folds: folds of cross-validation (reduced for tiny classes, see :func:`make_cv`).
        n_iter: parameter settings sampled (capped by the grid size when all are choices).
        random_state: seed of the folds and the sampling.
        scoring: a scikit-learn scoring string (see :func:`amlkit.training.evaluate.scoring_for`).
        n_jobs: parallel jobs; 1 keeps results reproducible and memory low.

    Returns:
        The fitted ``RandomizedSearchCV``.
    """
    evaluate.check_task(task)
    cv = make_cv(task, y, cv_folds, random_state)
    n_iter = int(n_iter) if space else 1
    search = RandomizedSearchCV(
        pipeline,
        dict(space),
        n_iter=n_iter,
        scoring=scoring,
        cv=cv,
        refit=True,
        random_state=random_state,
        n_jobs=n_jobs,
    )
    logger.info("searching %s: %d settings x %d folds", name, n_iter, cv.get_n_splits())
    search.fit(X, y)
    logger.info("%s best cv %s = %.4f", name, scoring, search.best_score_)
    return search


@dataclass
class CandidateResult:
    """What one candidate produced."""

    name: str
    estimator: Pipeline
    best_params: dict[str, Any]
    cv_score: float
    cv_std: float
    validation_metrics: dict[str, float]
    fit_seconds: float
    search: RandomizedSearchCV = field(repr=False)


@dataclass
class TrainingResult:
    """The candidates, their comparison and the chosen one.

    Attributes:
        task: ``classification`` or ``regression``.
        target: the target column.
        feature_columns: the model's input columns, in order.
        primary_metric: the metric that ranks candidates.
        classes: sorted class labels (classification), else empty.
        candidates: ``{name: CandidateResult}``.
        comparison: one row per candidate (index ``candidate``), best first.
        chosen: the best candidate's name.
    """

    task: str
    target: str
    feature_columns: list[str]
    primary_metric: str
    classes: list[Any]
    candidates: dict[str, CandidateResult]
    comparison: pd.DataFrame
    chosen: str

    @property
    def best(self) -> CandidateResult:
        """The chosen candidate."""
        return self.candidates[self.chosen]


def _split(df: pd.DataFrame, target: str, columns: list[str], label: str) -> tuple[Any, Any]:
    missing = [c for c in [*columns, target] if c not in df.columns]
    if missing:
        raise ValueError(
            f"{label} data lacks columns {missing}; pass the processed split with the feature "
            "columns of feature_types and the target."
        )
    if df[target].isna().any():
        raise ValueError(
            f"{label} target '{target}' has {int(df[target].isna().sum())} missing values; "
            "drop those rows in preprocessing."
        )
    return df[columns], df[target]


def _plain(value: Any) -> Any:
    """Return numpy scalars as Python numbers (for JSON, YAML and MLflow params)."""
    return value.item() if isinstance(value, np.generic) else value


def _cv_in_metric_units(metric: str, score: float) -> float:
    """Return a search score in the metric's own units (scorers negate lower-is-better)."""
    return -score if evaluate.scoring_for(metric).startswith("neg_") else score


def train_all(
    train_df: pd.DataFrame,
    validation_df: pd.DataFrame | None,
    *,
    target: str,
    feature_types: Mapping[str, str],
    task: str,
    model_config: ModelConfig,
    n_jobs: int = 1,
    missing_indicator: bool = True,
) -> TrainingResult:
    """Tune every candidate on ``train_df``, score it on ``validation_df``, choose the best.

    Args:
        train_df: training rows (feature columns and target).
        validation_df: validation rows; when None, candidates are ranked by CV score.
        target: the target column.
        feature_types: ``{column: kind}`` of the feature columns.
        task: ``classification`` or ``regression``.
        model_config: the loaded ``model_config.json`` (random_state, cv_folds,
            search_iterations, primary_metric, candidates).
        n_jobs: parallel jobs inside each search.
        missing_indicator: passed to :func:`amlkit.training.transformers.build_preprocessor`.

    Returns:
        A :class:`TrainingResult`; ``comparison`` is sorted best first by the primary metric
        on validation (then CV score, then name), so ties resolve the same way every run.
    """
    evaluate.check_task(task)
    metric = model_config.primary_metric[task]
    higher = evaluate.greater_is_better(metric)
    columns = list(feature_types)
    X, y = _split(train_df, target, columns, "training")
    classes = sorted(pd.unique(y).tolist()) if task == "classification" else []
    scoring = evaluate.scoring_for(metric, n_classes=max(len(classes), 2))
    seed = model_config.random_state
    if validation_df is not None:
        X_val, y_val = _split(validation_df, target, columns, "validation")
    results: dict[str, CandidateResult] = {}
    built = build_candidates(
        task, model_config, feature_types=feature_types, missing_indicator=missing_indicator
    )
    for name, (pipeline, space) in built.items():
        start = time.perf_counter()
        search = search_candidate(
            name,
            pipeline,
            space,
            X,
            y,
            task=task,
            cv_folds=model_config.cv_folds,
            n_iter=model_config.search_iterations,
            random_state=seed,
            scoring=scoring,
            n_jobs=n_jobs,
        )
        seconds = time.perf_counter() - start
        model = search.best_estimator_
        scores = {}
        if validation_df is not None:
            scores = evaluate.evaluate_model(model, X_val, y_val, task)
        best = search.best_index_
        results[name] = CandidateResult(
            name=name,
            estimator=model,
            best_params={
                k.removeprefix("model__"): _plain(v) for k, v in search.best_params_.items()
            },
            cv_score=_cv_in_metric_units(metric, float(search.best_score_)),
            cv_std=float(search.cv_results_["std_test_score"][best]),
            validation_metrics=scores,
            fit_seconds=seconds,
            search=search,
        )
    comparison = _comparison(results, metric, higher)
    chosen = str(comparison.index[0])
    logger.info("chosen candidate: %s (%s)", chosen, metric)
    return TrainingResult(task, target, columns, metric, classes, results, comparison, chosen)


def _comparison(results: dict[str, CandidateResult], metric: str, higher: bool) -> pd.DataFrame:
    rows = []
    for name, res in results.items():
        row = {"candidate": name, "model": type(res.estimator[-1]).__name__}
        row |= {f"cv_{metric}": res.cv_score, f"cv_{metric}_std": res.cv_std}
        row |= {f"validation_{k}": v for k, v in res.validation_metrics.items()}
        row["fit_seconds"] = res.fit_seconds
        rows.append(row)
    frame = pd.DataFrame(rows).set_index("candidate")
    keys = [c for c in (f"validation_{metric}", f"cv_{metric}") if c in frame.columns]
    # Rank by value in "bigger is better" form; NaN sorts last; the name breaks ties.
    sign = 1.0 if higher else -1.0
    order = frame[keys].mul(sign).fillna(-np.inf)
    order["name"] = frame.index
    ranked = order.sort_values([*keys, "name"], ascending=[False] * len(keys) + [True])
    return frame.loc[ranked.index]
