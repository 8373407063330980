"""Every data version on this machine as a versioned Azure ML data asset.

A raw version ``data/raw/<dataset>/<version>/`` becomes ``<dataset>-raw:<version>`` and a
processed version ``<dataset>-processed:<version>`` (``uri_folder``: the files and their
``manifest.json``), the version being our own content-derived version, and the manifest's
fields tags. The training split of a processed version is also ``<dataset>-train:<version>``
(``mltable``: an ``MLTable`` file beside a copy of ``train.parquet``, as Microsoft's monitoring
examples give reference data): the reference data of Azure ML model monitoring.

Azure ML's ``@latest`` is the version created last, not the highest name, and our versions are
content hashes. So assets are listed, and registered by ``amlkit azure submit``, in the order
their data was made (``ingested_at`` of a raw version, ``created`` of a processed one): the
newest data is registered last and is what ``@latest`` names.

Jobs name data by reference (:func:`reference`), ``azureml:penguins-processed:<version>`` or
``azureml:penguins-processed@latest``; ``amlkit azure run-local`` resolves these names back
to the folders the specs were written from.
"""

from __future__ import annotations

import logging
import shutil
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


def _manifests(folder: Path, model: type[Any], made: str) -> list[Any]:
    """Return ``(folder, manifest)`` of every version, oldest first by the manifest's ``made``."""
    found = []
    for path in sorted(folder.glob("*/*/manifest.json")):
        try:
            found.append((path.parent, model.read(path)))
        except Exception as exc:  # a half-written or foreign folder is not a version
            logger.warning("skipping %s: not a readable manifest (%s)", path, exc)
    return sorted(found, key=lambda item: (str(getattr(item[1], made) or ""), str(item[0])))


MLTABLE = """\
# The training split as a table: Azure ML model monitoring's reference data.
$schema: https://azuremlschemas.azureedge.net/latest/MLTable.schema.json
type: mltable
paths:
  - file: ./train.parquet
transformations:
  - read_parquet
"""


def write_mltable(train_file: Path, folder: Path) -> Path:
    """Write ``folder`` holding an ``MLTable`` file and a copy of ``train_file``; return it.

    The folder is the ``mltable`` asset Azure ML uploads: the table's file must be inside it.
    """
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(train_file, folder / "train.parquet")
    (folder / "MLTable").write_text(MLTABLE, encoding="utf-8")
    return folder


def _data(m: Any, kind: str, path: Path, description: str, tags: dict[str, str]) -> Any:
    """Return the ``Data`` asset of a version's ``kind`` (a folder, or the training table)."""
    from azure.ai.ml.entities import Data

    return Data(
        name=asset_name(m.dataset, kind),
        version=m.version,
        type="mltable" if (path / "MLTable").is_file() else "uri_folder",
        path=str(path),
        description=description,
        tags=tags,
    )


def raw_assets(raw_dir: Path | None = None) -> list[Any]:
    """Return a ``Data`` asset (``uri_folder``) for every raw version under ``data/raw``."""
    assets = []
    for folder, m in _manifests(raw_dir or paths.raw_dir(), RawManifest, "ingested_at"):
        fields = ("sha256", "rows", "format", "file", "source", "target", "task", "ingested_at")
        tags = _tags({name: getattr(m, name) for name in fields})
        about = f"raw {m.dataset}: {m.file} as ingested by 01 ({m.rows} rows)"
        assets.append(_data(m, "raw", folder, about, tags))
    return assets


def processed_assets(
    processed_dir: Path | None = None, mltable_dir: Path | None = None
) -> list[Any]:
    """Return the ``processed`` (folder) and ``train`` (mltable) assets of every version.

    Args:
        processed_dir: where processed versions are; default ``data/processed``.
        mltable_dir: where the training tables are written, one folder per version
            (``<dataset>-train-<version>``); default ``.amlkit/mltable``.
    """
    tables = mltable_dir or paths.state_dir() / "mltable"
    assets = []
    found = _manifests(processed_dir or paths.processed_dir(), ProcessedManifest, "created")
    for folder, m in found:
        fields = ("raw_version", "raw_sha256", "target", "task", "created")
        rows = {f"rows_{split}": n for split, n in m.rows.items()}
        tags = _tags({name: getattr(m, name) for name in fields} | rows)
        tags["features"] = ",".join(m.features)
        about = f"processed {m.dataset}: train/validation/test splits made by 03"
        assets.append(_data(m, "processed", folder, about, tags))
        table = write_mltable(
            folder / "train.parquet", tables / f"{asset_name(m.dataset, 'train')}-{m.version}"
        )
        about = f"training split of {m.dataset}: model monitoring's reference data"
        assets.append(_data(m, "train", table, about, tags))
    return assets


def all_assets(mltable_dir: Path | None = None) -> list[Any]:
    """Return the data assets of every raw and processed version, oldest data first.

    Args:
        mltable_dir: where the training tables are written (:func:`processed_assets`).
    """
    assets = raw_assets() + processed_assets(mltable_dir=mltable_dir)
    made = {a.name + a.version: a.tags.get("ingested_at") or a.tags.get("created") for a in assets}
    return sorted(assets, key=lambda a: str(made[a.name + a.version] or ""))
