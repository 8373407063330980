"""Notebook 03's steps in chunks, for raw versions larger than memory (10M rows on one machine).

``03_data_preprocessing`` cleans, splits, profiles and writes a raw version held in memory.
:func:`preprocess_in_chunks` runs the same steps on each chunk of ``chunk_rows`` typed rows
(:func:`amlkit.data.ingest.iter_raw`): :func:`amlkit.data.preprocess.clean`, then
scikit-learn's ``train_test_split`` twice (seeded per chunk, stratified within it), appending
each part to its Parquet file in a staged folder. The baseline profile is then built from
``train.parquet`` one column at a time, and the version is named by
:func:`amlkit.data.preprocess.content_version` over the files as written, so memory stays near
one chunk plus one column whatever the number of rows. The split differs from the in-memory
one (per chunk), so ``chunk_rows`` is among the version's parameters.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.model_selection import train_test_split

from amlkit import kinds, paths
from amlkit.config import DataConfig, SplitConfig
from amlkit.data import ingest, preprocess, profile
from amlkit.data.manifests import ProcessedManifest, RawManifest, written_manifest
from amlkit.io import locked, reclaim

logger = logging.getLogger(__name__)

ARROW_TYPES = {kinds.DATETIME: pa.timestamp("ns")} | dict.fromkeys(
    kinds.NUMERIC_KINDS, pa.float64()
)


def _split(
    frame: pd.DataFrame, split: SplitConfig, target: str, seed: int, stratify: bool
) -> dict[str, pd.DataFrame]:
    """Split one chunk as 03 splits the whole: test first, then validation from the rest."""
    rest, test = train_test_split(
        frame,
        test_size=split.test_size,
        random_state=seed,
        stratify=frame[target] if stratify else None,
    )
    train, validation = train_test_split(
        rest,
        test_size=split.validation_size / (1 - split.test_size),
        random_state=seed,
        stratify=rest[target] if stratify else None,
    )
    return {"train": train, "validation": validation, "test": test}


def _read_back(path: Path, schema: pa.Schema) -> Iterator[pd.DataFrame]:
    yield schema.empty_table().to_pandas()  # the columns' dtypes, when the file has no rows
    for batch in pq.ParquetFile(path).iter_batches(batch_size=65536):
        yield batch.to_pandas()


def preprocess_in_chunks(
    dataset: str,
    data_version: str = "latest",
    *,
    split: SplitConfig,
    drop_columns: Sequence[str] = (),
    data_config: DataConfig | None = None,
) -> tuple[ProcessedManifest, Path, bool]:
    """Clean, split, write and profile a raw version chunk by chunk (bounded memory).

    Args:
        dataset: the data set's name.
        data_version: the raw version, or ``latest``.
        split: the split shares, seed and whether to stratify (as in 03).
        drop_columns: columns to leave out on purpose.
        data_config: the parsed data_config.json (its ``ingestion.chunk_rows``); loaded when None.

    Returns:
        (the processed version's manifest, its folder, whether it was written now)
    """
    cfg = data_config or DataConfig.load()
    raw = ingest.get_manifest(dataset, data_version)
    params = split.model_dump() | {"chunk_rows": cfg.ingestion.chunk_rows}
    folder = paths.check_inside(paths.processed_dir() / ingest.check_name(dataset))
    with locked(f"processed-{dataset}"):
        reclaim(folder)
        folder.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".stream.", suffix=".partial", dir=folder))
        try:
            return _write(stage, raw, params, split, drop_columns, cfg)
        finally:
            shutil.rmtree(stage, ignore_errors=True)


def _write(
    stage: Path,
    raw: RawManifest,
    params: dict[str, Any],
    split: SplitConfig,
    drop_columns: Sequence[str],
    cfg: DataConfig,
) -> tuple[ProcessedManifest, Path, bool]:
    features, excluded = preprocess.choose_columns(raw, drop_columns)
    columns = {**features, raw.target: kinds.target_kind(raw.task)}
    schema = pa.schema([(c, ARROW_TYPES.get(k, pa.string())) for c, k in columns.items()])
    writers = {n: pq.ParquetWriter(stage / f"{n}.parquet", schema) for n in preprocess.SPLITS}
    rows, classes, hashes = dict.fromkeys(preprocess.SPLITS, 0), set(), []
    dropped, stratified = 0, True
    for i, chunk in enumerate(ingest.iter_raw(raw.dataset, raw.version, cfg)):
        cleaned = preprocess.clean(chunk, raw, drop_columns)
        del chunk  # see ingest.iter_raw
        frame, target = cleaned.frame, raw.target
        dropped += cleaned.dropped_missing_target
        counts = frame[target].value_counts() if raw.task == kinds.CLASSIFICATION else None
        strat = bool(split.stratify and counts is not None and counts.min() >= 3)
        stratified &= strat
        for name, part in _split(frame, split, target, split.random_state + i, strat).items():
            writers[name].write_table(pa.Table.from_pandas(part, schema, preserve_index=False))
            rows[name] += len(part)
        if counts is not None:
            classes.update(counts.index)
        hashes.append(pd.util.hash_pandas_object(frame, index=False).to_numpy())
        del cleaned, frame, part
    for writer in writers.values():
        writer.close()
    all_hashes = np.concatenate(hashes) if hashes else np.empty(0, np.uint64)
    version = preprocess.content_version(
        {n: _read_back(stage / f"{n}.parquet", schema) for n in preprocess.SPLITS},
        raw_version=raw.version,
        feature_types=features,
        params=params,
    )
    final = stage.parent / version
    if written := written_manifest(final, rerun=preprocess.RERUN):
        logger.info("%s processed version %s exists; nothing written", raw.dataset, version)
        return ProcessedManifest.read(written), final, False
    train = pq.ParquetFile(stage / "train.parquet")
    profiles = {}
    for column, kind in columns.items():
        values = train.read(columns=[column]).column(0).to_pandas()
        role = "target" if column == raw.target else "feature"
        profiles[column] = {"role": role, **profile.column_profile(values, kind)}
    baseline = {"target": raw.target, "task": raw.task, "rows": rows["train"], "columns": profiles}
    summary = preprocess.Cleaned(pd.DataFrame(), features, excluded, pd.DataFrame(), dropped)
    labels = sorted(classes) if raw.task == kinds.CLASSIFICATION else None
    duplicates = int(all_hashes.size - np.unique(all_hashes).size)
    counts = {"rows": rows, "classes": labels, "duplicate_rows": duplicates}
    preprocess.write_manifest(stage, version, raw, summary, params, stratified, baseline, counts)
    os.rename(stage, final)
    logger.info("processed %s version %s in chunks -> %s", raw.dataset, raw.version, version)
    return ProcessedManifest.read(final / "manifest.json"), final, True
