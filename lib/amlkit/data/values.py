"""How the baseline profile and drift read a column's values, so both count them the same way.

Numbers and dates as float64 (dates as epoch seconds), labels as strings, and the reference's
quantile bin edges. :mod:`amlkit.data.profile` stores its drift sketch with these;
:mod:`amlkit.monitoring.drift` compares production data with them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def numeric_values(values: Any, kind: str = "numeric") -> np.ndarray:
    """Return ``values`` as float64, non-numbers as NaN (``datetime``: epoch seconds)."""
    series = values if isinstance(values, pd.Series) else pd.Series(values)
    if kind == "datetime":
        parsed = pd.to_datetime(series, errors="coerce", utc=True)
        seconds = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
        return seconds.to_numpy(dtype="float64", na_value=np.nan)
    if series.dtype.kind in "fiub":
        return series.to_numpy(dtype="float64", na_value=np.nan)
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def quantile_edges(sorted_ref: np.ndarray, bins: int) -> np.ndarray:
    """Return the distinct inner bin edges at the reference's quantiles."""
    edges = np.quantile(sorted_ref, np.linspace(0, 1, bins + 1))
    return np.unique(edges[1:-1])


def category_labels(values: Any, kind: str = "categorical") -> pd.Series:
    """Return non-missing values as strings (booleans as ``"true"``/``"false"``)."""
    labels = (values if isinstance(values, pd.Series) else pd.Series(values)).dropna().astype(str)
    return labels.str.lower() if kind == "boolean" else labels
