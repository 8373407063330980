"""Preprocessing in chunks: 03's steps on a raw version too large for memory."""

import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

from amlkit import kinds
from amlkit.config import DataConfig
from amlkit.data import ingest, preprocess, profile, stream


def with_chunk_rows(rows: int) -> DataConfig:
    cfg = DataConfig.load()
    return cfg.model_copy(
        update={"ingestion": cfg.ingestion.model_copy(update={"chunk_rows": rows})}
    )


def as_read(frame: pd.DataFrame) -> pd.DataFrame:
    """Missing values as None, as Parquet gives them back (NaN in the cleaned frames)."""
    return frame.astype(object).where(frame.notna(), None)


@pytest.mark.parametrize("dataset", ["penguins", "cars", "seattle_weather"])
def test_one_chunk_cleans_splits_and_profiles_as_03_does(project, dataset):
    ingest.ingest(dataset, progress=False)
    split = DataConfig.load().split
    manifest, _, written = stream.preprocess_in_chunks(dataset, split=split)
    streamed = preprocess.load_processed(dataset, manifest.version)

    frame, raw = ingest.load_raw(dataset)  # 03's steps, in memory
    cleaned = preprocess.clean(frame, raw)
    counts = cleaned.frame[raw.target].value_counts()
    stratified = raw.task == kinds.CLASSIFICATION and counts.min() >= 3
    by = cleaned.frame[raw.target] if stratified else None
    rest, test = train_test_split(cleaned.frame, test_size=0.2, random_state=42, stratify=by)
    by = rest[raw.target] if stratified else None
    train, validation = train_test_split(rest, test_size=0.25, random_state=42, stratify=by)

    assert written and manifest.stratified == stratified
    assert manifest.dropped_missing_target == cleaned.dropped_missing_target
    for name, part in {"train": train, "validation": validation, "test": test}.items():
        got, want = getattr(streamed, name), part.reset_index(drop=True)
        assert got.dtypes.to_dict() == want.dtypes.to_dict()
        pd.testing.assert_frame_equal(as_read(got), as_read(want))
    expected = profile.build_profile(
        train, feature_types=cleaned.feature_types, target=raw.target, task=raw.task
    )
    assert streamed.profile["columns"] == expected["columns"]


def test_chunks_give_one_content_named_version_written_once(project):
    ingest.ingest("penguins", progress=False)
    split, cfg = DataConfig.load().split, with_chunk_rows(50)
    first, folder, written = stream.preprocess_in_chunks("penguins", split=split, data_config=cfg)
    again, _, written_again = stream.preprocess_in_chunks("penguins", split=split, data_config=cfg)
    assert (written, written_again) == (True, False) and again.version == first.version
    assert sum(first.rows.values()) == 344 - first.dropped_missing_target
    assert first.params["chunk_rows"] == 50 and first.classes == ["Adelie", "Chinstrap", "Gentoo"]
    loaded = preprocess.load_processed("penguins", first.version)
    splits = {name: getattr(loaded, name) for name in preprocess.SPLITS}
    named = preprocess.content_version(
        splits,
        raw_version=first.raw_version,
        feature_types=first.feature_types,
        params=first.params,
    )
    assert named == first.version
    assert [p.name for p in folder.parent.iterdir()] == [first.version]
