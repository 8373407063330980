"""The model registry: immutable version folders, their metadata, integrity and the champion.

``trained_models/<name>/<N>/`` is an MLflow model plus metadata that records every file's
sha256 and size, so a changed file is refused before unpickling. The whole folder is logged
as artifacts of its run (``registry/<name>/v<N>``) and registered in MLflow from that
``runs:/`` URI, never from a local path, so any registry (the project's SQLite store, a
tracking server, the Azure ML workspace) holds the model itself; ``N`` is the registry's
version number. A version missing here (a job's fresh output folder) is fetched from
``models:/<name>/<N>`` and its hashes checked before it is used.

The champion is the registry's alias ``champion`` (the registered-model tag
``amlkit.champion`` where a registry has no aliases), mirrored in ``<name>/champion.json``.
"""

from __future__ import annotations

import importlib
import json
import logging
import platform
import socket
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Literal

import mlflow
import yaml
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.models_artifact_repo import REGISTERED_MODEL_META_FILE_NAME
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
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
CHAMPION_TAG = "amlkit.champion"  # the registered model's champion where aliases are missing
REGISTRY_EXPERIMENT = "amlkit-registry"  # runs of registrations made outside any run
ARTIFACTS_FOLDER = "registry"  # a run's artifacts: registry/<name>/v<N>/
# MLflow model version tags: the folder it was staged for, the machine, and "true" once
# the folder exists (a version without it whose folder never appeared is an orphan).
PATH_TAG, HOST_TAG, COMPLETE_TAG = "amlkit_path", "amlkit_host", "amlkit_complete"
# Error codes of a registry that has no aliases (the champion then lives in CHAMPION_TAG).
_NO_ALIASES = {"ENDPOINT_NOT_FOUND", "NOT_IMPLEMENTED", "FEATURE_DISABLED"}
LIBRARIES = ("scikit-learn", "mlflow", "pandas", "numpy", "scipy", "cloudpickle")


ModelIntegrityError = integrity.ModelIntegrityError
"""A model version's files differ from the hashes recorded when it was written."""


class ModelNotFoundError(LookupError):
    """No model, version or champion of that name."""


class ChampionFileError(ValueError):
    """``champion.json`` exists but cannot be read: truncated, not JSON, or wrong fields."""


class VersionNumberError(RuntimeError):
    """The registry numbered a new version otherwise than the project's next version folder."""


class _NumberTaken(Exception):
    """The registry gave ``got`` where ``expected`` was staged (undone already)."""

    def __init__(self, expected: int, got: int) -> None:
        super().__init__(expected, got)
        self.expected, self.got = expected, got


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


def artifact_path(name: str, number: int) -> str:
    """Return where version ``number`` of ``name`` lies among its run's artifacts."""
    return f"{ARTIFACTS_FOLDER}/{name}/v{number}"


def _registry_numbers(name: str) -> list[int]:
    """Return the version numbers of ``name`` in the MLflow registry (deleted ones excluded)."""
    found = MlflowClient().search_model_versions(f"name='{name}'")
    return sorted(int(mv.version) for mv in found)


def _next_number(name: str, floor: int = 0) -> int:
    """Return the next version number: one more than the local, the registry's and ``floor``."""
    known = [*_version_numbers(model_dir(name)), *_registry_numbers(name), floor]
    return max(known) + 1


@contextmanager
def _registration_run(name: str, run_id: str | None) -> Iterator[str]:
    """Yield the run whose artifacts hold the version: ``run_id``, else a run of its own.

    A run of its own goes in the job's experiment, nested under the job's run, inside a job;
    elsewhere in experiment ``amlkit-registry``. It ends FINISHED, or FAILED on an error.
    """
    if run_id is not None:
        yield run_id
        return
    client = MlflowClient()
    job_run = tracking.job_run_id()
    if job_run is not None:
        experiment = client.get_run(job_run).info.experiment_id
        tags = {MLFLOW_PARENT_RUN_ID: job_run}
    else:
        experiment, tags = tracking.ensure_experiment(REGISTRY_EXPERIMENT), {}
    run = client.create_run(experiment, run_name=f"register-{name}", tags=tags)
    status = "FAILED"
    try:
        yield run.info.run_id
        status = "FINISHED"
    finally:
        client.set_terminated(run.info.run_id, status)


def _register_in_mlflow(
    name: str, source: str, final: Path, meta: ModelMetadata, spec: Mapping[str, Any]
) -> int:
    """Register ``source`` (a ``runs:/`` URI) as a new version of ``name``; return its number."""
    client = MlflowClient()
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    tags = {"model_sha256": meta.model_sha256, PATH_TAG: final.as_posix()}
    tags |= {HOST_TAG: socket.gethostname()} | dict(spec["tags"])
    tags |= {f"data.{key}": value for key, value in meta.data.model_dump().items()}
    run_id, description = meta.mlflow_run_id, spec["description"]
    mv = client.create_model_version(name, source, run_id, tags, description=description)
    return int(mv.version)


def _stage_once(
    name: str, number: int, run_id: str, write_model: Callable[[Path], object], **spec: Any
) -> ModelVersion:
    """Write, log and register version ``number`` (the caller holds the model's lock).

    The folder is staged, logged as artifacts of ``run_id`` and registered from there; it
    appears under its number only once the registry gave that same number (else
    :class:`_NumberTaken`, the registry's version undone).
    """
    final = model_dir(name) / str(number)
    model_file, mlflow_version = spec["model_file"], None
    client = MlflowClient()
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
            fields |= {"mlflow_run_id": run_id, "mlflow_model_version": number}
            fields |= {"library_versions": versions, "model_file": model_file, "files": files}
            meta = ModelMetadata(**fields, model_sha256=files[model_file].sha256)
            meta.write(tmp / METADATA_FILE)
            where = artifact_path(name, number)
            client.log_artifacts(run_id, str(tmp), where)
            # The registry's version points at the run's copy; PATH_TAG names the final folder,
            # which exists once the block exits.
            mlflow_version = _register_in_mlflow(name, f"runs:/{run_id}/{where}", final, meta, spec)
            if mlflow_version != number:
                raise _NumberTaken(number, mlflow_version)
    except BaseException:
        if mlflow_version is not None:  # the folder never appeared: undo the MLflow version
            client.delete_model_version(name, str(mlflow_version))
        raise
    try:
        client.set_model_version_tag(name, str(number), COMPLETE_TAG, "true")
    except MlflowException as exc:  # the folder exists: it is no orphan here either way
        logger.warning("could not mark %s version %s complete: %s", name, number, exc)
    return ModelVersion(name, number, final, meta)


def _stage(
    name: str, run_id: str, write_model: Callable[[Path], object], spec: Mapping[str, Any]
) -> ModelVersion:
    """Stage the next version; once more when the registry skipped numbers.

    The registry never reuses a number, not even a deleted version's (a registration undone
    after a failure), so its next number can lie above every visible one: the version is
    then staged again under the registry's next number. Any other disagreement is refused.
    """
    floor = 0
    for attempt in (1, 2):
        number = _next_number(name, floor)
        try:
            return _stage_once(name, number, run_id, write_model, **spec)
        except _NumberTaken as taken:
            if taken.got < taken.expected or attempt == 2:
                raise VersionNumberError(_mismatch(name, taken)) from None
            floor = taken.got  # deleted just now: the registry goes on after it
    raise AssertionError("unreachable")


def _mismatch(name: str, taken: _NumberTaken) -> str:
    local = _version_numbers(model_dir(name))
    return (
        f"the MLflow registry at {mlflow.get_registry_uri()} numbered the new version of "
        f"{name!r} {taken.got}, but this project's next version is {taken.expected} "
        f"({model_dir(name)} holds {local or 'none'}); local version numbers must equal the "
        "registry's, so nothing was registered. Another process may be registering "
        f"{name!r} in that registry at this moment: run again. If the folders there were "
        "registered in another registry, point MLFLOW_TRACKING_URI (and MLFLOW_REGISTRY_URI) "
        "at it, or move the folders aside."
    )


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

    The number is one more than the highest here and in the registry, and is the registry's
    version number too (VersionNumberError when the registry gives another, nothing kept);
    the model's lock keeps other writers here waiting. The folder is logged as artifacts of
    the run (``registry/<name>/v<N>``) and registered from there.

    ``write_model`` writes an MLflow model, loaded by ``mlflow.<flavor>``, into the folder it
    is given; ``model_file`` is its main file. ``metadata`` holds the :class:`ModelMetadata`
    fields that describe the model (pydantic.ValidationError when wrong), ``metrics`` are
    ``{split: {metric: value}}``; ``run_id`` defaults to the active run; ``description`` and
    ``tags`` go to the MLflow model version. Without a run, the version gets a run of its
    own (in experiment ``amlkit-registry``, or nested under the job's run inside a job).
    """
    names.check_name("model", name)
    if run_id is None and (active := mlflow.active_run()) is not None:
        run_id = active.info.run_id
    spec: dict[str, Any] = {"flavor": flavor, "model_file": model_file, "metadata": metadata}
    spec |= {"metrics": metrics, "hyperparameters": hyperparameters}
    spec |= {"description": description, "tags": tags or {}}
    tracking.ensure_tracking()
    # One writer per model at a time: a staged folder found under the lock, or an MLflow
    # version whose folder never appeared, was left by a killed writer.
    with io.locked(f"model-{name}"):
        io.reclaim(paths.check_inside(model_dir(name)))  # never through a link out
        _drop_orphans(name)
        with _registration_run(name, run_id) as source_run:
            version = _stage(name, source_run, write_model, spec)
    logger.info("registered %s version %s at %s", name, version.version, version.path)
    return version


def _drop_orphans(name: str) -> None:
    """Delete the MLflow versions of ``name`` left by a writer here that was killed.

    An orphan was staged for a folder of this project on this machine, never appeared and
    was never marked complete. A complete version whose folder is missing here (a job's
    fresh output folder, another machine's project) is the registry's, fetched when needed.
    """
    tracking.ensure_tracking()
    client = MlflowClient()
    here, host = model_dir(name).as_posix(), socket.gethostname()
    for mv in client.search_model_versions(f"name='{name}'"):
        tags = mv.tags or {}
        path = tags.get(PATH_TAG)
        if not path or tags.get(COMPLETE_TAG) == "true" or tags.get(HOST_TAG, host) != host:
            continue
        if Path(path).parent.as_posix() == here and not (Path(path) / METADATA_FILE).is_file():
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


def _registry_champion(name: str) -> tuple[int, str] | None:
    """Return ``(MLflow version, where)`` of the registry's champion of ``name``, or None.

    The alias ``champion``, else the registered-model tag ``amlkit.champion``.
    """
    tracking.ensure_tracking()
    try:
        registered = MlflowClient().get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    aliases = registered.aliases or {}
    if CHAMPION_ALIAS in aliases:
        return int(aliases[CHAMPION_ALIAS]), f"the MLflow alias {CHAMPION_ALIAS!r}"
    tag = (registered.tags or {}).get(CHAMPION_TAG, "")
    if tag.isdigit():
        return int(tag), f"the registered model's tag {CHAMPION_TAG}"
    return None


def _local_number(name: str, mlflow_version: int) -> int:
    """Return the version folder that records MLflow version ``mlflow_version``.

    Folders record their own number (the registry's); one registered before numbers agreed
    may record another: it is looked for. A number no folder holds is the registry's own,
    fetched when it is used.
    """
    numbers = _version_numbers(model_dir(name))
    recorded = {}
    for number in sorted(numbers, key=lambda n: n != mlflow_version):  # its own number first
        try:
            recorded[number] = _load_version(name, number).metadata.mlflow_model_version
        except ModelIntegrityError:
            continue  # a damaged version is refused when it is loaded, not here
        if recorded[number] == mlflow_version:
            return number
    if mlflow_version not in numbers:
        return mlflow_version
    raise ModelNotFoundError(
        f"the registry's champion of {name!r} is MLflow version {mlflow_version}, which no "
        f"version folder in {model_dir(name)} records (they record {recorded}); bring that "
        "version's folder here, or " + _repair_hint(name) + "."
    )


def champion_source(name: str) -> tuple[int, str] | None:
    """Return ``(version number, where it was read)`` of ``name``'s champion, else None.

    The registry's champion (its alias ``champion``, else the registered-model tag
    ``amlkit.champion``) when it names one; else ``champion.json``, its local mirror. A
    damaged ``champion.json`` is refused (ChampionFileError) even so. The champion is never
    guessed; its folder may be missing here (:func:`get_version` fetches it).
    """
    record = read_champion(name)
    found = _registry_champion(name)
    if found is None:
        return None if record is None else (record.version, CHAMPION_FILE)
    number = _local_number(name, found[0])
    if record is not None and record.version == number:
        return number, CHAMPION_FILE
    if record is not None:
        logger.warning(
            "champion of %s: %s names version %s, the registry version %s (%s); the "
            "registry's is the champion",
            name, _champion_path(name), record.version, number, found[1],
        )  # fmt: skip
    where = f"{found[1]} ({_champion_path(name)} is missing)" if record is None else found[1]
    logger.info("champion of %s: version %s, from %s", name, number, where)
    return number, where


def find_champion(name: str) -> ModelVersion | None:
    """Return ``name``'s champion version (see :func:`champion_source`), or None."""
    found = champion_source(name)
    return None if found is None else get_version(name, found[0])


def set_champion(version: ModelVersion, *, metric: str, score: float) -> ChampionRecord:
    """Make ``version`` the champion: in the registry, then ``champion.json`` atomically.

    The registry gets the tag ``amlkit.champion`` on the registered model and the alias
    ``champion`` (a registry without aliases keeps the tag alone). The record keeps
    ``metric``, ``score`` and the ``previous`` champion.
    """
    current = champion_source(version.name)
    fields = {"name": version.name, "version": version.version, "metric": metric, "score": score}
    fields |= {"mlflow_model_version": version.metadata.mlflow_model_version}
    fields |= {"previous": current[0] if current else None, "decided_at": utc_now()}
    record = ChampionRecord(**fields)
    if record.mlflow_model_version is not None:
        tracking.ensure_tracking()
        client, mlflow_version = MlflowClient(), str(record.mlflow_model_version)
        client.set_registered_model_tag(version.name, CHAMPION_TAG, mlflow_version)
        try:
            client.set_registered_model_alias(version.name, CHAMPION_ALIAS, mlflow_version)
        except MlflowException as exc:
            if exc.error_code not in _NO_ALIASES:
                raise
            logger.warning("the registry has no aliases (%s); the champion is its tag", exc)
    record.write(model_dir(version.name) / CHAMPION_FILE)
    return record


def get_version(name: str, version: int | str = "latest") -> ModelVersion:
    """Return a version: a number, ``"latest"`` or ``"champion"``; else ModelNotFoundError.

    ``"latest"`` is the newest folder here. A numbered or champion version missing here is
    fetched from the registry (``models:/<name>/<N>``), its files checked, into its folder.
    """
    numbers = _version_numbers(model_dir(name))
    if version == "latest":
        if not numbers:
            raise _no_model(name)
        number = numbers[-1]
    elif version == CHAMPION_ALIAS:
        found = champion_source(name)
        if found is None and not numbers:
            raise _no_model(name)
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
        return _fetch_version(name, number)
    return _load_version(name, number)


def _no_model(name: str) -> ModelNotFoundError:
    known = ", ".join(list_models()) or "none"
    return ModelNotFoundError(
        f"no model named {name!r} in {paths.trained_models_dir()} (models: {known}); "
        "register one first."
    )


def _fetch_version(name: str, number: int) -> ModelVersion:
    """Bring version ``number`` of ``name`` from the registry into its folder, checked.

    Under the model's lock, into a staged folder renamed only once every file matches the
    sha256 its ``model_metadata.json`` records and that record matches the registry's
    (ModelIntegrityError otherwise, nothing kept). ModelNotFoundError when the registry has
    no such version either.
    """
    tracking.ensure_tracking()
    try:
        registered = MlflowClient().get_model_version(name, str(number))
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        numbers = _version_numbers(model_dir(name))
        if not numbers:
            raise _no_model(name) from None
        raise ModelNotFoundError(
            f"model {name!r} has no version {number}; versions: {numbers} (the registry at "
            f"{mlflow.get_registry_uri()} has none either)."
        ) from None
    final = model_dir(name) / str(number)
    uri = f"models:/{name}/{number}"
    with io.locked(f"model-{name}"):
        if final.is_dir():  # fetched by another process meanwhile
            return _load_version(name, number)
        io.reclaim(paths.check_inside(model_dir(name)))
        with io.staged_directory(final) as tmp:
            mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(tmp))
            (tmp / REGISTERED_MODEL_META_FILE_NAME).unlink(missing_ok=True)  # MLflow's note
            _check_fetched(tmp, name, number, uri, registered.tags or {})
    logger.info("fetched %s version %s from %s into %s", name, number, uri, final)
    return _load_version(name, number)


def _check_fetched(folder: Path, name: str, number: int, uri: str, tags: Mapping[str, str]) -> None:
    """Refuse a fetched version whose files or record differ from what was registered."""
    fix = f"the registry's copy of {uri} differs from what was registered; register it again"
    meta_path = folder / METADATA_FILE
    if not meta_path.is_file():
        raise ModelIntegrityError(
            f"{uri} has no {METADATA_FILE}: it was not registered by amlkit; {fix}."
        )
    try:
        meta = ModelMetadata.read(meta_path)
    except ValidationError as exc:
        raise ModelIntegrityError(
            f"{uri}'s {METADATA_FILE} is not valid model metadata "
            f"({exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}); {fix}."
        ) from None
    recorded = tags.get("model_sha256", meta.model_sha256)
    if (meta.name, meta.version, meta.model_sha256) != (name, number, recorded):
        raise ModelIntegrityError(
            f"{uri}'s {METADATA_FILE} describes {meta.name!r} version {meta.version} with model "
            f"sha256 {meta.model_sha256}, but the registry records {name!r} version {number} "
            f"with {recorded}; {fix}."
        )
    verify(ModelVersion(name, number, folder, meta))


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
