"""MLflow experiment tracking: where runs go, and small helpers to log them.

Locally (the default) MLflow keeps runs and the model registry in one SQLite file,
``<state_dir>/mlflow.db``, and artifacts under ``<state_dir>/mlartifacts``. Browse them with::

    mlflow ui --backend-store-uri sqlite:///.amlkit/mlflow.db

(from the repository root; add ``--port 5000 --host 127.0.0.1`` to choose where it listens).

With ``config/azure_config.json`` filled in, :func:`configure_tracking` points MLflow at the
workspace's tracking URI instead (azure-ai-ml + azureml-mlflow; needs credentials and network).
Inside an Azure ML job, the platform's own tracking URI (``MLFLOW_TRACKING_URI``, an
``azureml://`` URI with the job's credentials) wins, so runs land in the job's workspace.
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from amlkit import paths
from amlkit.config import AzureConfig

logger = logging.getLogger(__name__)

DB_NAME = "mlflow.db"
ARTIFACTS_NAME = "mlartifacts"
MAX_PARAM_CHARS = 6000  # MLflow's limit on a parameter value
# MLflow's own chatter on first use (alembic creating the schema) is not news to our users.
_QUIET_LOGGERS = ("alembic", "alembic.runtime.migration", "mlflow.store.db.utils")


def local_tracking_uri() -> str:
    """Return the local SQLite tracking URI, ``sqlite:///<state_dir>/mlflow.db``."""
    return f"sqlite:///{(paths.state_dir() / DB_NAME).as_posix()}"


def artifact_root() -> Path:
    """Return the folder where local runs keep their artifacts (``<state_dir>/mlartifacts``)."""
    return paths.state_dir() / ARTIFACTS_NAME


def quiet_mlflow() -> None:
    """Silence MLflow's informational start-up messages (schema creation, migrations)."""
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def configure_tracking(azure_config: AzureConfig | None = None) -> str:
    """Point MLflow's tracking and model registry at the local store or the Azure workspace.

    Args:
        azure_config: the content of ``config/azure_config.json``; None or blank fields mean
            local tracking in ``<state_dir>/mlflow.db``.

    Returns:
        The tracking URI now in use (the registry URI is the same). Inside an Azure ML job
        it is the job's workspace, whatever ``azure_config`` says.
    """
    quiet_mlflow()
    job_uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if job_uri.startswith("azureml:"):  # an Azure ML job: its workspace, its credentials
        uri = job_uri
    elif azure_config is not None and azure_config.workspace_configured:
        from amlkit.azure import workspace

        uri = workspace.tracking_uri(azure_config)
    else:
        artifact_root().mkdir(parents=True, exist_ok=True)
        uri = local_tracking_uri()
        if not (paths.state_dir() / DB_NAME).exists():
            _create_local_store(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    logger.info("MLflow tracking and registry at %s", uri)
    return uri


def _create_local_store(uri: str) -> None:
    """Create the SQLite schema with the default experiment's artifacts in the state folder.

    Left to MLflow, the ``Default`` experiment would keep artifacts in ``./mlruns`` of
    whatever folder the first process happened to run in.
    """
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    SqlAlchemyStore(uri, artifact_root().as_uri())


def ensure_tracking() -> str:
    """Configure local tracking unless a tracking URI was already chosen; return the URI."""
    from mlflow.tracking._tracking_service.utils import is_tracking_uri_set

    if is_tracking_uri_set():
        return mlflow.get_tracking_uri()
    return configure_tracking()


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


def get_or_create_experiment(name: str) -> str:
    """Return the id of experiment ``name``, creating it (artifacts in the state folder).

    Args:
        name: the experiment's name.

    Returns:
        The experiment id.
    """
    client = MlflowClient()
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if mlflow.get_tracking_uri().startswith("sqlite:"):
        location = (artifact_root() / name).as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:
        found = client.get_experiment_by_name(name)  # created meanwhile by another process
        if found is None:
            raise
        return found.experiment_id


def data_tags(data_info: Mapping[str, Any] | None) -> dict[str, str]:
    """Return run tags for a data version: ``data.dataset``, ``data.version``, ``data.sha256``."""
    if not data_info:
        return {}
    return {f"data.{key}": str(value) for key, value in data_info.items() if value is not None}


@contextmanager
def start_run(
    experiment: str,
    run_name: str | None = None,
    tags: Mapping[str, Any] | None = None,
    *,
    data_info: Mapping[str, Any] | None = None,
    nested: bool = False,
) -> Iterator[mlflow.ActiveRun]:
    """Start an MLflow run tagged with the code commit and the data version.

    Args:
        experiment: the experiment's name (created if missing).
        run_name: a readable name for the run.
        tags: extra tags.
        data_info: ``{dataset, version, sha256}`` of the data the run uses.
        nested: start the run inside the active one.

    Yields:
        The active run; it ends (FINISHED, or FAILED on an exception) when the block exits.
    """
    ensure_tracking()
    experiment_id = get_or_create_experiment(experiment)
    commit = code_commit()
    all_tags = {"code_commit": commit, "mlflow.source.git.commit": commit}
    all_tags |= data_tags(data_info)
    all_tags |= {key: str(value) for key, value in (tags or {}).items()}
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=run_name, tags=all_tags, nested=nested
    ) as run:
        yield run


def flatten(obj: Mapping[str, Any], prefix: str = "", sep: str = "_") -> dict[str, Any]:
    """Flatten nested mappings: ``{"test": {"accuracy": 1}}`` -> ``{"test_accuracy": 1}``.

    Args:
        obj: the nested mapping.
        prefix: a prefix for every key.
        sep: the separator between levels.

    Returns:
        A flat dict.
    """
    flat: dict[str, Any] = {}
    for key, value in obj.items():
        full = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat |= flatten(value, full, sep)
        else:
            flat[full] = value
    return flat


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def log_metrics(
    metrics: Mapping[str, Any], prefix: str = "", step: int | None = None
) -> dict[str, float]:
    """Log (nested) metrics to the active run; non-numbers and NaN/inf are skipped.

    Args:
        metrics: for example ``{"test": {"accuracy": 0.9}}``, logged as ``test_accuracy``.
        prefix: a prefix for every name.
        step: the training step, if any.

    Returns:
        The flat metrics that were logged.
    """
    flat = {}
    for key, value in flatten(metrics, prefix).items():
        number = _as_number(value)
        if number is None:
            logger.debug("metric %s=%r is not a finite number; not logged", key, value)
            continue
        flat[key] = number
    if flat:
        mlflow.log_metrics(flat, step=step)
    return flat


def log_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Log (nested) parameters to the active run, as strings cut to MLflow's limit.

    Args:
        params: the parameters; nested levels are joined with ``.``.
        prefix: a prefix for every name.

    Returns:
        The flat parameters that were logged.
    """
    flat = {
        key: str(value)[:MAX_PARAM_CHARS] for key, value in flatten(params, prefix, ".").items()
    }
    if flat:
        mlflow.log_params(flat)
    return flat


def log_dict(obj: Any, artifact_file: str, run_id: str | None = None) -> None:
    """Log a dict as a JSON (or ``.yaml``) artifact of the active run or of ``run_id``.

    Args:
        obj: a JSON-serialisable object.
        artifact_file: the path inside the run's artifacts, e.g. ``"metrics/test.json"``.
        run_id: a run other than the active one.
    """
    if run_id is None:
        mlflow.log_dict(obj, artifact_file)
    else:
        MlflowClient().log_dict(run_id, obj, artifact_file)


def log_figure(figure: Any, artifact_file: str) -> None:
    """Log a matplotlib figure as an image artifact of the active run.

    Args:
        figure: the matplotlib figure.
        artifact_file: the path inside the run's artifacts; ``.png`` is added if no suffix.
    """
    if not Path(artifact_file).suffix:
        artifact_file += ".png"
    mlflow.log_figure(figure, artifact_file)
