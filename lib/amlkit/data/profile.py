"""Baseline profile of a data split: the reference that monitoring compares production data to.

Per column: kind, role, null rate, and by kind the range, moments, quantiles and decile bins,
the category frequencies, or the date range (docs/contracts.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from amlkit import kinds

QUANTILES = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)


def _num(value: float) -> float | None:
    # Not rounded: a reference's own extremes must stay inside its stored bounds.
    return None if value is None or not np.isfinite(value) else float(value)


def column_profile(values: pd.Series, kind: str, *, bins: int = 10) -> dict[str, Any]:
    """Profile one column of the given kind."""
    entry: dict[str, Any] = {
        "kind": kind,
        "dtype": str(values.dtype),
        "null_rate": round(float(values.isna().mean()), 10) if len(values) else 0.0,
    }
    present = values.dropna()
    if kind in kinds.NUMERIC_KINDS:
        x = present.to_numpy(dtype=float)
        if x.size:
            qs = np.quantile(x, QUANTILES)
            edges = np.unique(np.quantile(x, np.linspace(0, 1, bins + 1)))
            counts = np.histogram(x, bins=edges)[0] if edges.size > 1 else np.array([x.size])
            entry |= {
                "min": _num(x.min()),
                "max": _num(x.max()),
                "mean": _num(x.mean()),
                "std": _num(x.std(ddof=1)) if x.size > 1 else 0.0,
                "quantiles": {str(q): _num(v) for q, v in zip(QUANTILES, qs, strict=True)},
                "bin_edges": [_num(e) for e in edges],
                "bin_counts": [int(c) for c in counts],
            }
    elif kind in kinds.CATEGORY_KINDS:
        freq = present.astype(str).value_counts(normalize=True).sort_index()
        entry |= {
            "n_unique": int(freq.size),
            "categories": {str(k): round(float(v), 10) for k, v in freq.items()},
        }
    elif kind == "datetime":
        if not present.empty:
            entry |= {"min": present.min().isoformat(), "max": present.max().isoformat()}
    else:
        entry["n_unique"] = int(present.nunique())
    return entry


def build_profile(
    frame: pd.DataFrame, *, feature_types: dict[str, str], target: str, task: str
) -> dict[str, Any]:
    """Build the baseline profile of the training split: every feature, then the target.

    ``write_processed`` adds the data set, the version and the reference file.
    """
    columns = {}
    for column, kind in feature_types.items():
        columns[column] = {"role": "feature", **column_profile(frame[column], kind)}
    target_kind = kinds.target_kind(task)
    columns[target] = {"role": "target", **column_profile(frame[target], target_kind)}
    return {"target": target, "task": task, "rows": len(frame), "columns": columns}
