"""Drift of production data larger than memory, against the stored baseline profile.

:func:`amlkit.monitoring.drift.compute_drift` holds the reference and the production rows in
memory. :class:`StreamingDrift` needs neither: it counts production values, chunk by chunk,
in the bins of the profile's ``sketch`` (:func:`amlkit.data.profile.numeric_sketch`), and
computes the same table, decided by the same rule, from the counts. Counts merge by addition
(:meth:`StreamingDrift.merge`), so chunks, files or workers can be counted apart.

From the binned counts, for numbers and dates:

- PSI and Jensen-Shannon are exact: the fine bins hold the reference's decile edges, so the
  decile counts are sums of fine counts, equal to compute_drift's.
- Wasserstein (the decision metric) is the integral of ``|F_ref - F_cur|``. Each bin's count and
  sum of values give the integral of each CDF over the bin exactly, so a bin where the two CDFs
  do not cross contributes exactly; where they cross inside a bin, the integral's magnitude plus
  twice the smaller lobe of a linearly interpolated gap. Values beyond the
  reference's min and max are integrated exactly.
- KS is the largest CDF gap at the bin edges, a lower bound short by at most a bin's share;
  its p-value is scipy's large-sample ``kstwo`` on the statistic (compute_drift's formula above
  10,000 rows; below that compute_drift runs the exact test on the rows).

Labels are counted exactly, so their distances and chi-squared equal compute_drift's.
Non-finite numbers are left out, as missing ones are. Measured (benchmarks/
drift_scale_benchmark.py): the flags of compute_drift on 1M rows, 10M rows in bounded memory.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from amlkit import kinds
from amlkit.data.profile import SKETCH_VERSION, sketch_bin_counts
from amlkit.data.values import category_labels, numeric_values
from amlkit.monitoring import drift

logger = logging.getLogger(__name__)

BATCH_ROWS = 262_144  # rows per chunk read from a file: ~2 MB per numeric column
FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
FIX = (
    "re-run 03_data_preprocessing to write a profile with sketches (remove the processed "
    "version's folder first: a written version is never rewritten), or build one from the "
    "reference rows with amlkit.monitoring.quality.build_profile(train, feature_types)"
)


@dataclass
class _Counts:
    """What one column's production values added up to so far."""

    seen: bool = False
    values: int = 0  # numbers counted
    numeric: np.ndarray | None = None  # counts per bin of the sketch
    offsets: np.ndarray | None = None  # sums of value - bin anchor per bin
    labels: Counter[str] = field(default_factory=Counter)


def _columns(profile: Mapping[str, Any]) -> Mapping[str, Any]:
    columns = profile.get("columns", profile)
    if not isinstance(columns, Mapping):
        raise ValueError("the profile has no 'columns'; pass baseline_profile.json as read")
    return columns


def _check_sketch(column: str, kind: str, spec: Mapping[str, Any] | None) -> None:
    sketch = (spec or {}).get("sketch")
    if not isinstance(sketch, Mapping) or sketch.get("version") != SKETCH_VERSION:
        raise ValueError(
            f"the baseline profile has no drift sketch (version {SKETCH_VERSION}) for column "
            f"{column!r} ({kind}); it was written before streaming drift existed. {FIX}"
        )


class StreamingDrift:
    """Drift of production rows seen in chunks against a baseline profile's sketches.

    Args:
        profile: ``baseline_profile.json`` as read (or its ``"columns"``).
        column_kinds: ``{column: kind}`` to compare (default: the profile's features).

    Raises:
        ValueError: an unknown kind, or a compared column whose profile has no sketch (the
            message names the fix).
    """

    def __init__(
        self, profile: Mapping[str, Any], column_kinds: Mapping[str, str] | None = None
    ) -> None:
        columns = _columns(profile)
        if column_kinds is None:
            column_kinds = {
                name: spec["kind"]
                for name, spec in columns.items()
                if spec.get("role", "feature") == "feature"
            }
        drift._check_kinds(column_kinds)
        self.column_kinds = dict(column_kinds)
        self.profile_rows = int(profile.get("rows", 0))
        self.specs: dict[str, Mapping[str, Any] | None] = {}
        self.edges: dict[str, np.ndarray] = {}
        for column, kind in self.column_kinds.items():
            spec = columns.get(column)
            self.specs[column] = spec
            if spec is None or kind == kinds.TEXT:
                continue
            _check_sketch(column, kind, spec)
            if kind in drift.MEASURED_KINDS and spec["sketch"]["n"]:
                self.edges[column] = np.asarray(spec["sketch"]["edges"], dtype=float)
        self.rows = 0
        self.counts = {column: _Counts() for column in self.column_kinds}

    def update(self, chunk: pd.DataFrame) -> StreamingDrift:
        """Count one chunk of production rows; return self."""
        self.rows += len(chunk)
        for column, kind in self.column_kinds.items():
            if column not in chunk.columns:
                continue
            state = self.counts[column]
            state.seen = True
            if kind == kinds.TEXT or self.specs[column] is None:
                continue
            if kind in kinds.CATEGORY_KINDS:
                state.labels.update(category_labels(chunk[column], kind).value_counts().to_dict())
            else:
                values = numeric_values(chunk[column], kind)
                values = values[np.isfinite(values)]
                state.values += values.size
                if column not in self.edges:  # the reference had no values
                    continue
                counts, offsets = sketch_bin_counts(self.edges[column], values)
                if state.numeric is None or state.offsets is None:
                    state.numeric, state.offsets = counts, offsets
                else:
                    state.numeric += counts
                    state.offsets += offsets
        return self

    def merge(self, other: StreamingDrift) -> StreamingDrift:
        """Add the counts of ``other`` (same profile and columns); return self."""
        if other.column_kinds != self.column_kinds or any(
            not np.array_equal(other.edges.get(c, []), e) for c, e in self.edges.items()
        ):
            raise ValueError("merge counts made against the same profile and columns only")
        self.rows += other.rows
        for column, theirs in other.counts.items():
            mine = self.counts[column]
            mine.seen |= theirs.seen
            mine.values += theirs.values
            mine.labels.update(theirs.labels)
            if theirs.numeric is not None and theirs.offsets is not None:
                if mine.numeric is None or mine.offsets is None:
                    mine.numeric, mine.offsets = theirs.numeric.copy(), theirs.offsets.copy()
                else:
                    mine.numeric += theirs.numeric
                    mine.offsets += theirs.offsets
        return self

    def result(self, thresholds: drift.ThresholdsLike = None, bins: int = 10) -> pd.DataFrame:
        """Return the drift table of the rows counted so far, as compute_drift returns it.

        ``bins`` must be the number of PSI bins the profile was written with (10 unless
        ``monitoring.bins`` said otherwise).
        """
        limits = drift.resolve_thresholds(thresholds)
        rows = []
        for column, kind in self.column_kinds.items():
            spec, state = self.specs[column], self.counts[column]
            missing = [
                name
                for name, gone in (("reference", spec is None), ("current", not state.seen))
                if gone
            ]
            if missing:
                note = f"column missing from {' and '.join(missing)} data"
                rows.append(drift._row(column, kind, 0, 0, note))
            elif kind == kinds.TEXT:
                rows.append(
                    drift._row(column, kind, self.profile_rows, self.rows, "text: not compared")
                )
            elif kind in kinds.CATEGORY_KINDS:
                rows.append(drift._decide(_label_row(column, kind, spec, state), limits))
            else:
                rows.append(drift._decide(_numeric_row(column, kind, spec, state, bins), limits))
        result = pd.DataFrame(rows, columns=drift.RESULT_COLUMNS)
        result["drifted"] = result["drifted"].astype(bool)
        logger.info(
            "streaming drift over %d rows: %d of %d columns drifted",
            self.rows,
            result["drifted"].sum(),
            len(result),
        )
        return result


def _label_row(column: str, kind: str, spec: Any, state: _Counts) -> dict[str, Any]:
    reference: dict[str, int] = spec["sketch"]["counts"]
    n_ref, n_cur = sum(reference.values()), sum(state.labels.values())
    row = drift._row(column, kind, n_ref, n_cur)
    if not n_ref or not n_cur:
        row["note"] = "no values to compare (all missing)"
        return row
    categories = sorted(set(reference) | set(state.labels))
    a = np.array([reference.get(c, 0) for c in categories], dtype=float)
    b = np.array([state.labels.get(c, 0) for c in categories], dtype=float)
    chi2, p_value = 0.0, 1.0
    if len(categories) > 1:
        test = stats.chi2_contingency(np.vstack([a, b]), correction=False)
        chi2, p_value = float(test.statistic), float(test.pvalue)
    row.update(
        jensen_shannon_distance=drift.js_distance(a, b),
        population_stability_index=drift.psi(a, b),
        chi_squared_statistic=chi2,
        pearsons_chi_squared_test=p_value,
    )
    return row


def binned_wasserstein(
    edges: np.ndarray,
    ref: tuple[np.ndarray, np.ndarray, int],
    cur: tuple[np.ndarray, np.ndarray, int],
) -> tuple[float, float]:
    """Return (KS at the edges, Wasserstein-1) of two samples counted in the same bins.

    ``ref`` and ``cur`` are (counts, offset sums, total) as
    :func:`amlkit.data.profile.sketch_bin_counts` makes them.
    """
    (c_r, o_r, n_r), (c_c, o_c, n_c) = ref, cur
    below_r = np.cumsum(c_r)[:-1] / n_r  # share of values < each edge
    below_c = np.cumsum(c_c)[:-1] / n_c
    gap = below_r - below_c
    ks = float(np.max(np.abs(gap)))
    width = np.diff(edges)
    # Over [a, b): integral of F = width * F(a-) + (width * count - offset sum) / n
    area_r = width * below_r[:-1] + (width * c_r[1:-1] - o_r[1:-1]) / n_r
    area_c = width * below_c[:-1] + (width * c_c[1:-1] - o_c[1:-1]) / n_c
    signed = np.abs(area_r - area_c)
    left, right = gap[:-1], gap[1:]
    cross = left * right < 0
    # Where the gap changes sign inside a bin, add twice the smaller lobe a linear gap would have.
    with np.errstate(divide="ignore", invalid="ignore"):
        lobe = width * np.minimum(left**2, right**2) / (2 * (np.abs(left) + np.abs(right)))
    inner = np.where(cross, signed + 2 * lobe, signed)
    # Below the first edge F = sum(edge - x) / n; from the last edge up 1 - F = sum(x - edge) / n.
    tails = abs(o_c[0] / n_c - o_r[0] / n_r) + abs(o_c[-1] / n_c - o_r[-1] / n_r)
    return ks, float(np.sum(inner) + tails)


def _numeric_row(column: str, kind: str, spec: Any, state: _Counts, bins: int) -> dict:
    sketch = spec["sketch"]
    n_ref = int(sketch["n"])
    n_cur = state.values
    row = drift._row(column, kind, n_ref, n_cur)
    if not n_ref or not n_cur or state.numeric is None or state.offsets is None:
        row["note"] = "no values to compare (all missing)"
        return row
    if bins != sketch["psi_bins"]:
        raise ValueError(
            f"column {column!r}: the profile's sketch holds {sketch['psi_bins']} PSI bins, but "
            f"{bins} were asked; set monitoring.bins to {sketch['psi_bins']} or {FIX}"
        )
    edges = np.asarray(sketch["edges"], dtype=float)
    c_r = np.asarray(sketch["counts"], dtype=np.int64)
    o_r = np.asarray(sketch["offsets"], dtype=float)
    ks, wd = binned_wasserstein(edges, (c_r, o_r, n_ref), (state.numeric, state.offsets, n_cur))
    # Fine bin k >= 1 starts at edges[k-1], which lies in one decile bin (the deciles are edges).
    psi_edges = np.asarray(sketch["psi_edges"], dtype=float)
    coarse = np.concatenate(([0], np.searchsorted(psi_edges, edges, side="right")))
    size = psi_edges.size + 1
    ref_bins = np.bincount(coarse, weights=c_r, minlength=size)
    cur_bins = np.bincount(coarse, weights=state.numeric, minlength=size)
    std = float(sketch["std"])
    m, n = sorted([float(n_ref), float(n_cur)], reverse=True)
    p_value = float(np.clip(stats.distributions.kstwo.sf(ks, np.round(m * n / (m + n))), 0, 1))
    row.update(
        wasserstein_distance=wd,
        normalized_wasserstein_distance=wd / std if std > 0 else wd,
        ks_statistic=ks,
        two_sample_kolmogorov_smirnov_test=p_value,
        jensen_shannon_distance=drift.js_distance(ref_bins, cur_bins),
        population_stability_index=drift.psi(ref_bins, cur_bins),
    )
    if std == 0:
        row["note"] = "constant reference: raw Wasserstein distance reported"
    return row


def iter_file(
    path: str | Path,
    columns: list[str] | None = None,
    batch_rows: int = BATCH_ROWS,
    *,
    text_columns: tuple[str, ...] = (),
) -> Iterator[pd.DataFrame]:
    """Yield a Parquet or CSV file (or a folder of them) in chunks of ``batch_rows`` rows.

    Only ``columns`` (those present) are read, and one chunk at a time is held. A CSV's
    ``text_columns`` are read as text, so a label ``"1"`` stays ``"1"`` as in the reference.

    Raises:
        FileNotFoundError: no such file or folder.
        ValueError: a file type other than Parquet or CSV, or both in one folder.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no production data at {path}")
    found = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    files = [p for p in found if not p.name.startswith(".")]
    formats = {FORMATS.get(p.suffix.lower()) for p in files}
    if len(formats) != 1 or None in formats:
        raise ValueError(
            f"{path}: streaming reads Parquet (.parquet, .pq) or CSV (.csv) files, one kind "
            f"per folder; found {sorted({p.suffix or p.name for p in files})[:5]}. Convert "
            "the data, or leave out --streaming to read it in memory"
        )
    read = _csv_batches if formats == {"csv"} else _parquet_batches
    for file in files:
        for batch in read(file, columns, batch_rows, text_columns):
            yield batch.to_pandas(split_blocks=True, self_destruct=True)


def _parquet_batches(
    path: Path, columns: list[str] | None, batch_rows: int, text_columns: tuple[str, ...]
) -> Iterator[Any]:
    import pyarrow.parquet as pq

    # Without pre-buffering the reader holds pages of one row group, not the whole group.
    with pq.ParquetFile(path, pre_buffer=False) as reader:
        names = reader.schema_arrow.names
        wanted = [c for c in columns or names if c in names]
        yield from reader.iter_batches(batch_size=batch_rows, columns=wanted)


def _csv_batches(
    path: Path, columns: list[str] | None, batch_rows: int, text_columns: tuple[str, ...]
) -> Iterator[Any]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    with path.open("rb") as handle:
        names = pacsv.open_csv(handle).schema.names
    wanted = [c for c in columns or names if c in names]
    options = pacsv.ConvertOptions(
        include_columns=wanted,
        column_types={c: pa.string() for c in text_columns if c in names},
        strings_can_be_null=True,  # empty fields are missing, as pandas reads them
    )
    reader = pacsv.open_csv(
        path, read_options=pacsv.ReadOptions(block_size=1 << 24), convert_options=options
    )
    yield from reader


def drift_of_file(
    path: str | Path,
    profile: Mapping[str, Any],
    column_kinds: Mapping[str, str] | None = None,
    thresholds: drift.ThresholdsLike = None,
    *,
    bins: int = 10,
    batch_rows: int = BATCH_ROWS,
) -> tuple[pd.DataFrame, int]:
    """Stream a Parquet or CSV file (or folder) against ``profile``; return (drift, rows).

    Memory stays near one chunk of ``batch_rows`` rows whatever the file's size.
    """
    counter = StreamingDrift(profile, column_kinds)
    labels = tuple(c for c, k in counter.column_kinds.items() if k in kinds.CATEGORY_KINDS)
    for chunk in iter_file(path, list(counter.column_kinds), batch_rows, text_columns=labels):
        counter.update(chunk)
    return counter.result(thresholds, bins), counter.rows


def read_profile(dataset: str, data_version: str = "latest") -> tuple[dict[str, Any], Any]:
    """Return a processed version's baseline profile and manifest, without reading its splits.

    ``data_version`` is a processed version, the raw version it was made from, or ``latest``,
    as :func:`amlkit.data.preprocess.load_processed` takes it.

    Raises:
        FileNotFoundError: no processed version matches (the message names them).
    """
    from amlkit import paths
    from amlkit.data import preprocess
    from amlkit.io import read_json

    manifests = preprocess.list_processed(dataset)
    found = manifests
    if data_version != "latest":
        found = [m for m in manifests if m.version == data_version] or [
            m for m in manifests if m.raw_version == data_version
        ]
    if not found:
        known = ", ".join(m.version for m in manifests) or "none"
        raise FileNotFoundError(
            f"{dataset!r} has no processed version {data_version!r} (it has {known}); run "
            "03_data_preprocessing, or name the version with --data-version"
        )
    manifest = found[-1]
    folder = paths.processed_dir() / dataset / manifest.version
    return read_json(folder / "baseline_profile.json"), manifest
