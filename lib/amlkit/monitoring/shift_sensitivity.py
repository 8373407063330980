"""How a model's accuracy reacts to feature shift, learned on perturbed reference rows.

Confidence alone misses a drop in accuracy when shifted inputs keep the model confident
(a sensor offset that makes dry days look rainy). The labelled reference rows show how much
this model loses when its inputs move: :func:`fit_sensitivity` draws synthetic windows
(bootstraps of the reference rows, at most 500 rows each), bends features of most of them,
scores them with the model, and fits a ridge regression from the window's shift statistics
to the accuracy the confidence-based estimate misses (realized minus estimated, both known
there). The idea is that of learning accuracy prediction from synthetic shifts (Deng and
Zheng, CVPR 2021; Guillory et al., ICCV 2021, "difference of confidences").

The perturbations are the kinds that monitoring watches for: per synthetic window, one in
five is left as drawn; of the others, one in three is a label shift (rows drawn with class
priors from a flat Dirichlet, inputs as they were); the rest get an intensity ``u`` uniform
in [0, 2.5] and each feature is bent with probability 1/2 (at least one): a numeric
feature is shifted by ``±u`` reference standard deviations (half the time), stretched from
its mean by ``1 + u/2`` (a quarter) or loses ``min(0.2u, 0.9)`` of its values (a quarter);
a categorical feature gets that share of an unseen label or of missing values (datetime
features stay; for a model that cannot take missing values, shifts replace them). Labels
stay as they were, so the correction assumes a shift that moves inputs but not outcomes (a
pipeline or sensor change), and it says nothing about concept drift.

Shift statistics per feature: numeric, ``|mean - reference mean| / reference std``,
``|log(std / reference std)|`` and the share of missing values beyond the reference's;
categorical, the share of unseen labels, the excess missing share and the total variation
distance over the reference labels; plus the drop in mean top probability. Each is
soft-thresholded at the 95th percentile it reaches on the unbent synthetic windows, so the
sampling noise of an undrifted window moves nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import RidgeCV

from amlkit import kinds

logger = logging.getLogger(__name__)

UNSEEN = "__unseen__"
MAX_INTENSITY = 2.5
QUIET_QUANTILE = 0.95
MAX_WINDOW_ROWS = 500  # synthetic windows draw this many rows at most


def _numbers(values: pd.Series) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(values):
        stamps = pd.to_datetime(values)
        days = stamps.astype("int64").to_numpy(dtype=float) / 8.64e13
        return np.where(stamps.isna().to_numpy(), np.nan, days)
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)


@dataclass
class ReferenceSpace:
    """What the reference rows hold per feature: ranges, means, labels, missing shares."""

    feature_types: dict[str, str]
    numeric: dict[str, tuple[float, float, float, float, float]] = field(default_factory=dict)
    labels: dict[str, pd.Series] = field(default_factory=dict)  # label -> share
    missing: dict[str, float] = field(default_factory=dict)

    @classmethod
    def fit(cls, features: pd.DataFrame, feature_types: Mapping[str, str]) -> ReferenceSpace:
        """Record the reference rows' features (text columns are left out).

        Raises:
            ValueError: a feature of ``feature_types`` is not a column of ``features``.
        """
        used = {c: k for c, k in feature_types.items() if k in kinds.FEATURE_KINDS}
        missing = sorted(set(used) - set(features.columns))
        if missing:
            raise ValueError(f"reference features lack columns {missing}; pass every feature")
        space = cls(dict(used))
        for column, kind in used.items():
            values = features[column]
            space.missing[column] = float(values.isna().mean())
            if kind in kinds.CATEGORY_KINDS:
                seen = values[values.notna()].astype(str)
                space.labels[column] = seen.value_counts(normalize=True)
            else:
                x = _numbers(values)
                std = float(np.nanstd(x)) if np.isfinite(x).any() else 0.0
                mean = float(np.nanmean(x)) if np.isfinite(x).any() else 0.0
                low = float(np.nanmin(x)) if np.isfinite(x).any() else np.nan
                high = float(np.nanmax(x)) if np.isfinite(x).any() else np.nan
                space.numeric[column] = (mean, std if std > 0 else 1.0, low, high, std)
        return space

    def outside(self, features: pd.DataFrame) -> tuple[np.ndarray, dict[str, float]]:
        """Return per row whether any value lies outside what the reference rows hold.

        Outside means: a number below the reference minimum or above its maximum, a label
        the reference rows never had, or a missing value in a column that had none there.

        Returns:
            The boolean per row, and per column the share of rows outside (columns with any).
        """
        flags = np.zeros(len(features), dtype=bool)
        per_column: dict[str, float] = {}
        for column in self.feature_types:
            values = features[column]
            absent = values.isna().to_numpy()
            out = absent & (self.missing[column] == 0)
            if column in self.labels:
                seen = values.astype(str).isin(self.labels[column].index).to_numpy()
                out |= ~absent & ~seen
            else:
                _, _, low, high, _ = self.numeric[column]
                x = _numbers(values)
                with np.errstate(invalid="ignore"):
                    out |= (x < low) | (x > high)
            if out.any():
                per_column[column] = float(out.mean())
            flags |= out
        return flags, per_column

    def statistics(self, features: pd.DataFrame) -> np.ndarray:
        """Return the window's shift statistics against the reference, three per feature."""
        out: list[float] = []
        for column in self.feature_types:
            values = features[column]
            excess_missing = max(0.0, float(values.isna().mean()) - self.missing[column])
            if column in self.labels:
                reference = self.labels[column]
                seen = values[values.notna()].astype(str)
                share = seen.value_counts(normalize=True) if len(seen) else pd.Series(dtype=float)
                unseen = float(share[~share.index.isin(reference.index)].sum())
                tvd = 0.5 * float(
                    (share.reindex(reference.index, fill_value=0) - reference).abs().sum()
                )
                out += [unseen, excess_missing, tvd]
            else:
                mean, std, _, _, _ = self.numeric[column]
                x = _numbers(values)
                x = x[np.isfinite(x)]
                if len(x) < 2:
                    out += [3.0, 3.0, excess_missing]
                    continue
                spread = float(x.std()) or 1e-9
                out += [
                    abs(float(x.mean()) - mean) / std,
                    abs(np.log(spread / std)),
                    excess_missing,
                ]
        return np.asarray(out, dtype=float)


def perturb(
    rows: pd.DataFrame,
    space: ReferenceSpace,
    rng: np.random.Generator,
    intensity: float,
    *,
    missing: bool = True,
) -> pd.DataFrame:
    """Return ``rows`` with some features bent (the module docstring gives the family).

    ``missing=False`` bends without missing values (for a model that cannot take them).
    """
    out = rows.copy()
    n = len(out)
    share = min(0.2 * intensity, 0.9)
    bendable = [c for c, k in space.feature_types.items() if k != kinds.DATETIME]
    if not bendable:
        return out
    chosen = [c for c in bendable if rng.random() < 0.5] or [bendable[rng.integers(len(bendable))]]
    for column in chosen:
        if column in space.labels:
            hit = rng.random(n) < share
            replacement = UNSEEN if rng.random() < 0.5 or not missing else None
            out[column] = out[column].astype(object).where(~hit, replacement)
            continue
        mean, std, _, _, _ = space.numeric[column]
        x = pd.to_numeric(out[column], errors="coerce").astype(float)
        pick = rng.random()
        if pick < 0.5:
            x = x + rng.choice([-1.0, 1.0]) * intensity * std
        elif pick < 0.75:
            x = mean + (x - mean) * (1 + intensity / 2)
        elif missing:
            x = x.where(rng.random(n) >= share)
        else:
            x = x + rng.choice([-1.0, 1.0]) * intensity * std
        if space.feature_types[column] == kinds.INTEGER:
            x = x.round()
        out[column] = x
    return out


@dataclass(frozen=True)
class Sensitivity:
    """The fitted correction: estimate + ridge(soft-thresholded shift statistics)."""

    space: ReferenceSpace
    reference_confidence: float
    quiet: np.ndarray  # per statistic, its 95th percentile on unbent windows
    coef: np.ndarray
    residual_std: float  # the corrected estimate's error on bent windows, less sampling noise

    def signals(self, features: pd.DataFrame, confidence: np.ndarray) -> np.ndarray:
        """Return the window's soft-thresholded statistics."""
        raw = np.r_[
            self.reference_confidence - float(np.mean(confidence)), self.space.statistics(features)
        ]
        return np.sign(raw) * np.maximum(0.0, np.abs(raw) - self.quiet)

    def correction(self, features: pd.DataFrame, confidence: np.ndarray) -> float:
        """Return the accuracy the confidence-based estimate misses on this window."""
        return float(self.signals(features, confidence) @ self.coef)


def fit_sensitivity(
    space: ReferenceSpace,
    features: pd.DataFrame,
    label_index: np.ndarray,
    predict_proba: Callable[[pd.DataFrame], Any],
    base: Callable[[np.ndarray], float],
    *,
    windows: int = 200,
    seed: int = 0,
) -> Sensitivity:
    """Learn the correction from ``windows`` synthetic windows of the reference rows.

    Args:
        space: the reference rows' :class:`ReferenceSpace`.
        features: the reference rows' features (the model's input columns).
        label_index: per reference row, its label's column in the probabilities (-1 for
            a label the model does not know).
        predict_proba: the model's ``predict_proba``.
        base: the confidence-based estimate of a window from its probabilities.
        windows: synthetic windows to draw (each the size of the reference, at most 500).
        seed: seeds the draws.
    """
    rows = features.reset_index(drop=True)
    n = len(rows)
    m = min(n, MAX_WINDOW_ROWS)
    known = np.maximum(label_index, 0)  # a label the model lacks counts with the first class
    classes = int(known.max()) + 1

    def draw(missing: bool) -> tuple[list[np.ndarray], list[pd.DataFrame], np.ndarray]:
        rng = np.random.default_rng(seed)
        picks, drawn = [], []
        for i in range(windows):
            if i % 5 and i % 3 == 0 and classes > 1:  # class priors moved, inputs as drawn
                prior = rng.dirichlet(np.ones(classes))[known]
                weight = prior / np.bincount(known)[known]
                picked = rng.choice(n, m, p=weight / weight.sum())
                picks.append(picked)
                drawn.append(rows.iloc[picked].reset_index(drop=True))
                continue
            picked = rng.integers(0, n, m)
            window = rows.iloc[picked].reset_index(drop=True)
            if i % 5:  # one in five stays unbent
                intensity = rng.uniform(0, MAX_INTENSITY)
                window = perturb(window, space, rng, intensity, missing=missing)
            picks.append(picked)
            drawn.append(window)
        # one call scores them all (a forest's per-call cost dwarfs its per-row cost)
        every = pd.concat([rows, *drawn], ignore_index=True)
        return picks, drawn, np.asarray(predict_proba(every), dtype=float)

    try:
        picks, drawn, scored = draw(missing=True)
    except ValueError as error:  # a model without an imputer
        logger.info("model cannot score missing values (%s); bending without them", error)
        picks, drawn, scored = draw(missing=False)
    reference_confidence = float(scored[:n].max(axis=1).mean())
    stats, gaps, noise = [], [], []
    for i, (picked, window) in enumerate(zip(picks, drawn, strict=True)):
        proba = scored[n + m * i : n + m * (i + 1)]
        right = proba.argmax(axis=1) == label_index[picked]  # bent rows keep their labels
        confidence = proba.max(axis=1)
        stats.append(np.r_[reference_confidence - confidence.mean(), space.statistics(window)])
        estimate = base(proba)
        gaps.append(float(right.mean()) - estimate)
        noise.append(estimate * (1 - estimate) / m)  # the window's own sampling variance
    is_bent = np.arange(windows) % 5 != 0
    table, target = np.asarray(stats), np.asarray(gaps)
    quiet_level = np.quantile(np.abs(table[~is_bent]), QUIET_QUANTILE, axis=0)
    signals = np.sign(table) * np.maximum(0.0, np.abs(table) - quiet_level)
    ridge = RidgeCV(alphas=np.logspace(-2, 3, 11), fit_intercept=False).fit(signals, target)
    residual = target - ridge.predict(signals)
    return Sensitivity(
        space=space,
        reference_confidence=reference_confidence,
        quiet=quiet_level,
        coef=np.asarray(ridge.coef_, dtype=float),
        residual_std=float(np.sqrt(max(0.0, np.mean(residual[is_bent] ** 2) - np.mean(noise)))),
    )
