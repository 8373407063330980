"""Where MLflow records runs and models: ``<state_dir>/mlflow.db``, a server, or Azure ML.

Runs use MLflow's own API; this adds the store (``mlflow ui --backend-store-uri
sqlite:///.amlkit/mlflow.db``), artifacts in the state folder (not the cwd's ``mlruns``) and
the notebook and commit as a run's source (MLflow would name the kernel's launcher).

A tracking URI the environment gives wins, whatever its scheme: inside an Azure ML job the
platform's (``azureml://``, with the job's credentials), a team's own server (``http(s)://``),
a ``file:`` or ``sqlite:`` store. Inside a job the platform has also started the job's run
and passes it in ``MLFLOW_RUN_ID``: :func:`training_run` resumes that run instead of starting
one in an experiment of its own (MLflow refuses a run of another experiment), and leaves its
status to the platform.
"""

from __future__ import annotations

import logging
import os
import subprocess
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.environment_variables import MLFLOW_TRACKING_URI
from mlflow.exceptions import MlflowException
from mlflow.tracking import fluent

from amlkit import paths
from amlkit.config import AzureConfig

logger = logging.getLogger(__name__)

# MLflow's own chatter on first use (alembic creating the schema) is not news to our users.
_QUIET_LOGGERS = ("alembic", "alembic.runtime.migration", "mlflow.store.db.utils")

TRAINING_EXPERIMENT = "amlkit-training"
RUN_NAME_TAG = "amlkit.run_name"
# The URI amlkit chose itself (local store or configured workspace). mlflow.set_tracking_uri
# also exports MLFLOW_TRACKING_URI, to this process and its children (notebook kernels, test
# workers): that value is amlkit's own choice for another project root, not the environment's.
CHOSEN_URI_ENV = "AMLKIT_CHOSEN_TRACKING_URI"
JOB_RUN_ENV = "MLFLOW_RUN_ID"
# MLflow deletes MLFLOW_RUN_ID from the environment once a run starts or ends in this process,
# so the job's run is remembered when tracking is configured.
_job_run: dict[str, str | None] = {"id": None}


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


def environment_uri(variable: str = MLFLOW_TRACKING_URI.name) -> str | None:
    """Return the URI the environment gives in ``variable`` (any scheme), or None.

    ``MLFLOW_TRACKING_URI`` (or ``MLFLOW_REGISTRY_URI``) as the platform, a CI job or the
    user set it; not the one amlkit itself exported when it chose a store
    (:data:`CHOSEN_URI_ENV`).
    """
    given = os.environ.get(variable, "").strip()
    if not given or given == os.environ.get(CHOSEN_URI_ENV):
        return None
    return given


def configure_tracking(azure_config: AzureConfig | None = None) -> str:
    """Point MLflow's tracking and registry at the environment's, the workspace's, or local.

    In this order: ``MLFLOW_TRACKING_URI`` from the environment, whatever its scheme
    (``azureml:`` inside an Azure ML job, ``http(s):`` for a team's server, ``file:``,
    ``sqlite:``), with ``MLFLOW_REGISTRY_URI`` for the registry when it is set too; the
    workspace of ``azure_config`` when it names one; else the project's SQLite store.
    Remembers the job's run (:func:`job_run_id`). Returns the tracking URI now in use.
    """
    quiet_mlflow()
    _job_run["id"] = os.environ.get(JOB_RUN_ENV) or None
    given = environment_uri()
    if given is not None:  # the job's workspace, a team server, a store named by the user
        uri = given
        registry = environment_uri("MLFLOW_REGISTRY_URI") or given
    else:
        if azure_config is not None and azure_config.workspace_configured:
            from amlkit.azure import workspace

            uri = workspace.tracking_uri(azure_config)
        else:
            artifact_root().mkdir(parents=True, exist_ok=True)
            uri = local_tracking_uri()
        registry = uri
        os.environ[CHOSEN_URI_ENV] = uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(registry)
    os.environ[MLFLOW_TRACKING_URI.name] = uri  # also when MLflow's own state already had it
    if registry == uri:
        logger.info("MLflow tracking and registry at %s", uri)
    else:
        logger.info("MLflow tracking at %s, registry at %s", uri, registry)
    return uri


def ensure_tracking() -> str:
    """Configure tracking unless a tracking URI was already chosen; return the URI."""
    if MLFLOW_TRACKING_URI.defined:  # mlflow.set_tracking_uri sets it too
        return mlflow.get_tracking_uri()
    return configure_tracking()


def job_run_id() -> str | None:
    """Return the run the platform started for this job (``MLFLOW_RUN_ID``), or None."""
    return os.environ.get(JOB_RUN_ENV) or _job_run["id"]


def in_job() -> bool:
    """Say whether this process runs inside a job whose platform gave it an MLflow run."""
    return job_run_id() is not None


def ensure_experiment(name: str) -> str:
    """Return the id of experiment ``name``, created when missing (artifacts in the state folder).

    It does not make ``name`` the active experiment.
    """
    client = MlflowClient()
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    local = mlflow.get_tracking_uri().startswith("sqlite:")
    location = (artifact_root() / name).as_uri() if local else None
    try:
        return str(client.create_experiment(name, artifact_location=location))
    except MlflowException:
        found = client.get_experiment_by_name(name)
        if found is None:  # not created by another process meanwhile
            raise
        return str(found.experiment_id)


def set_experiment(name: str) -> str:
    """Make ``name`` the active experiment (artifacts in the state folder); return its id."""
    return mlflow.set_experiment(experiment_id=ensure_experiment(name)).experiment_id


@contextmanager
def training_run(
    run_name: str,
    *,
    tags: Mapping[str, str] | None = None,
    experiment: str = TRAINING_EXPERIMENT,
) -> Iterator[Run]:
    """Yield the run that records a training: the job's inside a job, else a new one.

    Inside a job (:func:`in_job`) the platform's run is resumed, in its own experiment (the
    active experiment becomes that one, so nested runs land beside it); ``tags`` are set on it,
    ``run_name`` goes to the tag ``amlkit.run_name`` (the job keeps its display name), and on
    exit the run is left RUNNING for the platform to end with the job's outcome (Azure ML
    ignores a status set from inside the job; another server would take it). Elsewhere
    ``experiment`` becomes the active experiment and a run named ``run_name`` starts, ended
    FINISHED (FAILED on an exception) as ``mlflow.start_run`` ends it. Candidates go in it as
    ``mlflow.start_run(run_name=..., nested=True)``.
    """
    ensure_tracking()
    tags = dict(tags or {})
    job_run = job_run_id()
    if job_run is None:
        set_experiment(experiment)
        with mlflow.start_run(run_name=run_name, tags=tags) as run:
            yield run
        return
    active = mlflow.active_run()
    if active is not None and active.info.run_id == job_run:  # resumed already: keep it
        MlflowClient().set_tag(job_run, RUN_NAME_TAG, run_name)
        for key, value in tags.items():
            MlflowClient().set_tag(job_run, key, value)
        yield active
        return
    job_experiment = MlflowClient().get_run(job_run).info.experiment_id
    mlflow.set_experiment(experiment_id=job_experiment)  # the job's own, not another one
    # While MLFLOW_RUN_ID is set, MLflow's start_run(nested=True) resumes that run again
    # instead of starting a nested one: it is set aside while the job's run is active.
    given = os.environ.pop(JOB_RUN_ENV, None)
    try:
        run = mlflow.start_run(run_id=job_run, tags=tags | {RUN_NAME_TAG: run_name})
        logger.info("resumed the job's run %s (experiment %s)", job_run, job_experiment)
        try:
            yield run
        finally:
            _leave_running(job_run)
    finally:
        if given is not None:
            os.environ[JOB_RUN_ENV] = given


def _leave_running(run_id: str) -> None:
    """Take ``run_id`` off MLflow's active runs without ending it: the platform ends it.

    MLflow has no public call for this: ``end_run`` always sets a status (Azure ML's own store
    skips it for the job's run; a plain MLflow server would mark the job FINISHED before the
    job has finished). Nested runs left open by an exception are ended FAILED first.
    """
    stack = fluent._active_run_stack.get()
    while stack and stack[-1].info.run_id != run_id:
        mlflow.end_run("FAILED")
    if stack and stack[-1].info.run_id == run_id:
        stack.pop()


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
