"""Baseline profile of a data split: the reference that monitoring compares production data to.

Per column: kind, role, null rate, and by kind the range, moments, quantiles and decile bins,
the category frequencies, or the date range (docs/contracts.md).

Numbers, dates and labels also get a ``sketch``: what drift needs in place of the reference
rows (:mod:`amlkit.monitoring.drift_stream` streams production data against it). For numbers
and dates (epoch seconds), counts in ``SKETCH_BINS`` fine bins on the reference's quantiles,
exact at its min and just above its max, with the sum of each bin's values measured from the
bin's left edge (from the min for values below it), plus the reference's decile edges that
PSI and Jensen-Shannon bin on; for labels, the count of each. Bins merge by addition, so
chunks of production data can be counted apart and added.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from amlkit import kinds

QUANTILES = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)
SKETCH_VERSION = 1
SKETCH_BINS = 200  # fine quantile bins per numeric column: ~10 KB of JSON each


def _num(value: float) -> float | None:
    # Not rounded: a reference's own extremes must stay inside its stored bounds.
    return None if value is None or not np.isfinite(value) else float(value)


def sketch_bin_counts(edges: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (counts, offset sums) of ``values`` (no NaN) in the bins a sketch's ``edges`` make.

    Bin 0 holds values below ``edges[0]``, bin ``k`` values in ``[edges[k-1], edges[k])``,
    the last one values from ``edges[-1]`` up. Each bin's offset sum adds ``value - anchor``,
    the anchor being the bin's left edge (``edges[0]`` for bin 0), so the sum stays exact for
    large values such as epoch seconds.
    """
    idx = np.searchsorted(edges, values, side="right")
    anchors = np.concatenate((edges[:1], edges))
    size = edges.size + 1
    counts = np.bincount(idx, minlength=size)
    offsets = np.bincount(idx, weights=values - anchors[idx], minlength=size)
    return counts, offsets


def numeric_sketch(values: np.ndarray, *, bins: int = 10) -> dict[str, Any]:
    """Return the drift sketch of a number or date column (floats, NaN for missing).

    Non-finite values are left out, as drift leaves out missing ones. ``bins``: the decile
    bins that PSI and Jensen-Shannon use (``monitoring.bins``).
    """
    from amlkit.data.values import quantile_edges  # the binning drift itself uses

    ref = np.sort(values[np.isfinite(values)])
    sketch: dict[str, Any] = {"version": SKETCH_VERSION, "n": int(ref.size), "psi_bins": bins}
    if not ref.size:
        return sketch
    fine = np.quantile(ref, np.linspace(0, 1, SKETCH_BINS + 1))
    psi_edges = quantile_edges(ref, bins)
    edges = np.unique(np.concatenate((fine, psi_edges, [np.nextafter(ref[-1], np.inf)])))
    counts, offsets = sketch_bin_counts(edges, ref)
    return sketch | {
        "std": float(np.std(ref, ddof=1)) if ref.size > 1 else 0.0,
        "edges": edges.tolist(),
        "counts": counts.tolist(),
        "offsets": offsets.tolist(),
        "psi_edges": psi_edges.tolist(),
    }


def category_sketch(labels: pd.Series) -> dict[str, Any]:
    """Return the drift sketch of a label column: the count of each label."""
    counts = labels.value_counts().sort_index()
    return {
        "version": SKETCH_VERSION,
        "n": int(counts.sum()),
        "counts": {str(k): int(v) for k, v in counts.items()},
    }


def _sketch(values: pd.Series, kind: str, bins: int) -> dict[str, Any]:
    # Values are read as drift reads them, so the sketch counts what compute_drift compares.
    from amlkit.data.values import category_labels, numeric_values

    if kind in kinds.CATEGORY_KINDS:
        return category_sketch(category_labels(values, kind))
    return numeric_sketch(numeric_values(values, kind), bins=bins)


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
    if kind in (*kinds.NUMERIC_KINDS, kinds.DATETIME, *kinds.CATEGORY_KINDS):
        entry["sketch"] = _sketch(values, kind, bins)
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
