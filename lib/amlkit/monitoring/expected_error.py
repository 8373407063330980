"""Expected error of a regression model before labels arrive (direct loss estimation).

The idea of NannyML's DLE: on labelled reference rows the model never trained on (the test
split), a second model learns the regression model's error from the inputs and the
prediction itself. Two gradient-boosted trees are fitted, one to the absolute error and one
to the squared error; both predict the conditional mean, so a window's expected ``mae`` is
the mean predicted absolute error and its expected ``rmse`` the root of the mean predicted
squared error (training's metric names, :mod:`amlkit.training.evaluate`).

The interval around the expected MAE adds two uncertainties: the window's own sampling
(each row's predicted error variance, ``E[e^2] - E[|e|]^2``, from the two trees) and the
level the reference fixes (the standard error of the reference's mean absolute error). Like
every estimate from reference rows, it holds only where the window looks like the reference:
rows with a number outside the reference's range, a category it never saw, or a prediction
outside the range of its predictions are counted, and when more of them turn up than rows
drawn like the reference would show, the estimate is marked unreliable, with the reason.
``benchmarks/regression_estimation_benchmark.py`` measures it against NannyML's DLE.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.model_selection import KFold
from threadpoolctl import threadpool_limits

from amlkit import kinds
from amlkit.monitoring.drift import MEASURED_KINDS, numeric_values

PREDICTION = "__prediction__"  # the model's prediction, an input of the error model
Z95 = 1.959964  # two-sided 95% normal quantile
FOLDS = 5  # cross-fitting folds that weigh the trees against the reference's level
MAX_CATEGORIES = 250  # HistGradientBoostingRegressor's limit on a categorical input's labels
MIN_OUTSIDE_SHARE = 0.05  # below this share of unfamiliar rows the estimate stays reliable
TREE_PARAMS: dict[str, Any] = {
    "learning_rate": 0.05,
    "max_iter": 100,
    "max_leaf_nodes": 8,
    "l2_regularization": 1.0,
}


@dataclass(frozen=True)
class _Column:
    """How one input is encoded: numbers as floats, labels as codes of the reference's set."""

    name: str
    kind: str
    low: float = math.nan
    high: float = math.nan
    categories: tuple[str, ...] = ()

    @property
    def is_category(self) -> bool:
        return self.kind in kinds.CATEGORY_KINDS

    def encode(self, values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        """Return the column as floats (codes for labels) and where it is outside the reference."""
        if self.is_category:
            labels = values.map(lambda v: kinds.normalize_value(v, self.kind == kinds.BOOLEAN))
            codes = pd.Categorical(labels, categories=list(self.categories)).codes.astype(float)
            unseen = (codes < 0) & labels.notna().to_numpy()
            codes[codes < 0] = np.nan
            return codes, unseen
        numbers = numeric_values(values.reset_index(drop=True), self.kind)
        with np.errstate(invalid="ignore"):
            outside = (numbers < self.low) | (numbers > self.high)
        return numbers, outside

    def describe(self, outside: np.ndarray) -> str:
        """Say in words how rows of this column fall outside the reference."""
        if self.is_category:
            return f"{self.name} has a category the reference never had in {outside.sum()} rows"
        low, high = self.low, self.high
        if self.kind == kinds.DATETIME:
            low_text, high_text = (str(pd.Timestamp(v, unit="s").date()) for v in (low, high))
        else:
            low_text, high_text = f"{low:.4g}", f"{high:.4g}"
        return (
            f"{self.name} outside the reference's {low_text} to {high_text} in {outside.sum()} rows"
        )


def _columns(frame: pd.DataFrame, feature_types: Mapping[str, str]) -> list[_Column]:
    out = []
    for name, kind in feature_types.items():
        if kind in kinds.CATEGORY_KINDS:
            boolean = kind == kinds.BOOLEAN
            labels = frame[name].map(lambda v, b=boolean: kinds.normalize_value(v, b)).dropna()
            out.append(_Column(name, kind, categories=tuple(sorted(set(labels.astype(str))))))
        elif kind in MEASURED_KINDS:
            values = numeric_values(frame[name].reset_index(drop=True), kind)
            finite = values[np.isfinite(values)]
            low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
            out.append(_Column(name, kind, low, high))
    return out


def _leave_one_out_share(matrix: np.ndarray, columns: list[_Column]) -> float:
    """Share of reference rows outside what the other reference rows saw (a unique extreme).

    A row drawn like the reference falls outside the reference at about this rate, so it is
    the baseline the window's share is compared with.
    """
    unique = np.zeros(len(matrix), dtype=bool)
    for k, column in enumerate(columns):
        values = matrix[:, k]
        present = ~np.isnan(values)
        if not present.any():
            continue
        found, counts = np.unique(values[present], return_counts=True)
        if column.is_category:
            singles = found[counts == 1]
            unique |= np.isin(values, singles) & present
        else:
            for end, count in ((found[0], counts[0]), (found[-1], counts[-1])):
                if count == 1:
                    unique |= values == end
    return float(unique.mean()) if len(matrix) else 0.0


@dataclass(frozen=True)
class ErrorModel:
    """Two fitted trees predicting a regression model's absolute and squared error per row.

    Built by :func:`fit`; :meth:`estimate` gives a window's expected MAE and RMSE.
    """

    columns: tuple[_Column, ...]
    absolute: HistGradientBoostingRegressor
    squared: HistGradientBoostingRegressor
    absolute_weight: float
    squared_weight: float
    reference_mae: float
    reference_rmse: float
    level_std: float
    reference_rows: int
    chance_share: float

    def _matrix(self, features: pd.DataFrame, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
        missing = [c.name for c in self.columns[:-1] if c.name not in features.columns]
        if missing:
            raise ValueError(
                f"the rows lack the model inputs {missing}; pass the same feature columns "
                "the error model was fitted on"
            )
        pred = np.asarray(y_pred, dtype=float).reshape(-1)
        if len(pred) != len(features):
            raise ValueError(f"{len(pred)} predictions for {len(features)} rows; pass one per row")
        parts = [c.encode(features[c.name]) for c in self.columns[:-1]]
        parts.append(self.columns[-1].encode(pd.Series(pred)))
        matrix = np.column_stack([p[0] for p in parts]) if parts else np.empty((len(pred), 0))
        outside = np.column_stack([p[1] for p in parts])
        return matrix, outside

    def predict_errors(self, features: pd.DataFrame, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
        """Return each row's expected absolute error and expected squared error."""
        return self._errors(self._matrix(features, y_pred)[0])

    def _errors(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # each tree's deviation from the reference level counts as far as it held on
        # held-out reference rows (weight 0: the reference's own error for every row)
        with threadpool_limits(1, "openmp"):  # see fit: one thread is the fast way here
            raw_absolute, raw_squared = self.absolute.predict(matrix), self.squared.predict(matrix)
        absolute = self.reference_mae + self.absolute_weight * (raw_absolute - self.reference_mae)
        squared = self.reference_rmse**2 + self.squared_weight * (
            raw_squared - self.reference_rmse**2
        )
        absolute = np.clip(absolute, 0, None)
        return absolute, np.maximum(squared, absolute**2)

    def estimate(self, window_features: pd.DataFrame, y_pred: Any) -> dict[str, Any] | None:
        """Estimate the window's MAE and RMSE (None for no rows).

        Returns:
            ``mae``, ``mae_low``, ``mae_high`` (95% interval), ``mae_std``, ``rmse``, ``n``,
            ``reliable``, ``unreliable_reason`` (None when reliable), ``outside_share`` (rows
            with any input outside the reference) and ``method``.
        """
        if not len(window_features):
            return None
        matrix, outside = self._matrix(window_features, y_pred)
        absolute, squared = self._errors(matrix)
        n = len(matrix)
        mae = float(absolute.mean())
        sampling_var = float((squared - absolute**2).sum()) / n**2
        std = math.sqrt(sampling_var + self.level_std**2)
        share = float(outside.any(axis=1).mean())
        limit = self.outside_limit(n)
        reason = None
        if share > limit:
            counts = outside.sum(axis=0)
            worst = [int(k) for k in np.argsort(-counts, kind="stable") if counts[k]][:3]
            named = "; ".join(self.columns[k].describe(outside[:, k]) for k in worst)
            reason = (
                f"{share:.0%} of the rows ({int(outside.any(axis=1).sum())} of {n}) lie outside "
                f"what the reference rows showed ({named}); rows like the reference would show "
                f"about {self.chance_share:.0%}"
            )
        return {
            "mae": mae,
            "mae_low": max(0.0, mae - Z95 * std),
            "mae_high": mae + Z95 * std,
            "mae_std": std,
            "rmse": float(math.sqrt(squared.mean())),
            "n": n,
            "reliable": reason is None,
            "unreliable_reason": reason,
            "outside_share": share,
            "method": "direct loss estimation (gradient-boosted trees on inputs and prediction)",
        }

    def outside_limit(self, n: int) -> float:
        """Share of unfamiliar rows above which a window of ``n`` rows is unreliable.

        Three binomial standard deviations above the share rows drawn like the reference
        show, and never below ``MIN_OUTSIDE_SHARE``.
        """
        p = self.chance_share
        return max(MIN_OUTSIDE_SHARE, p + 3 * math.sqrt(p * (1 - p) / max(n, 1)))


def _held_out_weight(tree: Any, matrix: np.ndarray, target: np.ndarray, seed: int) -> float:
    """How far a tree's per-row deviations from the mean hold on held-out rows, 0 to 1.

    Five-fold cross-fitting on the reference: the least-squares slope of the held-out
    errors' deviations on the predicted ones. On a few dozen rows the trees mostly fit noise
    and the slope is near 0, so the estimate stays at the reference's level; where the
    inputs do predict the error it approaches 1.
    """
    n = len(target)
    if n < 2 * FOLDS:
        return 0.0
    held_out = np.empty(n)
    for rows, others in KFold(FOLDS, shuffle=True, random_state=seed).split(matrix):
        held_out[others] = tree(target, rows).predict(matrix[others])
    predicted, observed = held_out - target.mean(), target - target.mean()
    spread = float((predicted**2).sum())
    return float(np.clip((predicted * observed).sum() / spread, 0, 1)) if spread > 0 else 0.0


def fit(
    reference_features: pd.DataFrame,
    y_true: Any,
    y_pred: Any,
    feature_types: Mapping[str, str],
    *,
    random_state: int = 0,
) -> ErrorModel:
    """Fit the error model on labelled reference rows (the test split the model never saw).

    Args:
        reference_features: the reference rows' inputs (columns of ``feature_types``).
        y_true: their targets.
        y_pred: the regression model's predictions for them.
        feature_types: input name -> kind (numeric, integer, datetime, categorical, boolean);
            text columns are left out, as training leaves them.
        random_state: seed of the trees.

    Raises:
        ValueError: lengths disagree, an input is missing, or fewer than two labelled rows.
    """
    truth = np.asarray(pd.to_numeric(pd.Series(y_true), errors="coerce"), dtype=float)
    pred = np.asarray(y_pred, dtype=float).reshape(-1)
    if not (len(truth) == len(pred) == len(reference_features)):
        raise ValueError(
            f"{len(reference_features)} reference rows, {len(truth)} targets and {len(pred)} "
            "predictions; pass one target and one prediction per row"
        )
    missing = [c for c in feature_types if c not in reference_features.columns]
    if missing:
        raise ValueError(f"the reference rows lack the inputs {missing}; pass every model input")
    keep = np.isfinite(truth) & np.isfinite(pred)
    if keep.sum() < 2:
        raise ValueError(
            f"{int(keep.sum())} reference rows have a number as target and prediction; "
            "fit the error model on at least two labelled rows"
        )
    rows = reference_features.reset_index(drop=True)[keep]
    truth, pred = truth[keep], pred[keep]
    columns = _columns(rows, feature_types)
    columns.append(_Column(PREDICTION, kinds.NUMERIC, float(pred.min()), float(pred.max())))
    encoded = [c.encode(rows[c.name]) for c in columns[:-1]]
    matrix = np.column_stack([*(e[0] for e in encoded), pred])
    # the trees split labels natively up to MAX_CATEGORIES of them, larger sets as codes
    category_mask = np.array(
        [c.is_category and len(c.categories) <= MAX_CATEGORIES for c in columns]
    )
    error = truth - pred

    def tree(target: np.ndarray, rows: Any = slice(None)) -> HistGradientBoostingRegressor:
        model = HistGradientBoostingRegressor(
            **TREE_PARAMS,
            min_samples_leaf=max(5, len(target) // 20),
            categorical_features=category_mask if category_mask.any() else None,
            random_state=random_state,
        )
        return model.fit(matrix[rows], target[rows])

    absolute, squared = np.abs(error), error**2
    # The trees are small and the reference a few thousand rows at most: OpenMP threads
    # cost more than they give, and on a busy machine many times more (7 s against 117 s
    # for a 3,000-row reference on two shared cores), so they run on one thread.
    with threadpool_limits(1, "openmp"):
        return _error_model(tree, matrix, columns, absolute, squared, random_state)


def _error_model(
    tree: Any,
    matrix: np.ndarray,
    columns: list[_Column],
    absolute: np.ndarray,
    squared: np.ndarray,
    random_state: int,
) -> ErrorModel:
    n = len(absolute)
    return ErrorModel(
        columns=tuple(columns),
        absolute=tree(absolute),
        squared=tree(squared),
        absolute_weight=_held_out_weight(tree, matrix, absolute, random_state),
        squared_weight=_held_out_weight(tree, matrix, squared, random_state),
        reference_mae=float(absolute.mean()),
        reference_rmse=float(np.sqrt(squared.mean())),
        level_std=float(absolute.std(ddof=1) / math.sqrt(n)),
        reference_rows=n,
        chance_share=_leave_one_out_share(matrix, columns),
    )
