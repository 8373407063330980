"""Where ingested data comes from: bundled data sets, local files, URLs and cloud storage.

A source is ``bundled:<name>`` (a data set a PyPI package ships: no network), a local
CSV/TSV/Parquet/JSON/JSON-lines path, an ``http(s)://`` URL, or a cloud URI read through
fsspec with credentials from the environment (:data:`CLOUD_SCHEMES`).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast
from urllib.parse import urlsplit, urlunsplit

from tqdm import tqdm

logger = logging.getLogger(__name__)

BUNDLED: dict[str, tuple[str, str]] = {  # name: (package, resource path inside it)
    "penguins": ("palmerpenguins", "data/penguins.csv"),  # 344 rows
    "seattle-weather": ("vega_datasets", "_data/seattle-weather.csv"),  # 1461 rows
    "cars": ("vega_datasets", "_data/cars.json"),  # Auto MPG, 406 rows
}

FORMATS = {
    ".csv": "csv",
    ".txt": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
CLOUD_SCHEMES = {"abfs": "adlfs", "abfss": "adlfs", "az": "adlfs", "wasbs": "adlfs"}
CLOUD_SCHEMES["azureml"] = "azureml-fsspec"  # scheme -> the fsspec package that reads it


class SourceError(ValueError):
    """A data source cannot be resolved or read."""


@dataclass(frozen=True)
class Fetched:
    """A source copied to a local file."""

    path: Path
    sha256: str
    size_bytes: int
    format: str
    source: str


def describe_source(source: str) -> str:
    """Return ``source`` with any credentials (user info, query string) removed."""
    parts = urlsplit(source)
    if parts.scheme in ("http", "https", *CLOUD_SCHEMES) and (parts.query or "@" in parts.netloc):
        netloc = parts.netloc.rsplit("@", 1)[-1]
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    return source


def detect_format(source: str) -> str:
    """Return the file format of ``source`` from its extension, or raise SourceError."""
    if source.startswith("bundled:"):
        return detect_format(bundled_path(source).name)
    suffixes = [s.lower() for s in Path(urlsplit(source).path).suffixes]
    for suffix in reversed(suffixes):
        if suffix in FORMATS:
            return FORMATS[suffix]
    known = ", ".join(sorted(FORMATS))
    raise SourceError(
        f"cannot tell the format of {describe_source(source)!r} from its name; use a file "
        f"ending in one of {known}"
    )


def bundled_path(source: str) -> Path:
    """Return the local file of a ``bundled:<name>`` source, or raise SourceError."""
    name = source.removeprefix("bundled:")
    if name not in BUNDLED:
        raise SourceError(
            f"unknown bundled data set {name!r}; choose one of {', '.join(sorted(BUNDLED))}"
        )
    package, resource = BUNDLED[name]
    try:
        root = importlib.resources.files(package)
    except ModuleNotFoundError as exc:
        raise SourceError(
            f"bundled data set {name!r} needs the package {package}; run `pip install {package}`"
        ) from exc
    path = Path(str(root.joinpath(resource)))
    if not path.is_file():
        raise SourceError(f"bundled data set {name!r}: {path} is missing from {package}")
    return path


def _open_source(source: str) -> tuple[BinaryIO, int | None]:
    """Open ``source`` for binary reading; return (file object, size or None)."""
    if source.startswith("bundled:"):
        path = bundled_path(source)
        return open(path, "rb"), path.stat().st_size
    scheme = urlsplit(source).scheme.lower()
    if scheme in ("http", "https"):
        import requests

        try:
            response = requests.get(source, stream=True, timeout=(10, 60))
            response.raise_for_status()
        except requests.RequestException as exc:
            raise SourceError(f"cannot download {describe_source(source)}: {exc}") from exc
        size = response.headers.get("Content-Length")
        response.raw.decode_content = True
        raw = cast(BinaryIO, response.raw)  # urllib3's HTTPResponse reads like a binary file
        return raw, int(size) if size and size.isdigit() else None
    if scheme in CLOUD_SCHEMES:
        import fsspec

        try:
            fs, path = fsspec.core.url_to_fs(source)
        except (ImportError, ValueError) as exc:
            package = CLOUD_SCHEMES[scheme]
            raise SourceError(
                f"reading {scheme}:// URIs needs the package {package} and credentials in the "
                f"environment (for example AZURE_STORAGE_ACCOUNT_NAME and az login); "
                f"run `pip install {package}`. ({exc})"
            ) from exc
        try:
            size = fs.size(path)
            return fs.open(path, "rb"), size
        except Exception as exc:  # any fsspec back end error: say which URI
            raise SourceError(f"cannot open {describe_source(source)}: {exc}") from exc
    if scheme and len(scheme) > 1:
        raise SourceError(
            f"unsupported source scheme {scheme!r} in {describe_source(source)!r}; use a local "
            "path, http(s)://, abfs(s)://, az://, wasbs://, azureml:// or bundled:<name>"
        )
    path = Path(source).expanduser()
    if not path.is_file():
        raise SourceError(f"source file {str(path)!r} does not exist; check the path")
    return open(path, "rb"), path.stat().st_size


def fetch(
    source: str, dest_dir: Path, *, chunk_bytes: int = 8 << 20, progress: bool = True
) -> Fetched:
    """Copy ``source`` into a temporary file under ``dest_dir`` (the caller moves or deletes it).

    The file is hashed on the way; memory use stays around ``chunk_bytes``.
    """
    fmt = detect_format(source)
    handle, size = _open_source(source)
    dest_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".fetch-", suffix=".partial", dir=dest_dir)
    digest = hashlib.sha256()
    written = 0
    try:
        with (
            handle,
            os.fdopen(fd, "wb") as out,
            tqdm(
                total=size,
                unit="B",
                unit_scale=True,
                desc=f"fetch {Path(urlsplit(source).path).name or source}",
                disable=not progress,
                leave=False,
            ) as bar,
        ):
            while block := handle.read(chunk_bytes):
                digest.update(block)
                out.write(block)
                written += len(block)
                bar.update(len(block))
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    logger.info("fetched %s: %d bytes", describe_source(source), written)
    return Fetched(Path(tmp), digest.hexdigest(), written, fmt, describe_source(source))
