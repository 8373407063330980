"""Where MLflow records runs and models: ``<state_dir>/mlflow.db``, or the Azure ML workspace.

Runs use MLflow's own API; this adds the store (``mlflow ui --backend-store-uri
sqlite:///.amlkit/mlflow.db``), artifacts in the state folder (not the cwd's ``mlruns``) and
the notebook and commit as a run's source (MLflow would name the kernel's launcher).
"""

from __future__ import annotations

import logging
import subprocess
import warnings
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.environment_variables import MLFLOW_TRACKING_URI
from mlflow.exceptions import MlflowException

from amlkit import paths
from amlkit.config import AzureConfig

logger = logging.getLogger(__name__)

# MLflow's own chatter on first use (alembic creating the schema) is not news to our users.
_QUIET_LOGGERS = ("alembic", "alembic.runtime.migration", "mlflow.store.db.utils")


def local_tracking_uri() -> str:
    """Return ``sqlite:///<state_dir>/mlflow.db``."""
    return f"sqlite:///{(paths.state_dir() / 'mlflow.db').as_posix()}"


def artifact_root() -> Path:
    """Return ``<state_dir>/mlartifacts``, where local runs keep their artifacts."""
    return paths.state_dir() / "mlartifacts"


def quiet_mlflow() -> None:
    """Silence MLflow's start-up messages and a false alarm on every local data set path.

    The "interpreted in multiple ways" warning names two schemes of the same source class.
    """
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings(
        "ignore", message="The specified dataset source can be interpreted in multiple ways"
    )


def configure_tracking(azure_config: AzureConfig | None = None) -> str:
    """Point MLflow's tracking and registry at the workspace, else local; return the URI."""
    quiet_mlflow()
    if azure_config is not None and azure_config.workspace_configured:
        from amlkit.azure import workspace

        uri = workspace.tracking_uri(azure_config)
    else:
        artifact_root().mkdir(parents=True, exist_ok=True)
        uri = local_tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    logger.info("MLflow tracking and registry at %s", uri)
    return uri


def ensure_tracking() -> str:
    """Configure local tracking unless a tracking URI was already chosen; return the URI."""
    if MLFLOW_TRACKING_URI.defined:  # mlflow.set_tracking_uri sets it too
        return mlflow.get_tracking_uri()
    return configure_tracking()


def set_experiment(name: str) -> str:
    """Make ``name`` the active experiment (artifacts in the state folder); return its id."""
    client = MlflowClient()
    if client.get_experiment_by_name(name) is None:
        local = mlflow.get_tracking_uri().startswith("sqlite:")
        location = (artifact_root() / name).as_uri() if local else None
        try:
            client.create_experiment(name, artifact_location=location)
        except MlflowException:
            if client.get_experiment_by_name(name) is None:  # not created by another process
                raise
    return mlflow.set_experiment(name).experiment_id


def code_commit(folder: str | Path | None = None) -> str:
    """Return ``git rev-parse HEAD`` of ``folder``, or ``"unknown"`` outside git.

    By default the project root, then the package's folder (for ``AMLKIT_ROOT`` elsewhere).
    """
    folders = [Path(folder)] if folder else [paths.project_root(), Path(__file__).parent]
    for where in folders:
        try:
            command = ["git", "rev-parse", "HEAD"]
            done = subprocess.run(command, cwd=where, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.strip()
    return "unknown"


def source_tags(notebook: str) -> dict[str, str]:
    """Return MLflow's source tags naming ``notebook`` (a repository path) and the commit."""
    tags = {"mlflow.source.type": "NOTEBOOK", "mlflow.source.name": notebook}
    return tags | {"mlflow.source.git.commit": code_commit()}
