"""Preprocessing plumbing for 03: the cleaning rules, and processed versions written once.

03 splits and profiles the rows itself. The rules live here because every chunk of a file too
large for memory must be cleaned alike, with the columns chosen from the raw manifest (the
whole file's kinds and null counts). A version is named by its content and never changed.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from amlkit import kinds, paths
from amlkit.data import ingest
from amlkit.data.manifests import (
    ProcessedManifest,
    RawManifest,
    version_manifests,
    written_manifest,
)
from amlkit.io import (
    canonical_json,
    locked,
    read_json,
    reclaim,
    sha256_file,
    staged_directory,
    write_json_atomic,
)
from amlkit.kinds import normalize_value

logger = logging.getLogger(__name__)

RERUN = "run 03_data_preprocessing again (the same inputs write the same version)"

SPLITS = ("train", "validation", "test")
TRIM = "trimmed spaces"
BOOLEANS = "true/false spelled out"
LABELS = "labels made text"
NO_TARGET = "rows dropped: no target"


@dataclass(frozen=True)
class Cleaned:
    """Cleaned rows (features, then the target) and what the rules did.

    ``effects``: per cleaned column, how many values each rule changed (for the target, rows).
    """

    frame: pd.DataFrame
    feature_types: dict[str, str]
    excluded: dict[str, str]
    effects: pd.DataFrame
    dropped_missing_target: int


@dataclass(frozen=True)
class Processed:
    """A processed version: the three splits, the manifest and the baseline profile."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    manifest: ProcessedManifest
    profile: dict[str, Any]
    path: Path


def choose_columns(
    raw: RawManifest, drop_columns: Sequence[str] = ()
) -> tuple[dict[str, str], dict[str, str]]:
    """Return (``{feature: kind}`` in file order, ``{left-out column: reason}``) of a raw version.

    Raises ValueError when ``drop_columns`` names a column the data set does not have.
    """
    unknown = [c for c in drop_columns if c not in raw.kinds]
    if unknown:
        raise ValueError(
            f"drop_columns {unknown} are not columns of {raw.dataset!r} (its columns are "
            f"{list(raw.kinds)}); fix drop_columns in data_config.json or the notebook parameters"
        )
    features: dict[str, str] = {}
    excluded: dict[str, str] = {}
    for column in raw.columns:
        if column.name == raw.target:
            continue
        if column.name in drop_columns:
            excluded[column.name] = "listed in drop_columns"
        elif column.kind == kinds.TEXT:
            excluded[column.name] = "ID-like or free text (many distinct values)"
        elif column.null_count == raw.rows:
            excluded[column.name] = "all values missing"
        else:
            features[column.name] = column.kind
    return features, excluded


def _clean_labels(values: pd.Series, *, boolean: bool) -> tuple[pd.Series, dict[str, int]]:
    """Clean labels with the model's own normaliser, so training rows and requests agree."""
    present = values.notna()
    text = values.astype(str)
    trimmed = text.str.strip()
    cleaned = values.map(lambda v: normalize_value(v, boolean)).astype(object)
    counts = {
        TRIM: int((present & text.ne(trimmed)).sum()),
        BOOLEANS if boolean else LABELS: int((present & cleaned.ne(trimmed)).sum()),
    }
    return cleaned, counts


def clean(frame: pd.DataFrame, raw: RawManifest, drop_columns: Sequence[str] = ()) -> Cleaned:
    """Clean typed raw rows (a whole version, or one chunk of it) as ``load_raw`` returns them.

    The rules, in order: keep the columns :func:`choose_columns` picks; trim the spaces around
    labels; spell true/false as ``"true"``/``"false"`` and write other labels as text (``3.0``
    becomes ``"3"``), as the model's ``CategoryNormalizer`` does with requests; make numbers
    float64; drop the rows whose target is missing.
    """
    features, excluded = choose_columns(raw, drop_columns)
    target, target_kind = raw.target, raw.kinds[raw.target]
    out = pd.DataFrame(index=frame.index)
    effects: dict[str, dict[str, int]] = {}
    for column, kind in {**features, target: target_kind}.items():
        if kind in kinds.NUMERIC_KINDS:
            out[column] = pd.to_numeric(frame[column]).astype("float64")
        elif kind in kinds.CATEGORY_KINDS:
            out[column], effects[column] = _clean_labels(
                frame[column], boolean=kind == kinds.BOOLEAN
            )
        else:
            out[column] = frame[column]
    keep = out[target].notna()
    effects.setdefault(target, {})[NO_TARGET] = int((~keep).sum())
    table = pd.DataFrame.from_dict(effects, orient="index")
    return Cleaned(
        frame=out[keep].reset_index(drop=True),
        feature_types=features,
        excluded=excluded,
        effects=table.reindex(columns=[TRIM, BOOLEANS, LABELS, NO_TARGET]).astype("Int64"),
        dropped_missing_target=effects[target][NO_TARGET],
    )


def content_version(
    splits: Mapping[str, pd.DataFrame | Iterable[pd.DataFrame]],
    *,
    raw_version: str,
    feature_types: Mapping[str, str],
    params: Mapping[str, Any],
) -> str:
    """Name a processed version by its content: 12 hex digits of a sha256.

    The hash covers each split's columns, dtypes and values in row order (pandas' row hashing,
    independent of the Parquet encoding), the feature kinds, the parameters and the raw version.
    A split may come as consecutive chunks (the first, maybe empty, gives the dtypes).
    """
    parts: dict[str, Iterator[pd.DataFrame]] = {}
    for name in SPLITS:
        given = splits[name]
        parts[name] = iter([given] if isinstance(given, pd.DataFrame) else given)
    first = {name: next(parts[name]) for name in SPLITS}
    digest = hashlib.sha256()
    head = {"raw_version": raw_version, "feature_types": feature_types, "params": params}
    head["columns"] = {
        name: [[str(c), str(t)] for c, t in first[name].dtypes.items()] for name in SPLITS
    }
    digest.update(canonical_json(head).encode())
    for name in SPLITS:
        for frame in itertools.chain([first[name]], parts[name]):
            rows = pd.util.hash_pandas_object(frame, index=False)
            digest.update(rows.to_numpy().tobytes())
    return digest.hexdigest()[:12]


def write_processed(
    splits: Mapping[str, pd.DataFrame],
    *,
    raw: RawManifest,
    cleaned: Cleaned,
    params: Mapping[str, Any],
    stratified: bool,
    profile: Mapping[str, Any],
) -> tuple[Processed, bool]:
    """Write a processed version once, atomically; return it and whether it was written now.

    The folder gets the splits as Parquet, ``manifest.json`` and ``baseline_profile.json``.
    Raises ValueError when a split is missing or its columns differ from the cleaned rows'.
    """
    columns = list(cleaned.frame.columns)
    for name in SPLITS:
        if name not in splits or list(splits[name].columns) != columns:
            raise ValueError(
                f"split {name!r} is missing or its columns are not {columns}; pass the train, "
                "validation and test parts of the cleaned rows"
            )
    dataset, params = ingest.check_name(raw.dataset), dict(params)
    version = content_version(
        splits, raw_version=raw.version, feature_types=cleaned.feature_types, params=params
    )
    folder = paths.check_inside(paths.processed_dir() / dataset)  # not through a link out
    final = folder / version
    with locked(f"processed-{dataset}"):
        reclaim(folder)
        if written_manifest(final, rerun=RERUN):
            logger.info("%s processed version %s exists; nothing written", dataset, version)
            return load_processed(dataset, version), False
        rows = pd.concat([splits[name] for name in SPLITS], ignore_index=True)
        with staged_directory(final) as stage:
            for name in SPLITS:
                splits[name].to_parquet(stage / f"{name}.parquet", index=False)
            labels = sorted(rows[raw.target].unique().tolist())
            counts = {
                "rows": {name: len(splits[name]) for name in SPLITS},
                "classes": labels if raw.task == kinds.CLASSIFICATION else None,
                "duplicate_rows": int(rows.duplicated().sum()),
            }
            write_manifest(stage, version, raw, cleaned, params, stratified, profile, counts)
    logger.info("processed %s version %s -> %s", dataset, raw.version, version)
    return load_processed(dataset, version), True


def write_manifest(
    stage: Path,
    version: str,
    raw: RawManifest,
    cleaned: Cleaned,
    params: Mapping[str, Any],
    stratified: bool,
    profile: Mapping[str, Any],
    counts: Mapping[str, Any],
) -> None:
    """Write ``baseline_profile.json`` and ``manifest.json`` beside the splits in ``stage``.

    ``counts`` holds the manifest's ``rows``, ``classes`` and ``duplicate_rows``; the files'
    sha256 are computed here.
    """
    stamp = {"dataset": raw.dataset, "data_version": version, "reference": "train.parquet"}
    write_json_atomic(stage / "baseline_profile.json", {**stamp, **profile})
    ProcessedManifest(
        dataset=raw.dataset,
        version=version,
        raw_version=raw.version,
        raw_sha256=raw.sha256,
        target=raw.target,
        task=raw.task,
        feature_types=cleaned.feature_types,
        excluded_columns=cleaned.excluded,
        dropped_missing_target=cleaned.dropped_missing_target,
        stratified=stratified,
        params=dict(params),
        files={f"{name}.parquet": sha256_file(stage / f"{name}.parquet") for name in SPLITS},
        created=datetime.now(UTC).isoformat(timespec="microseconds"),
        **counts,
    ).write(stage / "manifest.json")


def list_processed(dataset: str) -> list[ProcessedManifest]:
    """Return the manifests of a data set's processed versions, oldest first."""
    root = paths.processed_dir() / ingest.check_name(dataset)
    manifests = [ProcessedManifest.read(p) for p in version_manifests(root, rerun=RERUN)]
    return sorted(manifests, key=lambda m: (m.created, m.version))


def _text_gaps_as_nan(frame: pd.DataFrame) -> pd.DataFrame:
    """Return ``frame`` with missing text as NaN, the marker a served request carries.

    Parquet gives ``None`` for a missing string; scikit-learn's imputers and encoders take NaN
    as missing but ``None`` as a value, so a pipeline trained on ``None`` would learn a
    category the endpoint never sends.
    """
    for col in frame.select_dtypes(include="object").columns:
        if frame[col].isna().any():
            frame[col] = frame[col].where(frame[col].notna(), float("nan"))
    return frame


def load_processed(dataset: str, data_version: str = "latest") -> Processed:
    """Load a processed version, or a raw version's latest, or ``latest``; check its files.

    Raises:
        FileNotFoundError: no processed version matches.
        IncompleteVersionError: a version folder lacks its manifest (a FileExistsError naming
            it), unless ``data_version`` names another, complete processed version.
        ValueError: a file was changed after it was written.
    """
    exact = paths.processed_dir() / ingest.check_name(dataset) / data_version / "manifest.json"
    if data_version.isalnum() and data_version != "latest" and exact.is_file():
        manifests = [ProcessedManifest.read(exact)]
    else:
        manifests = list_processed(dataset)
    if not manifests:
        raise FileNotFoundError(
            f"no processed versions of {dataset!r} under {paths.processed_dir()}; run "
            "03_data_preprocessing first"
        )
    found = manifests
    if data_version != "latest":
        found = [m for m in manifests if m.version == data_version] or [
            m for m in manifests if m.raw_version == data_version
        ]
    if not found:
        known = ", ".join(f"{m.version} (from raw {m.raw_version})" for m in manifests)
        raise FileNotFoundError(
            f"{dataset!r} has no processed version {data_version!r} and none made from a raw "
            f"version {data_version!r}; it has {known}. Run 03_data_preprocessing with "
            f"data_version={data_version!r} to make one"
        )
    manifest = found[-1]
    folder = paths.processed_dir() / dataset / manifest.version
    for name, digest in manifest.files.items():
        if sha256_file(folder / name) != digest:
            raise ValueError(
                f"{folder / name} does not match the sha256 in its manifest; it was changed "
                "after it was written. Delete the folder and run 03_data_preprocessing again"
            )
    frames = {
        name: _text_gaps_as_nan(pd.read_parquet(folder / f"{name}.parquet")) for name in SPLITS
    }
    profile = read_json(folder / "baseline_profile.json")
    return Processed(**frames, manifest=manifest, profile=profile, path=folder)
