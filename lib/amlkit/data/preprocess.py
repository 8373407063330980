"""Preprocessing: clean a raw version, split it, and write ``data/processed/<dataset>/<version>/``.

Cleaning trims text, normalises booleans to ``"true"``/``"false"``, drops (and counts) rows whose
target is missing, and excludes ID-like text columns and configured drop columns. The split is
seeded: stratified train/validation/test for classification, a plain shuffled split for
regression. The processed version is derived from the raw version and the parameters, so the
same inputs always give the same folder, which is written once, atomically.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.model_selection import train_test_split

from amlkit import kinds, paths
from amlkit.config import DataConfig
from amlkit.data import ingest
from amlkit.data.manifests import ProcessedManifest
from amlkit.data.profile import build_profile
from amlkit.io import (
    canonical_json,
    read_json,
    sha256_file,
    sha256_text,
    staged_directory,
    write_json_atomic,
)
from amlkit.kinds import normalize_value

logger = logging.getLogger(__name__)

# Bump when the cleaning or split logic changes, so new outputs get a new version.
LOGIC_VERSION = 1
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Processed:
    """A processed version: the three splits, the manifest and the baseline profile."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    manifest: ProcessedManifest
    profile: dict[str, Any]
    path: Path


def clean(
    frame: pd.DataFrame, schema: dict[str, dict], *, target: str, drop_columns: list[str]
) -> tuple[pd.DataFrame, dict[str, str], dict[str, str], int]:
    """Clean typed raw rows.

    Returns:
        (cleaned frame, feature types, excluded columns with reasons, rows dropped for a
        missing target)
    """
    frame = frame.copy()
    excluded: dict[str, str] = {}
    features: dict[str, str] = {}
    for column, spec in schema.items():
        kind = spec["type"]
        if column == target:
            continue
        if column in drop_columns:
            excluded[column] = "listed in drop_columns"
        elif kind == "text":
            excluded[column] = "ID-like or free text (many distinct values)"
        elif frame[column].isna().all():
            excluded[column] = "all values missing"
        else:
            features[column] = kind
    for column, kind in features.items():
        values = frame[column]
        if kind in kinds.NUMERIC_KINDS:
            frame[column] = pd.to_numeric(values).astype("float64")
        elif kind in ("boolean", "categorical"):
            # The model's own normaliser, so training data and requests are cleaned alike.
            boolean = kind == "boolean"
            frame[column] = values.map(lambda v, b=boolean: normalize_value(v, b)).astype(object)
    before = len(frame)
    frame = frame[frame[target].notna()]
    dropped = before - len(frame)
    if schema.get(target, {}).get("type") in kinds.NUMERIC_KINDS:
        frame[target] = pd.to_numeric(frame[target]).astype("float64")
    else:
        frame[target] = frame[target].map(lambda v: str(v).strip())
    frame = frame[[*features, target]].reset_index(drop=True)
    return frame, features, excluded, dropped


def split(
    frame: pd.DataFrame,
    *,
    target: str,
    task: str,
    test_size: float,
    validation_size: float,
    random_state: int,
    stratify: bool,
) -> tuple[dict[str, pd.DataFrame], bool]:
    """Split rows into train/validation/test; return the splits and whether they are stratified.

    ``validation_size`` is a share of all rows, like ``test_size``.
    """
    if not 0 < test_size < 1 or not 0 < validation_size < 1 or test_size + validation_size >= 1:
        raise ValueError(
            f"test_size={test_size} and validation_size={validation_size} must be in (0, 1) and "
            "sum to less than 1; fix split in data_config.json or the notebook parameters"
        )
    counts = frame[target].value_counts() if task == "classification" else None
    stratified = bool(stratify and counts is not None and counts.min() >= 3)
    if stratify and counts is not None and not stratified:
        logger.warning(
            "class %r has only %d rows: split without stratification",
            counts.idxmin(),
            counts.min(),
        )
    rest, test = train_test_split(
        frame,
        test_size=test_size,
        random_state=random_state,
        stratify=frame[target] if stratified else None,
    )
    share = validation_size / (1 - test_size)
    train, validation = train_test_split(
        rest,
        test_size=share,
        random_state=random_state,
        stratify=rest[target] if stratified else None,
    )
    parts = {"train": train, "validation": validation, "test": test}
    return {k: v.reset_index(drop=True) for k, v in parts.items()}, stratified


def preprocess(
    dataset: str,
    raw_version: str = "latest",
    *,
    split_params: dict[str, Any] | None = None,
    drop_columns: list[str] | None = None,
    data_config: DataConfig | None = None,
) -> tuple[Processed, bool]:
    """Clean and split a raw version; write it (once) with its manifest and baseline profile.

    Args:
        dataset: the data set's name.
        raw_version: the raw version to read, or ``latest``.
        split_params: overrides of data_config.json's ``split`` section.
        drop_columns: columns to leave out; defaults to the data set's configured list.
        data_config: the parsed data_config.json; loaded when None.

    Returns:
        (the processed version, whether it was written now)
    """
    cfg = data_config or DataConfig.load()
    params = {**cfg.split.model_dump(), **(split_params or {})}
    frame, raw = ingest.load_raw(dataset, raw_version, cfg)
    entry = cfg.dataset(dataset)
    configured = entry.drop_columns if entry else []
    drop = list(drop_columns if drop_columns is not None else configured)
    missing = [c for c in drop if c not in frame.columns]
    if missing:
        raise ValueError(f"drop_columns {missing} are not columns of {dataset!r}")
    target, task = raw.target, raw.task
    key = {"raw": raw.version, "params": params, "drop": drop, "logic": LOGIC_VERSION}
    version = sha256_text(canonical_json(key))[:12]
    final = paths.processed_dir() / dataset / version
    if (final / "manifest.json").is_file():
        logger.info("%s processed version %s exists; nothing written", dataset, version)
        return load_processed(dataset, version), False
    cleaned, features, excluded, dropped = clean(
        frame, raw.schema_, target=target, drop_columns=drop
    )
    parts, stratified = split(cleaned, target=target, task=task, **params)
    classes = sorted(cleaned[target].unique().tolist()) if task == "classification" else None
    profile = build_profile(
        parts["train"],
        feature_types=features,
        target=target,
        task=task,
        dataset=dataset,
        data_version=version,
    )
    try:
        with staged_directory(final) as stage:
            files = {}
            for name, part in parts.items():
                part.to_parquet(stage / f"{name}.parquet", index=False)
                files[f"{name}.parquet"] = sha256_file(stage / f"{name}.parquet")
            manifest = ProcessedManifest(
                dataset=dataset,
                version=version,
                raw_version=raw.version,
                raw_sha256=raw.sha256,
                target=target,
                task=task,
                classes=classes,
                feature_types=features,
                excluded_columns=excluded,
                rows={name: len(part) for name, part in parts.items()},
                dropped_missing_target=dropped,
                duplicate_rows=int(cleaned.duplicated().sum()),
                stratified=stratified,
                params=params,
                files=files,
                created=datetime.now(UTC).isoformat(timespec="seconds"),
            )
            write_json_atomic(stage / "baseline_profile.json", profile)
            manifest.write(stage / "manifest.json")
    except FileExistsError:
        logger.info("%s processed version %s was written concurrently", dataset, version)
        return load_processed(dataset, version), False
    logger.info("processed %s -> %s (%s)", raw.version, version, manifest.rows)
    return load_processed(dataset, version), True


def list_processed(dataset: str) -> list[ProcessedManifest]:
    """Return the manifests of a data set's processed versions, oldest first."""
    root = paths.processed_dir() / ingest.check_name(dataset)
    manifests = [ProcessedManifest.read(p) for p in root.glob("*/manifest.json")]
    return sorted(manifests, key=lambda m: (m.created, m.version))


def load_processed(dataset: str, version: str = "latest") -> Processed:
    """Load a processed version (``latest`` = most recently written) and check its files."""
    manifests = list_processed(dataset)
    if not manifests:
        raise FileNotFoundError(
            f"no processed versions of {dataset!r} under {paths.processed_dir()}; run "
            "03_data_preprocessing first"
        )
    if version == "latest":
        manifest = manifests[-1]
    else:
        found = [m for m in manifests if m.version == version]
        if not found:
            known = ", ".join(m.version for m in manifests)
            raise FileNotFoundError(f"{dataset!r} has no processed version {version!r}: {known}")
        manifest = found[0]
    folder = paths.processed_dir() / dataset / manifest.version
    for name, digest in manifest.files.items():
        if sha256_file(folder / name) != digest:
            raise ValueError(
                f"{folder / name} does not match the sha256 in its manifest; it was changed "
                "after it was written. Delete the folder and run 03_data_preprocessing again"
            )
    frames = {name: pd.read_parquet(folder / f"{name}.parquet") for name in SPLITS}
    profile = read_json(folder / "baseline_profile.json")
    return Processed(**frames, manifest=manifest, profile=profile, path=folder)
