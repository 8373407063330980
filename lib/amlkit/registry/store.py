"""The model registry: immutable version folders, their metadata, integrity and the champion.

``trained_models/<name>/<version>/`` is an MLflow model version's source, plus metadata
that records every file's sha256 and size, so a changed file is refused before unpickling.
The champion is ``<name>/champion.json`` and the MLflow alias ``champion``.
"""

from __future__ import annotations

import importlib
import json
import logging
import platform
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Literal

import mlflow
import yaml
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from pydantic import ValidationError

from amlkit import integrity, io, names, paths
from amlkit.data.manifests import DataRef, Record
from amlkit.registry import tracking

logger = logging.getLogger(__name__)

METADATA_FILE = "model_metadata.json"
METRICS_FILE = "performance_metrics.json"
HYPERPARAMETERS_FILE = "hyperparameters.yaml"
CHAMPION_FILE = "champion.json"
CHAMPION_ALIAS = "champion"
LIBRARIES = ("scikit-learn", "mlflow", "pandas", "numpy", "scipy", "cloudpickle")


ModelIntegrityError = integrity.ModelIntegrityError
"""A model version's files differ from the hashes recorded when it was written."""


class ModelNotFoundError(LookupError):
    """No model, version or champion of that name."""


class ChampionFileError(ValueError):
    """``champion.json`` exists but cannot be read: truncated, not JSON, or wrong fields."""


class FileHash(Record):
    """The sha256 and size of one file of a version folder."""

    sha256: str
    bytes: int


class ModelMetadata(Record):
    """``model_metadata.json``: what a version is, what made it, and every file's hash.

    The last three fields are for Keras image models.
    """

    name: str
    version: int
    model_type: str
    flavor: str
    task: Literal["classification", "regression"]
    target: str
    feature_columns: list[str]
    feature_types: dict[str, str]
    classes: list[Any] | None
    created: str
    data: DataRef
    code_commit: str
    mlflow_run_id: str | None
    mlflow_model_version: int | None
    library_versions: dict[str, str]
    model_file: str
    model_sha256: str
    files: dict[str, FileHash]
    input_shape: list[int] | None = None
    preprocessing: dict[str, Any] | None = None
    compute_device: str | None = None

    def write(self, path: str | Path) -> Path:
        """Write the metadata as indented JSON, atomically (image fields only when set)."""
        return io.write_json_atomic(path, self.model_dump(mode="json", exclude_defaults=True))


class ChampionRecord(Record):
    """``champion.json``: which version serves as ``champion``, and the score that made it."""

    name: str
    version: int
    mlflow_model_version: int | None
    metric: str
    score: float
    previous: int | None
    decided_at: str


@dataclass(frozen=True)
class ModelVersion:
    """One registered version: its folder and its metadata."""

    name: str
    version: int
    path: Path
    metadata: ModelMetadata


def utc_now() -> str:
    """Return the current UTC time as ISO 8601 to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def default_model_name(dataset: str, task: str) -> str:
    """Return the default registry name, ``<dataset>-<task>``."""
    return f"{dataset}-{task}"


def model_dir(name: str) -> Path:
    """Return ``models/trained_models/<name>/`` (not created)."""
    return paths.trained_models_dir() / names.check_name("model", name)


def list_models() -> list[str]:
    """Return the names of the models with at least one version, sorted."""
    root = paths.trained_models_dir()
    found = root.iterdir() if root.is_dir() else []
    return sorted(p.name for p in found if p.is_dir() and _version_numbers(p))


def _version_numbers(folder: Path) -> list[int]:
    found = folder.iterdir() if folder.is_dir() else []
    return sorted(int(p.name) for p in found if p.is_dir() and p.name.isdigit())


def library_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Return the versions of Python and the libraries a model depends on."""
    found = {"python": platform.python_version()}
    for package in (*LIBRARIES, *extra):
        try:
            found[package] = importlib_metadata.version(package)
        except importlib_metadata.PackageNotFoundError:
            continue
    return found


def _hash_files(folder: Path) -> dict[str, FileHash]:
    """Return ``{relative path: FileHash}`` for every file of ``folder`` but the metadata."""
    records = integrity.file_records(folder, exclude={METADATA_FILE})
    return {rel: FileHash(**record) for rel, record in records.items()}


def _register_in_mlflow(
    name: str, source: Path, meta: ModelMetadata, spec: Mapping[str, Any]
) -> int:
    """Register ``source`` as a new MLflow model version of ``name``; return its number."""
    tracking.ensure_tracking()
    client = MlflowClient()
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    tags = {"model_sha256": meta.model_sha256, "amlkit_path": source.as_posix()} | dict(
        spec["tags"]
    )
    tags |= {f"data.{key}": value for key, value in meta.data.model_dump().items()}
    run_id, description = meta.mlflow_run_id, spec["description"]
    mv = client.create_model_version(name, source.as_posix(), run_id, tags, description=description)
    return int(mv.version)


def _stage_once(name: str, write_model: Callable[[Path], object], **spec: Any) -> ModelVersion:
    """Write one version under the next free number (the caller holds the model's lock)."""
    numbers = _version_numbers(model_dir(name))
    number = (numbers[-1] if numbers else 0) + 1
    final = model_dir(name) / str(number)
    model_file, mlflow_version = spec["model_file"], None
    try:
        with io.staged_directory(final) as tmp:
            write_model(tmp)
            if not (tmp / model_file).is_file():
                written = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*"))
                raise FileNotFoundError(
                    f"write_model did not write the model file {model_file!r} (it wrote "
                    f"{written}); pass the model_file it writes."
                )
            io.write_json_atomic(tmp / METRICS_FILE, io.plain(spec["metrics"]))
            hyper = yaml.safe_dump(io.plain(spec["hyperparameters"]), sort_keys=True)
            io.write_text_atomic(tmp / HYPERPARAMETERS_FILE, hyper)
            files = _hash_files(tmp)
            fields = dict(spec["metadata"])
            versions = library_versions() | dict(fields.pop("library_versions", None) or {})
            fields |= {"name": name, "version": number, "flavor": spec["flavor"]}
            fields |= {"created": utc_now(), "code_commit": tracking.code_commit()}
            fields |= {"mlflow_run_id": spec["run_id"], "mlflow_model_version": None}
            fields |= {"library_versions": versions, "model_file": model_file, "files": files}
            meta = ModelMetadata(**fields, model_sha256=files[model_file].sha256)
            # The MLflow version points at the final folder, which exists once the block exits.
            mlflow_version = _register_in_mlflow(name, final, meta, spec)
            meta = meta.model_copy(update={"mlflow_model_version": mlflow_version})
            meta.write(tmp / METADATA_FILE)
    except BaseException:
        if mlflow_version is not None:  # the folder never appeared: undo the MLflow version
            MlflowClient().delete_model_version(name, str(mlflow_version))
        raise
    return ModelVersion(name, number, final, meta)


def write_version(
    name: str,
    write_model: Callable[[Path], object],
    *,
    flavor: str,
    model_file: str,
    metadata: Mapping[str, Any],
    metrics: Mapping[str, Any],
    hyperparameters: Mapping[str, Any],
    run_id: str | None = None,
    description: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> ModelVersion:
    """Write a new model version atomically and register it in MLflow under ``name``.

    The number is the highest existing + 1; the model's lock keeps other writers waiting.

    ``write_model`` writes an MLflow model, loaded by ``mlflow.<flavor>``, into the folder it
    is given; ``model_file`` is its main file. ``metadata`` holds the :class:`ModelMetadata`
    fields that describe the model (pydantic.ValidationError when wrong), ``metrics`` are
    ``{split: {metric: value}}``; ``run_id`` defaults to the active run; ``description`` and
    ``tags`` go to the MLflow model version.
    """
    names.check_name("model", name)
    if run_id is None and (active := mlflow.active_run()) is not None:
        run_id = active.info.run_id
    spec = {"flavor": flavor, "model_file": model_file, "metadata": metadata, "run_id": run_id}
    spec |= {"metrics": metrics, "hyperparameters": hyperparameters}
    spec |= {"description": description, "tags": tags or {}}
    # One writer per model at a time: a staged folder found under the lock, or an MLflow
    # version whose folder never appeared, was left by a killed writer.
    with io.locked(f"model-{name}"):
        io.reclaim(paths.check_inside(model_dir(name)))  # never through a link out
        _drop_orphans(name)
        version = _stage_once(name, write_model, **spec)
    logger.info("registered %s version %s at %s", name, version.version, version.path)
    if run_id is not None:
        record = version.metadata.model_dump(mode="json", exclude_defaults=True)
        where = f"registry/{name}/v{version.version}/{METADATA_FILE}"
        MlflowClient().log_dict(run_id, record, where)
    return version


def _drop_orphans(name: str) -> None:
    """Delete the MLflow versions of ``name`` whose version folder does not exist."""
    tracking.ensure_tracking()
    client = MlflowClient()
    for mv in client.search_model_versions(f"name='{name}'"):
        path = (mv.tags or {}).get("amlkit_path")
        if path and not (Path(path) / METADATA_FILE).is_file():
            logger.warning(
                "removing MLflow version %s of %s: %s never appeared", mv.version, name, path
            )
            client.delete_model_version(name, mv.version)


def _not_skops_advice(record: logging.LogRecord) -> bool:
    """Drop MLflow's advice to use skops: we chose cloudpickle and verify hashes instead."""
    return "pickle or cloudpickle format" not in record.getMessage()


def register_sklearn_model(
    pipeline: Any,
    *,
    name: str,
    task: str,
    target: str,
    feature_types: Mapping[str, str],
    classes: list[Any] | None,
    data: DataRef,
    metrics: Mapping[str, Any],
    hyperparameters: Mapping[str, Any],
    input_example: Any,
    run_id: str | None = None,
    description: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> ModelVersion:
    """Save a fitted scikit-learn pipeline (preprocessing included) as a new version.

    ``input_example``, a few rows of the features in model input order, gives the
    signature, the example and ``feature_columns``; ``classes`` are the sorted labels or
    None; the other arguments are those of :func:`write_version`.
    """
    import mlflow.sklearn

    if task not in ("classification", "regression"):
        raise ValueError(f"task must be 'classification' or 'regression', got {task!r}.")
    signature = mlflow.models.infer_signature(input_example, pipeline.predict(input_example))
    requirements = mlflow.sklearn.get_default_pip_requirements(include_cloudpickle=True)

    def write_model(folder: Path) -> None:
        # cloudpickle, not MLflow's default skops: skops refuses many tree models without a
        # list of trusted types. Pickle can run code when loaded, so load_model() checks
        # the recorded sha256 of model.pkl (and of every other file) BEFORE unpickling.
        # Explicit pip requirements skip MLflow's requirement inference (a subprocess that
        # loads the model again, seconds per save).
        logging.getLogger("mlflow.sklearn").addFilter(_not_skops_advice)
        try:
            mlflow.sklearn.save_model(
                pipeline,
                str(folder),
                serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
                signature=signature,
                input_example=input_example,
                pip_requirements=requirements,
            )
        finally:
            logging.getLogger("mlflow.sklearn").removeFilter(_not_skops_advice)

    final = pipeline.steps[-1][1] if hasattr(pipeline, "steps") else pipeline
    meta = {"model_type": type(final).__name__, "task": task, "target": target, "data": data}
    meta |= {"feature_columns": [str(c) for c in input_example.columns]}
    meta |= {"feature_types": dict(feature_types)}
    meta |= {"classes": None if classes is None else list(classes)}
    rest: dict[str, Any] = {"metrics": metrics, "hyperparameters": hyperparameters}
    rest |= {"run_id": run_id, "description": description, "tags": tags, "metadata": meta}
    return write_version(name, write_model, flavor="sklearn", model_file="model.pkl", **rest)


def _load_version(name: str, number: int) -> ModelVersion:
    folder = model_dir(name) / str(number)
    meta_path = folder / METADATA_FILE
    if not meta_path.is_file():
        raise ModelIntegrityError(f"{folder} has no {METADATA_FILE}; it is not a valid version.")
    try:
        meta = ModelMetadata.read(meta_path)
    except ValidationError as exc:
        raise ModelIntegrityError(
            f"{meta_path} is not valid model metadata ({exc.errors()[0]['loc']}: "
            f"{exc.errors()[0]['msg']}); re-register the model."
        ) from None
    return ModelVersion(name, number, folder, meta)


def list_versions(name: str) -> list[ModelVersion]:
    """Return every version of ``name``, oldest first (empty when the model is unknown)."""
    folder = model_dir(name)
    return [_load_version(name, n) for n in _version_numbers(folder)]


def _champion_path(name: str) -> Path:
    return model_dir(name) / CHAMPION_FILE


def _repair_hint(name: str) -> str:
    return (
        "promote a version with the champion gate (run 04 or 05, or "
        "amlkit.registry.champion.promote_if_better), or record one with "
        f"amlkit.registry.store.set_champion(store.get_version({name!r}, N), metric=..., "
        "score=...); to use the newest version instead, ask for version 'latest'"
    )


def read_champion(name: str) -> ChampionRecord | None:
    """Return ``champion.json`` of ``name``, or None when the file does not exist.

    Raises:
        ChampionFileError: the file is truncated, not JSON, or its fields are wrong; the
            error names the file, what is wrong and how to repair it.
    """
    path = _champion_path(name)
    if not path.is_file():
        return None
    try:
        record = ChampionRecord.read(path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValidationError) as exc:
        if isinstance(exc, ValidationError):
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"]) or "the record"
            problem = f"{where}: {error['msg']}"
        else:
            problem = str(exc) or type(exc).__name__
        problem = f"{problem} (a ChampionRecord: {', '.join(ChampionRecord.model_fields)})"
    else:
        if record.name == name:
            return record
        problem = f"it names model {record.name!r}, not {name!r}"
    raise ChampionFileError(
        f"{path} is damaged: {problem}. Remove it: the champion is then read from the MLflow "
        f"alias {CHAMPION_ALIAS!r} of the registered model {name!r}; if that is gone too, "
        + _repair_hint(name)
        + "."
    )


def _alias_champion(name: str) -> int | None:
    """Return the local version the MLflow alias ``champion`` of ``name`` names, or None."""
    tracking.ensure_tracking()
    try:
        aliases = MlflowClient().get_registered_model(name).aliases or {}
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    if CHAMPION_ALIAS not in aliases:
        return None
    mlflow_version = int(aliases[CHAMPION_ALIAS])
    recorded = {}
    for number in _version_numbers(model_dir(name)):
        try:
            recorded[number] = _load_version(name, number).metadata.mlflow_model_version
        except ModelIntegrityError:
            continue  # a damaged version is refused when it is loaded, not here
        if recorded[number] == mlflow_version:
            return number
    raise ModelNotFoundError(
        f"the MLflow alias {CHAMPION_ALIAS!r} of {name!r} names MLflow version "
        f"{mlflow_version}, which no version folder in {model_dir(name)} records (they record "
        f"{recorded}), and {_champion_path(name)} is missing; bring that version's folder "
        "here, or " + _repair_hint(name) + "."
    )


def champion_source(name: str) -> tuple[int, str] | None:
    """Return ``(version number, where it was read)`` of ``name``'s champion, else None.

    ``champion.json`` when it exists (ChampionFileError when it is damaged); else the MLflow
    alias ``champion`` of the registered model (with a warning: the file is missing); None
    when neither names one. The champion is never guessed.
    """
    record = read_champion(name)
    if record is not None:
        return record.version, CHAMPION_FILE
    number = _alias_champion(name)
    if number is None:
        return None
    where = f"the MLflow alias {CHAMPION_ALIAS!r} ({_champion_path(name)} is missing)"
    logger.warning("champion of %s: version %s, from %s", name, number, where)
    return number, where


def find_champion(name: str) -> ModelVersion | None:
    """Return ``name``'s champion version (see :func:`champion_source`), or None."""
    found = champion_source(name)
    return None if found is None else get_version(name, found[0])


def set_champion(version: ModelVersion, *, metric: str, score: float) -> ChampionRecord:
    """Make ``version`` the champion: the MLflow alias, then ``champion.json`` atomically.

    The record keeps ``metric``, ``score`` and the ``previous`` champion.
    """
    current = find_champion(version.name)
    fields = {"name": version.name, "version": version.version, "metric": metric, "score": score}
    fields |= {"mlflow_model_version": version.metadata.mlflow_model_version}
    fields |= {"previous": current.version if current else None, "decided_at": utc_now()}
    record = ChampionRecord(**fields)
    if record.mlflow_model_version is not None:
        tracking.ensure_tracking()
        MlflowClient().set_registered_model_alias(
            version.name, CHAMPION_ALIAS, str(record.mlflow_model_version)
        )
    record.write(model_dir(version.name) / CHAMPION_FILE)
    return record


def get_version(name: str, version: int | str = "latest") -> ModelVersion:
    """Return a version: a number, ``"latest"`` or ``"champion"``; else ModelNotFoundError."""
    numbers = _version_numbers(model_dir(name))
    if not numbers:
        known = ", ".join(list_models()) or "none"
        raise ModelNotFoundError(
            f"no model named {name!r} in {paths.trained_models_dir()} (models: {known}); "
            "register one first."
        )
    if version == "latest":
        number = numbers[-1]
    elif version == CHAMPION_ALIAS:
        found = champion_source(name)
        if found is None:
            raise ModelNotFoundError(
                f"model {name!r} has no champion: {_champion_path(name)} does not exist and "
                f"the registered model has no MLflow alias {CHAMPION_ALIAS!r} (versions: "
                f"{numbers}); " + _repair_hint(name) + "."
            )
        number = found[0]
    elif isinstance(version, int) or (isinstance(version, str) and version.isdigit()):
        number = int(version)
    else:
        raise ValueError(f"version {version!r} is not a number, 'latest' or 'champion'.")
    if number not in numbers:
        raise ModelNotFoundError(f"model {name!r} has no version {number}; versions: {numbers}.")
    return _load_version(name, number)


def verify(version: ModelVersion) -> None:
    """Check each file's size and sha256; ModelIntegrityError for a missing, changed, added one."""
    files = {rel: record.model_dump() for rel, record in version.metadata.files.items()}
    if version.metadata.model_file not in files:
        files = {}  # metadata of an older layout: no file hashes, refused by the check
    integrity.check_files(
        version.path,
        files,
        record=version.path / METADATA_FILE,
        fix=integrity.VERSION_FIX,
        exclude={METADATA_FILE},
    )


def load_model(name: str, version: int | str = "latest", *, flavor: str | None = None) -> Any:
    """Verify a version's files (ModelIntegrityError), then load its model.

    ``flavor``: the MLflow flavor to load it with (``"pyfunc"``: the generic MLflow model);
    default the version's own (scikit-learn: the pipeline; Keras: the network).
    """
    mv = get_version(name, version)
    verify(mv)
    meta = mv.metadata
    flavor = flavor or meta.flavor
    if flavor == "sklearn":
        import cloudpickle

        # Hash the very bytes we unpickle, so the file cannot change between check and load.
        data = integrity.read_verified(mv.path / meta.model_file, meta.model_sha256)
        return cloudpickle.loads(data)
    module = importlib.import_module(f"mlflow.{flavor}")
    return module.load_model(str(mv.path))
