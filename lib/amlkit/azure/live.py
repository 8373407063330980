"""What ``amlkit azure submit``, ``deploy`` and ``champion`` do against a live workspace.

``deploy`` is :mod:`amlkit.azure.rollout`'s blue/green with :class:`WorkspaceTarget`;
``champion`` reads the registry ``MLFLOW_TRACKING_URI`` names when it is set (a twin's
tracking server), the workspace's otherwise.

Everything here needs the workspace of ``config/azure_config.json`` and credentials
(azure-identity's ``DefaultAzureCredential``: ``az login``, a service principal's
``AZURE_*`` variables, a managed identity, or OIDC in CI). :func:`connect` checks both first
and raises :class:`Skipped` with the reason when either is missing; the CLI turns that into
exit status 3 ("skipped"), which CI treats as skipped, not failed. This machine never has
them, so the tests check only that the skip happens and says why.

The specs come from a plan (:mod:`amlkit.azure.plan`), loaded with the SDK's loaders: what is
submitted is exactly what ``amlkit azure plan`` wrote and validated.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from amlkit.azure import specs, workspace
from amlkit.azure.plan import Entry, read_plan
from amlkit.config import AzureConfig

logger = logging.getLogger(__name__)

MANAGEMENT_SCOPE = "https://management.azure.com/.default"


class Skipped(RuntimeError):
    """No workspace is configured, or no credentials: the live action is skipped."""


def connect(azure_config: AzureConfig) -> Any:
    """Return an ``MLClient`` for the configured workspace, after checking credentials.

    Raises:
        Skipped: no workspace in ``azure_config.json``, or no usable credentials.
    """
    if not azure_config.workspace_configured:
        raise Skipped(
            "config/azure_config.json names no workspace; fill subscription_id, "
            "resource_group and workspace_name to use Azure ML"
        )
    from azure.identity import DefaultAzureCredential

    credential = DefaultAzureCredential()
    try:
        credential.get_token(MANAGEMENT_SCOPE)
    except Exception as exc:  # azure-identity raises one of several credential errors
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise Skipped(
            f"no usable Azure credentials ({reason}); sign in with `az login` or set the "
            "AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET variables"
        ) from exc
    return workspace.ml_client(azure_config, credential)


def _entry(entries: list[Entry], name: str) -> Entry:
    for entry in entries:
        if entry.name == name:
            return entry
    jobs = [e.name for e in entries if e.kind in ("pipeline", "sweep", "command")]
    raise ValueError(f"the plan has no {name!r}; it has: {', '.join(jobs)}")


def _load(plan_dir: Path, entry: Entry) -> Any:
    return specs.validate(plan_dir / entry.file, entry.kind)


def _create_job(client: Any, plan_dir: Path, entry: Entry) -> Any:
    """Submit a planned job from its spec's folder, which its local ``code`` is relative to."""
    job = _load(plan_dir, entry)
    with contextlib.chdir((plan_dir / entry.file).parent):
        return client.jobs.create_or_update(job)


COMPUTE_ROLES = (
    "Contributor or AzureML Compute Operator on the workspace (AzureML Data Scientist may "
    "not create computes)"
)


def _refused(exc: Exception) -> bool:
    """Whether Azure refused an action for lack of rights (403 or an authorization error)."""
    code = getattr(exc, "status_code", None) or getattr(
        getattr(exc, "response", None), "status_code", None
    )
    text = f"{type(exc).__name__} {exc}".lower()
    return code == 403 or "authorizationfailed" in text or "does not have authorization" in text


def ensure_compute(client: Any, cluster: Any) -> str:
    """Create the compute cluster when the workspace has none of that name; never update one.

    A cluster that exists may be shared, with settings its owners chose (size, nodes, idle
    time, identity): it is used as it is. Creating one needs the right to write computes.

    Returns:
        ``"exists"`` or ``"created"``.

    Raises:
        PermissionError: creating was refused; the message names the cluster and the role.
    """
    from azure.core.exceptions import ResourceNotFoundError

    try:
        client.compute.get(cluster.name)
    except ResourceNotFoundError:
        pass
    else:
        logger.info("compute cluster %s exists: used as it is, not updated", cluster.name)
        return "exists"
    try:
        client.compute.begin_create_or_update(cluster).result()
    except Exception as exc:
        if not _refused(exc):
            raise
        raise PermissionError(
            f"the workspace has no compute cluster {cluster.name!r} and this identity may not "
            f"create one ({type(exc).__name__}). Ask for {COMPUTE_ROLES}, or have an "
            "administrator create it once (`az ml compute create -f <plan>/compute/"
            f"{cluster.name}.yml`), or name an existing cluster in azure_config.json's "
            "compute_cluster"
        ) from exc
    logger.info("compute cluster %s created", cluster.name)
    return "created"


def create_prerequisites(client: Any, plan_dir: Path, entries: list[Entry]) -> None:
    """Create the environments, the compute cluster (only when missing) and the data assets.

    Raises:
        PermissionError: the cluster is missing and this identity may not create it.
    """
    for entry in entries:
        if entry.file == "-":
            continue
        if entry.kind == "environment":
            client.environments.create_or_update(_load(plan_dir, entry))
        elif entry.kind == "compute":
            ensure_compute(client, _load(plan_dir, entry))
        elif entry.kind == "data":
            asset = _load(plan_dir, entry)
            try:  # versions are immutable: one that exists is the same content
                client.data.get(asset.name, version=asset.version)
            except Exception:
                client.data.create_or_update(asset)


TERMINAL = ("Completed", "Failed", "Canceled", "NotResponding")
"""Job statuses after which nothing more happens (Azure ML's ``JobStatus``)."""


def submit(plan_dir: Path, job: str, *, wait: bool) -> dict[str, Any]:
    """Submit a planned job (the training pipeline by default); stream it with ``wait``.

    CD does not hold one sign-in through a long wait: it submits without ``wait`` and
    polls with :func:`wait_for_job` (``amlkit azure wait``), signing in again between polls.

    Returns:
        ``{"name", "status", "studio_url"}`` of the submitted job.
    """
    azure_config = AzureConfig.load()
    client = connect(azure_config)
    entries = read_plan(plan_dir)
    create_prerequisites(client, plan_dir, entries)
    entry = _entry(entries, job)
    created = _create_job(client, plan_dir, entry)
    if entry.kind == "pipeline" and azure_config.pipeline_schedule.enabled:
        schedule = _entry(entries, f"{job}-schedule")
        client.schedules.begin_create_or_update(_load(plan_dir, schedule)).result()
    if wait:
        client.jobs.stream(created.name)
        created = client.jobs.get(created.name)
    return {"name": created.name, "status": created.status, "studio_url": created.studio_url}


def wait_for_job(
    client: Any,
    name: str,
    *,
    timeout_s: float,
    poll_s: float = 30.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll a job's status until it ends or ``timeout_s`` passes.

    Each poll is one short call (``client.jobs.get``), so the caller may sign in again
    between calls; nothing holds a connection or a token for the whole run.

    Returns:
        ``{"name", "status", "studio_url", "finished"}``; ``finished`` is False when the
        time ran out with the job still going.
    """
    if timeout_s < 0 or poll_s < 0:
        raise ValueError(f"timeout {timeout_s} s and poll {poll_s} s must be 0 or more seconds")
    deadline = clock() + timeout_s
    while True:
        found = client.jobs.get(name)
        finished = found.status in TERMINAL
        if finished or clock() + poll_s > deadline:
            return {
                "name": found.name,
                "status": found.status,
                "studio_url": found.studio_url,
                "finished": finished,
            }
        logger.info("job %s: %s", name, found.status)
        sleep(poll_s)


def wait(name: str, *, timeout_s: float, poll_s: float = 30.0) -> dict[str, Any]:
    """Connect with the credentials of now and wait for job ``name`` (:func:`wait_for_job`)."""
    client = connect(AzureConfig.load())
    return wait_for_job(client, name, timeout_s=timeout_s, poll_s=poll_s)


def registry_client(azure_config: AzureConfig | None = None) -> Any:
    """Return an ``MlflowClient`` on the registry CD reads.

    ``MLFLOW_TRACKING_URI``'s when it is set (a twin's tracking server, or a job's workspace),
    else the configured workspace's.

    Raises:
        Skipped: neither is there.
    """
    from mlflow import MlflowClient

    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri:
        azure_config = azure_config or AzureConfig.load()
        connect(azure_config)
        uri = workspace.tracking_uri(azure_config)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def champion(model: str, client: Any = None) -> dict[str, Any]:
    """Return the registry's champion of ``model``, its packaged version and the last decision.

    ``{"model", "champion_version", "packaged_model": "<model>-packaged:<M>" | None,
    "last_decision": {"version", "promoted", "reason", "metrics"}}``; the champion is the
    alias ``champion``, else the registered model's tag ``amlkit.champion``.
    """
    from amlkit.serving.packaged_model import find_packaged

    client = client or registry_client()
    found: dict[str, Any] = {"model": model, "champion_version": None, "packaged_model": None}
    try:
        found["champion_version"] = client.get_model_version_by_alias(model, "champion").version
    except Exception as exc:  # no alias yet, or a registry without aliases
        logger.info("no champion alias on %s: %s", model, exc)
        try:
            tags = client.get_registered_model(model).tags or {}
            found["champion_version"] = tags.get("amlkit.champion")
        except Exception as missing:  # no such model yet
            logger.info("no registered model %s: %s", model, missing)
    if found["champion_version"] is not None:
        packaged = find_packaged(model, found["champion_version"], client=client)
        found["packaged_model"] = packaged.ref if packaged else None
    try:
        versions = client.search_model_versions(f"name = '{model}'")
    except Exception as exc:  # a registry that does not know the name
        logger.info("no versions of %s: %s", model, exc)
        versions = []
    versions = sorted(versions, key=lambda v: int(v.version), reverse=True)
    found["last_decision"] = None
    if versions and versions[0].run_id:
        run = client.get_run(versions[0].run_id)
        found["last_decision"] = {
            "version": versions[0].version,
            "promoted": run.data.tags.get("champion_gate.promoted") == "true",
            "reason": run.data.tags.get("champion_gate.reason"),
            "metrics": {k: v for k, v in run.data.metrics.items() if k.startswith("test_")},
        }
    return found


class WorkspaceTarget:
    """The Azure ML managed online endpoint as a :class:`amlkit.azure.rollout.Target`.

    Args:
        client: an ``MLClient`` (:func:`connect`).
        endpoint: the endpoint's Azure name (:func:`amlkit.azure.endpoints.azure_endpoint_names`).
        monitor_schedule: builds the ``MonitorSchedule`` of a deployment name; None: no schedule.
    """

    def __init__(self, client: Any, endpoint: str, monitor_schedule: Any = None) -> None:
        self.client = client
        self.endpoint = endpoint
        self.monitor_schedule = monitor_schedule
        self._models: dict[str, str] = {}

    def traffic(self) -> dict[str, int]:
        """Return the live endpoint's traffic split, or ``{}`` when it does not exist."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return dict(self.client.online_endpoints.get(self.endpoint).traffic or {})
        except ResourceNotFoundError:
            return {}

    def deployed_model(self, name: str) -> str | None:
        """Return ``NAME:VERSION`` of deployment ``name``'s model, or None without it."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            found = self.client.online_deployments.get(name=name, endpoint_name=self.endpoint)
        except ResourceNotFoundError:
            return None
        model = str(found.model or "")
        # an ARM id ".../models/<name>/versions/<version>" or "azureml:<name>:<version>"
        if "/versions/" in model:
            head, _, version = model.partition("/versions/")
            return f"{head.rstrip('/').rpartition('/')[2]}:{version}"
        return model.removeprefix("azureml:") or None

    def create_or_update(self, name: str, spec: Path, endpoint_spec: Path, model: str) -> None:
        """Create the endpoint (no traffic) if needed, then the deployment with ``model``."""
        from amlkit.azure.endpoints import model_reference

        if not self.traffic() and not self._exists():
            endpoint = specs.validate(endpoint_spec, "online_endpoint")
            endpoint.traffic = {}
            self.client.online_endpoints.begin_create_or_update(endpoint).result()
        deployment = specs.validate(spec, "online_deployment")
        deployment.model = model_reference(model)
        with contextlib.chdir(Path(spec).parent):  # its code folder is relative to the spec
            self.client.online_deployments.begin_create_or_update(deployment).result()
        self._models[name] = model

    def _exists(self) -> bool:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            self.client.online_endpoints.get(self.endpoint)
        except ResourceNotFoundError:
            return False
        return True

    def smoke_test(self, name: str) -> dict[str, Any]:
        """Invoke deployment ``name`` with its model's input example."""
        from amlkit.azure.rollout import SmokeTestFailed

        model = self.deployed_model(name) or self._models.get(name, "")
        request = smoke_request(self.client, f"azureml:{model}")
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
            json.dump(request, handle)
        try:
            answer = self.client.online_endpoints.invoke(
                endpoint_name=self.endpoint, deployment_name=name, request_file=handle.name
            )
        finally:
            Path(handle.name).unlink()
        rows = len(request["input_data"].get("data") or [])
        try:
            predictions = len(json.loads(answer).get("predictions") or [])
        except (TypeError, ValueError, AttributeError):
            predictions = 0
        if predictions != rows:
            raise SmokeTestFailed(
                f"smoke test of {self.endpoint}/{name} failed ({predictions} of {rows} "
                f"predictions): {str(answer)[:300]}; traffic unchanged"
            )
        return {"rows": rows}

    def set_traffic(self, split: dict[str, int]) -> None:
        """Set the endpoint's traffic split."""
        live = self.client.online_endpoints.get(self.endpoint)
        live.traffic = dict(split)
        self.client.online_endpoints.begin_create_or_update(live).result()

    def delete(self, name: str) -> None:
        """Delete deployment ``name`` (managed deployments cannot scale to zero)."""
        self.client.online_deployments.begin_delete(name=name, endpoint_name=self.endpoint).result()

    def monitor(self, name: str) -> None:
        """Create or update the MonitorSchedule so it watches deployment ``name``."""
        if self.monitor_schedule is None:
            return
        schedule = self.monitor_schedule(name)
        self.client.schedules.begin_create_or_update(schedule).result()


def smoke_request(client: Any, model: str) -> dict[str, Any]:
    """Return a request of a few rows for a deployed model: its MLflow input example.

    Args:
        client: an ``MLClient``.
        model: ``azureml:<name>:<version>`` (the deployment's).
    """
    body = model.removeprefix("azureml:")
    name, _, version = body.partition(":")
    found = client.models.get(name, version=version)
    with tempfile.TemporaryDirectory(prefix="amlkit-smoke-") as tmp:
        client.models.download(name=found.name, version=found.version, download_path=tmp)
        example = next(Path(tmp).rglob("input_example.json"), None)
        if example is None:
            raise RuntimeError(f"model {found.name}:{found.version} holds no input_example.json")
        return {"input_data": json.loads(example.read_text(encoding="utf-8"))}
