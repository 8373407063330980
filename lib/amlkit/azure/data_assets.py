"""Every data version on this machine as a versioned Azure ML data asset.

A raw version ``data/raw/<dataset>/<version>/`` becomes ``<dataset>-raw:<version>`` and a
processed version ``<dataset>-processed:<version>`` (``uri_folder``: the files and their
``manifest.json``), the version being our own content-derived version, and the manifest's
fields tags. The training split of a processed version is also ``<dataset>-train:<version>``
(``uri_file``): the reference data of Azure ML model monitoring.

Jobs name data by reference (:func:`reference`), ``azureml:penguins-processed:<version>`` or
``azureml:penguins-processed@latest``; ``amlkit azure run-local`` resolves these names back
to the folders the specs were written from.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from amlkit import paths
from amlkit.data.manifests import ProcessedManifest, RawManifest

logger = logging.getLogger(__name__)

KINDS = ("raw", "processed", "train")


def asset_name(dataset: str, kind: str) -> str:
    """Return the data asset name of a data set's ``raw``, ``processed`` or ``train`` data."""
    if kind not in KINDS:
        raise ValueError(f"data asset kind {kind!r} is not one of {KINDS}")
    return f"{dataset}-{kind}"


def reference(dataset: str, kind: str, version: str | None = None) -> str:
    """Return ``azureml:<name>:<version>``, or ``azureml:<name>@latest`` without a version."""
    name = asset_name(dataset, kind)
    return f"azureml:{name}:{version}" if version else f"azureml:{name}@latest"


def _tags(values: dict[str, Any]) -> dict[str, str]:
    return {key: str(value) for key, value in values.items() if value not in (None, "")}


def _manifests(folder: Path, model: type[Any]) -> list[Any]:
    found = []
    for path in sorted(folder.glob("*/*/manifest.json")):
        try:
            found.append((path.parent, model.read(path)))
        except Exception as exc:  # a half-written or foreign folder is not a version
            logger.warning("skipping %s: not a readable manifest (%s)", path, exc)
    return found


def _data(m: Any, kind: str, path: Path, description: str, tags: dict[str, str]) -> Any:
    """Return the ``Data`` asset of a version's ``kind`` (a folder, or the training file)."""
    from azure.ai.ml.entities import Data

    return Data(
        name=asset_name(m.dataset, kind),
        version=m.version,
        type="uri_file" if path.is_file() else "uri_folder",
        path=str(path),
        description=description,
        tags=tags,
    )


def raw_assets(raw_dir: Path | None = None) -> list[Any]:
    """Return a ``Data`` asset (``uri_folder``) for every raw version under ``data/raw``."""
    assets = []
    for folder, m in _manifests(raw_dir or paths.raw_dir(), RawManifest):
        fields = ("sha256", "rows", "format", "file", "source", "target", "task", "ingested_at")
        tags = _tags({name: getattr(m, name) for name in fields})
        about = f"raw {m.dataset}: {m.file} as ingested by 01 ({m.rows} rows)"
        assets.append(_data(m, "raw", folder, about, tags))
    return assets


def processed_assets(processed_dir: Path | None = None) -> list[Any]:
    """Return the ``processed`` (folder) and ``train`` (file) assets of every processed version."""
    assets = []
    for folder, m in _manifests(processed_dir or paths.processed_dir(), ProcessedManifest):
        fields = ("raw_version", "raw_sha256", "target", "task", "created")
        rows = {f"rows_{split}": n for split, n in m.rows.items()}
        tags = _tags({name: getattr(m, name) for name in fields} | rows)
        tags["features"] = ",".join(m.features)
        about = f"processed {m.dataset}: train/validation/test splits made by 03"
        assets.append(_data(m, "processed", folder, about, tags))
        about = f"training split of {m.dataset}: model monitoring's reference data"
        assets.append(_data(m, "train", folder / "train.parquet", about, tags))
    return assets


def all_assets() -> list[Any]:
    """Return the data assets of every raw and processed version on this machine."""
    return raw_assets() + processed_assets()
