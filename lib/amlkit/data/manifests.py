"""The ``manifest.json`` of raw and processed data versions (what 01 writes for 03, 03 for 04).

Written once, with the version, and read back as these models; docs/contracts.md shows them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

from amlkit.io import read_json, write_json_atomic

MANIFEST_FILE = "manifest.json"


class IncompleteVersionError(FileExistsError):
    """A data version folder without its ``manifest.json``: neither usable nor overwritable."""


def _incomplete(folder: Path, rerun: str) -> IncompleteVersionError:
    return IncompleteVersionError(
        f"data version folder {folder} has no {MANIFEST_FILE}: it is incomplete (its manifest "
        "was deleted, or it was not written by amlkit), so it can be neither used nor "
        f"written again. Remove the folder (rm -r '{folder}') and {rerun}."
    )


def version_manifests(root: Path, *, rerun: str) -> list[Path]:
    """Return the ``manifest.json`` of every version folder under ``root`` (none: empty).

    Temporaries (dot folders) are skipped; a version folder without its manifest raises
    :class:`IncompleteVersionError` naming it, so that "latest" is never an older version
    chosen in silence. ``rerun`` says what writes the version again ("run 03 ...").
    """
    found = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    manifests = []
    for folder in (f for f in found if not f.name.startswith(".")):
        if not (folder / MANIFEST_FILE).is_file():
            raise _incomplete(folder, rerun)
        manifests.append(folder / MANIFEST_FILE)
    return manifests


def written_manifest(final: Path, *, rerun: str) -> Path | None:
    """Return ``final``'s manifest when the version was written, else None (write it).

    For writers, before they stage ``final``: IncompleteVersionError, with the repair, when
    the folder exists without its manifest.
    """
    if (final / MANIFEST_FILE).is_file():
        return final / MANIFEST_FILE
    if final.exists():
        raise _incomplete(final, rerun)
    return None


class Record(BaseModel):
    """A JSON record written once and read back: immutable, unknown keys ignored on reading."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    @classmethod
    def read(cls, path: str | Path) -> Self:
        """Read a record from its JSON file."""
        return cls.model_validate(read_json(path))

    def write(self, path: str | Path) -> Path:
        """Write the record as indented JSON, atomically."""
        return write_json_atomic(path, self.model_dump(mode="json", by_alias=True))


class DataRef(Record):
    """Which data a run or a model used: the data set, its version and the content's sha256."""

    dataset: str
    version: str
    sha256: str


class ColumnInfo(Record):
    """One column of a raw version: its kind, whether it may be null and how many nulls."""

    name: str
    kind: str
    nullable: bool
    null_count: int


class RawManifest(Record):
    """A raw version: the ingested file as it came, with its schema and counts."""

    dataset: str
    version: str
    sha256: str
    size_bytes: int
    format: Literal["csv", "tsv", "parquet", "json", "jsonl"]
    file: str
    source: str
    rows: int
    columns: list[ColumnInfo]
    target: str
    task: Literal["classification", "regression"]
    classes: dict[str, int] | None
    schema_: dict[str, dict[str, Any]] = Field(alias="schema")
    schema_origin: Literal["declared", "saved", "inferred"]
    ingested_at: str
    amlkit_version: str

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    @property
    def kinds(self) -> dict[str, str]:
        """``{column: kind}`` of every column, in file order."""
        return {column.name: column.kind for column in self.columns}

    def ref(self) -> DataRef:
        """Return this version as a :class:`DataRef`."""
        return DataRef(dataset=self.dataset, version=self.version, sha256=self.sha256)


class ProcessedManifest(Record):
    """A processed version: cleaned, split rows derived from one raw version."""

    dataset: str
    version: str
    raw_version: str
    raw_sha256: str
    target: str
    task: Literal["classification", "regression"]
    classes: list[Any] | None
    feature_types: dict[str, str]
    excluded_columns: dict[str, str]
    rows: dict[str, int]
    dropped_missing_target: int
    duplicate_rows: int
    stratified: bool
    params: dict[str, Any]
    files: dict[str, str]
    created: str

    @property
    def features(self) -> list[str]:
        """The feature columns, in model input order."""
        return list(self.feature_types)

    def ref(self) -> DataRef:
        """Return the data this version was made from (the raw file's sha256)."""
        return DataRef(dataset=self.dataset, version=self.version, sha256=self.raw_sha256)
