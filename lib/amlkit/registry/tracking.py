"""Where MLflow records runs and models: a local SQLite store, or the Azure ML workspace.

Locally (the default) MLflow keeps runs and the model registry in one SQLite file,
``<state_dir>/mlflow.db``, and artifacts under ``<state_dir>/mlartifacts``. Browse them with::

    mlflow ui --backend-store-uri sqlite:///.amlkit/mlflow.db

With ``config/azure_config.json`` filled in, :func:`configure_tracking` points MLflow at the
workspace's tracking URI instead (azure-ai-ml + azureml-mlflow; needs credentials and network).

Runs are logged with MLflow's own API (``mlflow.start_run``, ``log_params``, ``log_metrics``,
``log_figure``, ``log_input`` ...). This module adds only what MLflow does not do for us: the
store's location, experiments whose artifacts stay in the state folder (MLflow would put
them in ``./mlruns`` of whatever folder the process runs in), and the notebook and the git
commit as a run's source (in a Jupyter kernel MLflow would record the kernel's launcher).
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

DB_NAME = "mlflow.db"
ARTIFACTS_NAME = "mlartifacts"
# MLflow's own chatter on first use (alembic creating the schema) is not news to our users.
_QUIET_LOGGERS = ("alembic", "alembic.runtime.migration", "mlflow.store.db.utils")


def local_tracking_uri() -> str:
    """Return the local SQLite tracking URI, ``sqlite:///<state_dir>/mlflow.db``."""
    return f"sqlite:///{(paths.state_dir() / DB_NAME).as_posix()}"


def artifact_root() -> Path:
    """Return the folder where local runs keep their artifacts (``<state_dir>/mlartifacts``)."""
    return paths.state_dir() / ARTIFACTS_NAME


def quiet_mlflow() -> None:
    """Silence MLflow's start-up messages (schema creation, migrations) and a false alarm.

    MLflow registers its local-file data set source for both the ``""`` and ``"file"`` URI
    schemes, then warns on every local path given to ``mlflow.data.from_pandas`` that it
    "can be interpreted in multiple ways" (both are the same ``LocalArtifactDatasetSource``).
    """
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings(
        "ignore", message="The specified dataset source can be interpreted in multiple ways"
    )


def configure_tracking(azure_config: AzureConfig | None = None) -> str:
    """Point MLflow's tracking and model registry at the local store or the Azure workspace.

    Args:
        azure_config: the content of ``config/azure_config.json``; None or blank fields mean
            local tracking in ``<state_dir>/mlflow.db``.

    Returns:
        The tracking URI now in use (the registry URI is the same).
    """
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
    """Make ``name`` the active experiment, creating it with its artifacts in the state folder.

    Args:
        name: the experiment's name.

    Returns:
        The experiment id.
    """
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
    """Return ``git rev-parse HEAD`` of a folder, or ``"unknown"`` when it is not in git.

    Args:
        folder: the folder to ask; by default the project root, then the package's folder
            (so runs with ``AMLKIT_ROOT`` elsewhere still record the code's commit).

    Returns:
        The commit hash, or ``"unknown"``.
    """
    folders = [Path(folder)] if folder else [paths.project_root(), Path(__file__).parent]
    for where in folders:
        try:
            done = subprocess.run(
                ["git", "rev-parse", "HEAD"],
                cwd=where,
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.strip()
    return "unknown"


def source_tags(notebook: str) -> dict[str, str]:
    """Return MLflow's system tags that name a notebook and the code's commit as a run's source.

    Args:
        notebook: the notebook's path in the repository, such as
            ``notebooks/04_model_training_evaluation.ipynb``.

    Returns:
        ``mlflow.source.type``, ``mlflow.source.name`` and ``mlflow.source.git.commit``, for
        ``mlflow.start_run(tags=...)``.
    """
    return {
        "mlflow.source.type": "NOTEBOOK",
        "mlflow.source.name": notebook,
        "mlflow.source.git.commit": code_commit(),
    }
