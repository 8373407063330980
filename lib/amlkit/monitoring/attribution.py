"""Feature attribution drift: has the ranking of what drives the predictions changed?

Azure ML's fourth monitoring signal, computed as Azure defines it: feature importance on the
training data (with its labels) and on production data (with the model's predictions as the
labels, since production has none), then the normalized discounted cumulative gain (NDCG) of
the production ranking, the training importances being the relevance. Drift is an NDCG below
the threshold (``monitoring.thresholds.normalized_discounted_cumulative_gain``, Azure's
default 0.9).

NDCG, as :func:`sklearn.metrics.ndcg_score` computes it and Azure's monitoring component calls
it (``ndcg_score([reference], [production])``): order the features by production importance,
most important first; the gain of the feature at rank ``i`` (from 1) is its *reference*
importance ``r``, discounted by ``log2(i + 1)``::

    DCG  = sum_i r[production order][i] / log2(i + 1)
    IDCG = sum_i r[reference order][i]  / log2(i + 1)        (the best possible order)
    NDCG = DCG / IDCG                                         (1: same ranking)

Features tied in production importance share their gains (sklearn averages them). Swapping two
unimportant features costs little; demoting the most important one costs most.

Importance here is the permutation importance of the deployed model itself, at the level of
its raw input columns (:func:`sklearn.inspection.permutation_importance`, seeded): how much
agreement with the labels (accuracy, or R² for regression) drops when one column is shuffled.
Azure instead fits a LightGBM surrogate on each data set and explains it; the permutation of
the real model needs no extra dependency, measures the model that serves, is deterministic for
a seed and takes a few seconds on two cores. Negative importances (shuffling helped by chance)
count as 0, as relevance cannot be negative.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

METRIC = "normalized_discounted_cumulative_gain"
SCORING = {"classification": "accuracy", "regression": "r2"}


def feature_importance(
    model: Any,
    X: pd.DataFrame,
    y: Any,
    *,
    task: str,
    n_repeats: int = 5,
    max_rows: int = 1000,
    random_state: int = 0,
) -> pd.Series:
    """Return each column's permutation importance for ``model`` on ``X`` against ``y``.

    The drop in accuracy (classification) or R² (regression) when the column is shuffled,
    averaged over ``n_repeats``, clipped at 0; most important first (ties by name). Rows
    beyond ``max_rows`` are sampled away (seeded), and rows whose label is missing are left out.
    The rows are first put in an order of their content, so the result does not depend on the
    order they came in.

    Raises:
        ValueError: ``task`` is unknown, or no row has a label.
    """
    from sklearn.inspection import permutation_importance

    if task not in SCORING:
        raise ValueError(f"task {task!r} is not one of {sorted(SCORING)}; name the model's task")
    labels = pd.Series(np.asarray(y), index=X.index)
    keep = labels.notna()
    X, labels = X[keep], labels[keep]
    if not len(X):
        raise ValueError("no row has a label (or a prediction); importance needs labelled rows")
    # The shuffles depend on row positions: put the rows in an order of their content, so the
    # same rows give the same importance whatever order they arrived in (concurrent requests).
    content = pd.util.hash_pandas_object(X.assign(_label=labels.astype(str)), index=False)
    by_content = np.argsort(content.to_numpy(), kind="stable")
    X, labels = X.iloc[by_content], labels.iloc[by_content]
    if len(X) > max_rows:
        chosen = X.sample(max_rows, random_state=random_state).index
        X, labels = X.loc[chosen], labels.loc[chosen]
    result = permutation_importance(
        model,
        X,
        labels.to_numpy(),
        scoring=SCORING[task],
        n_repeats=n_repeats,
        random_state=random_state,
        n_jobs=1,
    )
    values = pd.Series(np.clip(result.importances_mean, 0.0, None), index=[str(c) for c in X])
    order = sorted(values.index, key=lambda name: (-values[name], name))
    return values[order].rename("importance")


def ndcg(reference: pd.Series, production: pd.Series) -> float:
    """Return the NDCG of the production ranking, reference importances as the relevance.

    Both map feature names to importances (see the module's formula); the features of
    ``reference`` are compared, a feature missing from ``production`` counting 0 there. NaN
    when every reference importance is 0 (no ranking to keep).

    Raises:
        ValueError: an importance is negative.
    """
    from sklearn.metrics import ndcg_score

    names = list(reference.index)
    relevance = reference.to_numpy(dtype=float)
    scores = production.reindex(names).fillna(0.0).to_numpy(dtype=float)
    if (relevance < 0).any() or (scores < 0).any():
        raise ValueError("importances must not be negative; clip them at 0 before the NDCG")
    if len(names) < 2 or not relevance.any():
        return math.nan if not relevance.any() else 1.0
    return float(ndcg_score(relevance[np.newaxis], scores[np.newaxis]))


@dataclass
class AttributionDrift:
    """Feature importance on training and production data, and the NDCG of the two rankings.

    Attributes:
        reference: importance per feature on the training data (labels), most important first.
        production: importance per feature on production data (predictions as labels).
        ndcg: :func:`ndcg` of the two.
        threshold: drift below this NDCG.
        reference_rows: rows the reference importance used.
        production_rows: rows the production importance used.
    """

    reference: pd.Series
    production: pd.Series
    ndcg: float
    threshold: float
    reference_rows: int
    production_rows: int

    @property
    def drifted(self) -> bool:
        """Whether the ranking changed: the NDCG is below the threshold."""
        return bool(self.ndcg < self.threshold)

    def rankings(self, top: int | None = None) -> pd.DataFrame:
        """Return the two rankings side by side: rank, then each side's feature and importance."""
        sides = {"training": self.reference, "production": self.production}
        columns = {}
        for side, values in sides.items():
            shown = values.head(top) if top else values
            columns[f"{side} feature"] = list(shown.index)
            columns[f"{side} importance"] = [round(float(v), 4) for v in shown]
        frame = pd.DataFrame(columns)
        frame.index = pd.RangeIndex(1, len(frame) + 1, name="rank")
        return frame

    def to_dict(self) -> dict[str, Any]:
        """Return the result as plain values (importances rounded to 6 places)."""
        return {
            "metric": METRIC,
            "value": round(self.ndcg, 6) if math.isfinite(self.ndcg) else None,
            "threshold": self.threshold,
            "drifted": self.drifted,
            "reference": {k: round(float(v), 6) for k, v in self.reference.items()},
            "production": {k: round(float(v), 6) for k, v in self.production.items()},
            "reference_rows": self.reference_rows,
            "production_rows": self.production_rows,
        }


def attribution_drift(
    model: Any,
    reference: pd.DataFrame,
    production: pd.DataFrame,
    *,
    features: Sequence[str],
    target: str,
    task: str,
    predictions: Any = None,
    threshold: float = 0.9,
    n_repeats: int = 5,
    max_rows: int = 1000,
    random_state: int = 0,
) -> AttributionDrift:
    """Compare the importance ranking on ``reference`` (training rows) with ``production``'s.

    Args:
        model: the deployed model (``predict`` on the raw feature columns).
        reference: training rows, with the ``target`` column.
        production: production rows, with the ``features``.
        features: the model's input columns.
        target: the label column of ``reference``.
        task: ``classification`` or ``regression``.
        predictions: the model's answers on ``production`` (the collected outputs); None:
            ``model.predict``. Rows without one (failed requests) are left out.
        threshold: drift when the NDCG is below it.
        n_repeats: shuffles per column.
        max_rows: rows sampled per side at most.
        random_state: the seed of the sampling and the shuffles.

    Raises:
        ValueError: a feature or the target is missing; the message names it.
    """
    features = list(features)
    for name, frame, needed in (
        ("reference", reference, [*features, target]),
        ("production", production, features),
    ):
        if missing := [c for c in needed if c not in frame.columns]:
            raise ValueError(
                f"the {name} rows lack {missing}; give the model's input columns"
                + (f" and the target {target!r}" if name == "reference" else "")
            )
    if predictions is None:
        predictions = model.predict(production[features]) if len(production) else []
    predicted = pd.Series(np.asarray(predictions, dtype=object), index=production.index)
    rows = production[predicted.notna()]
    settings: dict[str, Any] = {"task": task, "n_repeats": n_repeats, "max_rows": max_rows}
    settings["random_state"] = random_state
    ref = feature_importance(model, reference[features], reference[target], **settings)
    labels = predicted[predicted.notna()]
    if task == "regression":
        labels = labels.astype(float)
    prod = feature_importance(model, rows[features], labels, **settings)
    value = ndcg(ref, prod)
    used = int(reference[target].notna().sum())
    result = AttributionDrift(
        ref, prod, value, threshold, min(used, max_rows), min(len(rows), max_rows)
    )
    logger.info("feature attribution drift: NDCG %.4f (threshold %g)", value, threshold)
    return result
