"""Exploratory analysis: tables and seaborn/matplotlib figures for 02_exploratory_analysis.

Every function takes a typed frame (as :func:`amlkit.data.load_raw` returns) and the schema's
column kinds, and returns a DataFrame or a matplotlib Figure; nothing is shown or saved here.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from amlkit import kinds


def summary(frame: pd.DataFrame, column_kinds: dict[str, str]) -> pd.DataFrame:
    """Return one row per column: kind, non-null count, missing share, distinct values, stats."""
    rows = []
    for column, kind in column_kinds.items():
        values = frame[column]
        row = {
            "column": column,
            "kind": kind,
            "non_null": int(values.notna().sum()),
            "missing_pct": round(100 * float(values.isna().mean()), 2),
            "distinct": int(values.nunique()),
        }
        if kind in kinds.NUMERIC_KINDS:
            x = pd.to_numeric(values, errors="coerce")
            row |= {
                "mean": x.mean(),
                "std": x.std(),
                "min": x.min(),
                "median": x.median(),
                "max": x.max(),
            }
        elif kind == "datetime":
            row |= {"min": values.min(), "max": values.max()}
        elif kind in kinds.CATEGORY_KINDS and values.notna().any():
            row["top"] = values.astype(str).mode().iloc[0]
        rows.append(row)
    return pd.DataFrame(rows).set_index("column").round(3)


def missingness_figure(frame: pd.DataFrame) -> Figure:
    """Bar chart of the share of missing values per column."""
    share = frame.isna().mean().sort_values(ascending=False) * 100
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(share) + 1.2))
    sns.barplot(x=share.values, y=share.index, ax=ax, color="tab:orange", orient="h")
    ax.set(xlabel="missing (%)", ylabel="", title="Missing values per column")
    for i, value in enumerate(share.values):
        ax.text(value, i, f" {value:.1f}%", va="center", fontsize=8)
    return fig


def target_balance(frame: pd.DataFrame, target: str, task: str) -> Figure:
    """Class counts for classification, a histogram for regression."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    if task == "classification":
        counts = frame[target].astype(str).value_counts().sort_index()
        sns.barplot(x=counts.index, y=counts.values, ax=ax, color="tab:blue")
        ax.set(xlabel=target, ylabel="rows", title=f"Target balance: {target}")
    else:
        sns.histplot(frame[target].dropna(), bins=30, ax=ax)
        ax.set(xlabel=target, title=f"Target distribution: {target}")
    return fig


def _grid(n: int, ncols: int = 3) -> tuple[Figure, np.ndarray]:
    nrows = max(1, math.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 3 * nrows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return fig, axes.ravel()


def numeric_distributions(
    frame: pd.DataFrame, column_kinds: dict[str, str], target: str, task: str
) -> Figure | None:
    """Histograms of numeric columns, split by class for classification."""
    columns = [c for c, k in column_kinds.items() if k in kinds.NUMERIC_KINDS and c != target]
    if not columns:
        return None
    fig, axes = _grid(len(columns))
    hue = frame[target].astype(str) if task == "classification" else None
    for ax, column in zip(axes, columns, strict=False):
        sns.histplot(
            x=frame[column],
            hue=hue,
            ax=ax,
            bins=25,
            element="step",
            stat="count",
            legend=ax is axes[0],
        )
        ax.set_title(column)
        ax.set_xlabel("")
    fig.suptitle("Numeric distributions")
    fig.tight_layout()
    return fig


def categorical_counts(
    frame: pd.DataFrame, column_kinds: dict[str, str], target: str, *, top: int = 12
) -> Figure | None:
    """Counts of the most frequent values of each categorical or boolean column."""
    columns = [c for c, k in column_kinds.items() if k in kinds.CATEGORY_KINDS and c != target]
    if not columns:
        return None
    fig, axes = _grid(len(columns))
    for ax, column in zip(axes, columns, strict=False):
        counts = frame[column].astype("string").fillna("<missing>").value_counts().head(top)
        sns.barplot(x=counts.values, y=counts.index, ax=ax, color="tab:green", orient="h")
        ax.set_title(column)
        ax.set_ylabel("")
    fig.suptitle("Categorical values")
    fig.tight_layout()
    return fig


def correlation_figure(frame: pd.DataFrame, column_kinds: dict[str, str]) -> Figure | None:
    """Heat map of Pearson correlations between numeric columns."""
    columns = [c for c, k in column_kinds.items() if k in kinds.NUMERIC_KINDS]
    if len(columns) < 2:
        return None
    corr = frame[columns].apply(pd.to_numeric, errors="coerce").corr().round(2)
    size = 1.0 + 0.7 * len(columns)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    sns.heatmap(corr, annot=True, fmt=".2f", cmap="vlag", vmin=-1, vmax=1, ax=ax, square=True)
    ax.set_title("Correlation between numeric columns")
    return fig
