"""What the local twin gives a job in place of the workspace: runs, a registry, a datastore.

On Azure ML, before a job's process starts, the platform has created the job's MLflow run in
the workspace (a pipeline: one run for the pipeline job, a child run per step, tagged
``mlflow.parentRunId``), mounted its inputs read-only from the datastore and made empty
folders for its outputs; the process gets the run through environment variables
(``MLFLOW_TRACKING_URI``, ``MLFLOW_RUN_ID``, ``MLFLOW_EXPERIMENT_ID``,
``MLFLOW_EXPERIMENT_NAME``, ``MLFLOW_TRACKING_TOKEN``, and azureml-mlflow's ``AZUREML_RUN_ID``,
``AZUREML_ARM_SUBSCRIPTION``, ``AZUREML_ARM_RESOURCEGROUP``, ``AZUREML_ARM_WORKSPACE_NAME``,
``AZUREML_ARM_PROJECT_NAME``). After the process, the outputs are in the datastore
(``azureml/<job>/<output>/``) and the run is ended FINISHED or FAILED.

:class:`Platform` does the same on this machine with the real stand-ins of
:mod:`amlkit.azure.standins`: an ``mlflow server`` (started in ``<folder>/mlflow`` unless a
tracking URI is given, so several twin runs and the tests can share one) and Azurite as the
workspace's default datastore ``workspaceblobstore`` (a container of that name; started in
``<folder>/azurite`` unless a connection string is given). Where Azurite is not installed,
the datastore is a local folder, with a warning.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DATASTORE = "workspaceblobstore"
TRACKING_ENV = "AMLKIT_TWIN_TRACKING_URI"
"""A running tracking server the twin uses instead of starting one (``--tracking-uri``)."""
STORAGE_ENV = "AMLKIT_TWIN_STORAGE"
"""The connection string of a running Azurite the twin uses instead of starting one."""
ASSETS = ".amlkit-twin/data"  # data assets registered by name, one JSON blob per version
TWIN_WORKSPACE = {
    "AZUREML_ARM_SUBSCRIPTION": "00000000-0000-0000-0000-000000000000",
    "AZUREML_ARM_RESOURCEGROUP": "amlkit-twin",
    "AZUREML_ARM_WORKSPACE_NAME": "amlkit-twin",
}


@dataclass
class JobRun:
    """A job's MLflow run as the platform creates it before the process starts."""

    run_id: str
    experiment_id: str
    experiment_name: str
    name: str


def datastore_uri(path: str) -> str:
    """Return ``azureml://datastores/workspaceblobstore/paths/<path>``."""
    return f"azureml://datastores/{DATASTORE}/paths/{path.strip('/')}"


def make_read_only(folder: Path) -> None:
    """Take write permission from every file and folder under ``folder`` (a read-only mount)."""
    for path in [*folder.rglob("*"), folder]:
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def make_writable(folder: Path) -> None:
    """Give write permission back under ``folder`` (before it is replaced or removed)."""
    if not folder.exists():
        return
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


class Platform(contextlib.ExitStack):
    """The tracking server, registry and datastore of a twin run (a context manager).

    Args:
        folder: where started stand-ins keep their data (``<out>/platform``).
        tracking_uri: a running tracking server; default ``$AMLKIT_TWIN_TRACKING_URI``, else
            an ``mlflow server`` started in ``folder/mlflow``.
        storage: a running Azurite's connection string; default ``$AMLKIT_TWIN_STORAGE``,
            else Azurite started in ``folder/azurite`` (a local folder when not installed).
    """

    def __init__(
        self, folder: Path, tracking_uri: str | None = None, storage: str | None = None
    ) -> None:
        super().__init__()
        self.folder = Path(folder).resolve()
        self.tracking_uri = tracking_uri or os.environ.get(TRACKING_ENV) or ""
        self.storage = storage or os.environ.get(STORAGE_ENV) or ""
        self.client: Any = None
        self.fs: Any = None
        self.root = DATASTORE  # the container (Azurite) or folder (fallback) of the datastore

    def __enter__(self) -> Platform:
        super().__enter__()
        from mlflow import MlflowClient

        from amlkit.azure import standins

        if not self.tracking_uri:
            server = self.enter_context(standins.MlflowServer(self.folder / "mlflow"))
            self.tracking_uri = server.uri
        self.client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        if not self.storage and standins.find_azurite() is not None:
            azurite = self.enter_context(standins.Azurite(self.folder / "azurite"))
            self.storage = azurite.connection_string
        if self.storage:
            import adlfs

            self.fs = adlfs.AzureBlobFileSystem(connection_string=self.storage)
            if not self.fs.exists(DATASTORE):
                self.fs.mkdir(DATASTORE)
        else:
            import fsspec

            logger.warning(
                "Azurite is not installed (`python3 dev.py setup` installs it): the datastore "
                "is the folder %s",
                self.folder / "datastore",
            )
            self.fs = fsspec.filesystem("file")
            self.root = str(self.folder / "datastore")
            self.fs.makedirs(self.root, exist_ok=True)
        logger.info("twin platform: tracking %s, datastore %s", self.tracking_uri, self.root)
        return self

    # --- tracking -----------------------------------------------------------------------------

    def start_run(
        self, experiment: str, name: str, parent: JobRun | None = None, root: JobRun | None = None
    ) -> JobRun:
        """Create a job's run (RUNNING) in ``experiment``, a child of ``parent`` if given."""
        found = self.client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else self.client.create_experiment(experiment)
        tags = {"mlflow.runName": name, "mlflow.source.type": "JOB", "azureml.twin": "true"}
        if parent is not None:
            tags["mlflow.parentRunId"] = parent.run_id
            tags["mlflow.rootRunId"] = (root or parent).run_id
        run = self.client.create_run(experiment_id, run_name=name, tags=tags)
        return JobRun(run.info.run_id, experiment_id, experiment, name)

    def end_run(self, run: JobRun, ok: bool) -> None:
        """End a job's run FINISHED or FAILED, as the platform does after the process.

        Quietly: MLflow prints the run's URL when a run ends on a tracking server, which is
        the platform's business here, not the output of whoever started the job.
        """
        from mlflow.environment_variables import MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT

        name = MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT.name
        before = os.environ.get(name)
        os.environ[name] = "true"
        try:
            self.client.set_terminated(run.run_id, "FINISHED" if ok else "FAILED")
        finally:
            if before is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = before

    def job_environment(self, run: JobRun) -> dict[str, str]:
        """Return the variables the platform gives a job's process for its run."""
        return {
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "MLFLOW_RUN_ID": run.run_id,
            "MLFLOW_EXPERIMENT_ID": run.experiment_id,
            "MLFLOW_EXPERIMENT_NAME": run.experiment_name,
            "MLFLOW_TRACKING_TOKEN": "amlkit-twin",  # a job gets a token; the server ignores it
            "AZUREML_RUN_ID": run.run_id,
            "AZUREML_ARM_PROJECT_NAME": run.experiment_name,
            **TWIN_WORKSPACE,
        }

    # --- datastore ----------------------------------------------------------------------------

    def _remote(self, path: str) -> str:
        return f"{self.root}/{path.strip('/')}"

    def exists(self, path: str) -> bool:
        """Whether anything is stored at or under ``path`` in the datastore."""
        return bool(self.fs.exists(self._remote(path)))

    def upload(self, local: Path, path: str) -> str:
        """Copy a file or a folder's files to ``path`` in the datastore; return its URI."""
        local = Path(local)
        files = [local] if local.is_file() else sorted(p for p in local.rglob("*") if p.is_file())
        for file in files:
            rel = file.name if local.is_file() else file.relative_to(local).as_posix()
            self.fs.put_file(str(file), self._remote(f"{path}/{rel}"))
        return datastore_uri(path)

    def download(self, path: str, local: Path, *, read_only: bool = False) -> Path:
        """Copy what the datastore holds under ``path`` into the folder ``local`` (made anew).

        With ``read_only``, the copy loses its write permissions, as a read-only mount.
        """
        make_writable(local)
        if local.exists():
            shutil.rmtree(local)
        local.mkdir(parents=True)
        remote = self._remote(path)
        found = self.fs.find(remote) if self.fs.exists(remote) else []
        for blob in found:
            rel = blob[len(remote) :].lstrip("/") or Path(blob).name
            target = local / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            self.fs.get_file(blob, str(target))
        if read_only:
            make_read_only(local)
        return local

    def upload_asset(self, name: str, version: str, local: Path) -> str:
        """Upload a data asset's local file or folder once (``LocalUpload/<hash>/<name>``).

        Returns its datastore path (a file's path for a ``uri_file`` asset).
        """
        digest = hashlib.sha256(f"{name}:{version}".encode()).hexdigest()[:32]
        path = f"LocalUpload/{digest}/{local.name}"
        if not self.exists(path):
            self.upload(local, f"LocalUpload/{digest}" if local.is_file() else path)
        return path

    def register_data(self, name: str, path: str, kind: str, job: str) -> dict[str, Any]:
        """Register a named job output as the next version of data asset ``name``."""
        folder = self._remote(f"{ASSETS}/{name}")
        versions = [
            int(Path(p).stem)
            for p in (self.fs.ls(folder) if self.fs.exists(folder) else [])
            if Path(p).stem.isdigit()
        ]
        record = {
            "name": name,
            "version": str(max(versions, default=0) + 1),
            "type": kind,
            "path": datastore_uri(path),
            "job": job,
        }
        with self.fs.open(f"{folder}/{record['version']}.json", "wb") as handle:
            handle.write(json.dumps(record, indent=2).encode())
        return record

    # --- registry -----------------------------------------------------------------------------

    def mount_model(self, reference: str, folder: Path) -> Path:
        """Lay a registered model version out as the platform mounts it; return the model dir.

        ``reference`` is ``azureml:<name>:<version>`` or ``azureml:<name>@latest``, read from
        this platform's registry; the files land in ``<folder>/<name>/<version>/<artifact
        folder>/`` and the returned ``<folder>/<name>/<version>`` is ``AZUREML_MODEL_DIR``.

        Raises:
            LookupError: the registry has no such model or version.
        """
        from mlflow.exceptions import MlflowException

        body = reference.removeprefix("azureml:")
        name, version = body.split("@", 1) if "@" in body else body.rsplit(":", 1)
        try:
            if version == "latest":
                found = self.client.search_model_versions(f"name = '{name}'")
                if not found:
                    raise LookupError(f"the registry at {self.tracking_uri} has no model {name!r}")
                version = str(max(int(v.version) for v in found))
            source = self.client.get_model_version_download_uri(name, version)
        except MlflowException as exc:
            raise LookupError(f"not in the registry at {self.tracking_uri}: {exc}") from exc
        import mlflow

        target = folder / name / version
        make_writable(target)
        if target.exists():
            shutil.rmtree(target)
        artifact = Path(source.rstrip("/")).name or "model"
        (target / artifact).mkdir(parents=True)
        mlflow.artifacts.download_artifacts(
            f"models:/{name}/{version}", dst_path=str(target / artifact),
            tracking_uri=self.tracking_uri,
        )  # fmt: skip
        make_read_only(target)
        return target
