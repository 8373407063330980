"""The packaged service in the MLflow registry: ``<model>-packaged``, one version per content.

``amlkit package`` logs the service folder (``service_metadata.json``, ``model/``, the
scoring code) as artifacts of a run and registers them from ``runs:/<run>/service`` in the
registry MLflow points at (the workspace's inside an Azure ML job, a tracking server's, or the
local store), tagged with the source model and version (:data:`SOURCE_MODEL_TAG`,
:data:`SOURCE_VERSION_TAG`) and a hash of the content. Packaging the same content again
reuses that version. A deployment names the version exactly; the platform mounts it at
``$AZUREML_MODEL_DIR/service/``, where the scoring script finds ``service_metadata.json``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amlkit import io

logger = logging.getLogger(__name__)

SUFFIX = "-packaged"
ARTIFACT_PATH = "service"  # the folder the platform mounts under AZUREML_MODEL_DIR
EXPERIMENT = "amlkit-packaging"
SOURCE_MODEL_TAG = "amlkit.source_model"
SOURCE_VERSION_TAG = "amlkit.source_version"
CONTENT_TAG = "amlkit.content_sha256"
BACKEND_TAG = "amlkit.backend"
PICKLED_TAG = "amlkit.pickled_modules"
SERVICE_FILE = "service_metadata.json"
NOT_PACKAGED = ("azure", "logs", "__pycache__", ".*")  # local specs and logs stay here


def packaged_model_name(model: str) -> str:
    """Return the registered name of ``model``'s packaged service: ``<model>-packaged``."""
    return f"{model}{SUFFIX}"


@dataclass(frozen=True)
class PackagedVersion:
    """One registered version of a packaged service."""

    name: str
    version: int
    source_model: str
    source_version: int
    backend: str | None
    pickled_modules: tuple[str, ...] = ()
    reused: bool = False

    @property
    def ref(self) -> str:
        """``NAME:VERSION``, as ``amlkit azure deploy --model`` takes it."""
        return f"{self.name}:{self.version}"


def content_sha256(service_dir: str | Path) -> str:
    """Return a hash of what a service folder serves: every file but its metadata's timestamp.

    ``service_metadata.json`` is left out (it holds the packaging time); the model files it
    records are hashed with the rest.
    """
    folder = Path(service_dir)
    files = {
        path.relative_to(folder).as_posix(): io.sha256_file(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and _packaged(path.relative_to(folder)) and path.name != SERVICE_FILE
    }
    return io.sha256_text(io.canonical_json(files))


def _packaged(relative: Path) -> bool:
    return not any(part.startswith(".") or part in NOT_PACKAGED for part in relative.parts)


def _as_packaged(version: Any, reused: bool = False) -> PackagedVersion:
    tags = version.tags or {}
    pickled = tuple(filter(None, tags.get(PICKLED_TAG, "").split(",")))
    return PackagedVersion(
        name=version.name,
        version=int(version.version),
        source_model=tags.get(SOURCE_MODEL_TAG, ""),
        source_version=int(tags.get(SOURCE_VERSION_TAG) or 0),
        backend=tags.get(BACKEND_TAG),
        pickled_modules=pickled,
        reused=reused,
    )


def find_packaged(
    model: str, source_version: int | str, *, content: str | None = None, client: Any = None
) -> PackagedVersion | None:
    """Return the newest registered packaging of ``model`` version ``source_version``, or None.

    Args:
        model: the trained model's registered name.
        source_version: its version.
        content: a :func:`content_sha256` the version must carry too.
        client: an ``MlflowClient``; default one on the configured registry.
    """
    from mlflow import MlflowClient

    client = client or MlflowClient()
    name = packaged_model_name(model)
    found = [
        v
        for v in client.search_model_versions(f"name = '{name}'")
        if (v.tags or {}).get(SOURCE_MODEL_TAG) == model
        and (v.tags or {}).get(SOURCE_VERSION_TAG) == str(source_version)
        and (content is None or (v.tags or {}).get(CONTENT_TAG) == content)
    ]
    if not found:
        return None
    return _as_packaged(max(found, key=lambda v: int(v.version)), reused=content is not None)


def get_packaged(ref: str, client: Any = None) -> PackagedVersion:
    """Return the registered packaged version ``NAME:VERSION`` (LookupError naming it)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    name, _, version = ref.partition(":")
    try:
        return _as_packaged((client or MlflowClient()).get_model_version(name, version))
    except MlflowException as exc:
        raise LookupError(
            f"the registry has no model version {ref}; package the model with `amlkit package` "
            "(it registers <model>-packaged) or name a version it has"
        ) from exc


def register_packaged(service_dir: str | Path) -> PackagedVersion:
    """Register a packaged service folder as ``<model>-packaged`` from ``runs:/``; or reuse it.

    The folder is logged as artifacts (``service/``) of the job's run when MLflow gives one
    (``MLFLOW_RUN_ID``), else of a run of its own in experiment ``amlkit-packaging``. The
    folder's ``service_metadata.json`` then records the version as ``registered``.
    """
    from mlflow import MlflowClient

    from amlkit.registry import tracking

    folder = Path(service_dir)
    info = io.read_json(folder / SERVICE_FILE)
    model, source_version = str(info["model"]["name"]), int(info["model"]["version"])
    content = content_sha256(folder)
    tracking.ensure_tracking()
    client = MlflowClient()
    packaged = find_packaged(model, source_version, content=content, client=client)
    if packaged is None:
        packaged = _register(client, folder, info, content)
        logger.info("registered %s from the service folder %s", packaged.ref, folder)
    else:
        logger.info(
            "%s already holds this packaging of %s v%s", packaged.ref, model, source_version
        )
    registered = {"name": packaged.name, "version": packaged.version}
    if info.get("registered") != registered:
        io.write_json_atomic(folder / SERVICE_FILE, info | {"registered": registered})
    return packaged


def _register(client: Any, folder: Path, info: dict[str, Any], content: str) -> PackagedVersion:
    from mlflow.exceptions import MlflowException

    from amlkit.registry import tracking

    model, source_version = str(info["model"]["name"]), int(info["model"]["version"])
    name = packaged_model_name(model)
    run_id = os.environ.get("MLFLOW_RUN_ID")
    own_run = not run_id
    if own_run:
        experiment = tracking.set_experiment(EXPERIMENT)
        run_id = client.create_run(
            experiment, run_name=f"package {model} v{source_version}"
        ).info.run_id
    try:
        with tempfile.TemporaryDirectory(prefix="amlkit-packaged-") as tmp:
            staged = Path(tmp) / ARTIFACT_PATH
            shutil.copytree(folder, staged, ignore=shutil.ignore_patterns(*NOT_PACKAGED))
            client.log_artifacts(run_id, str(staged), ARTIFACT_PATH)
        try:
            client.create_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        pickled = sorted(info.get("pickled_modules") or [])
        tags = {
            SOURCE_MODEL_TAG: model,
            SOURCE_VERSION_TAG: str(source_version),
            CONTENT_TAG: content,
            BACKEND_TAG: str(info.get("backend")),
            PICKLED_TAG: ",".join(pickled),
        }
        version = client.create_model_version(
            name,
            f"runs:/{run_id}/{ARTIFACT_PATH}",
            run_id,
            tags,
            description=f"{model} v{source_version} packaged for serving "
            f"(backend {info.get('backend')})",
        )
    finally:
        if own_run:
            client.set_terminated(run_id)
    return _as_packaged(version)
