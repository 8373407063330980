"""What ``amlkit azure submit``, ``deploy`` and ``champion`` do against a live workspace.

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


def create_prerequisites(client: Any, plan_dir: Path, entries: list[Entry]) -> None:
    """Create the environments, the compute cluster and the data assets a job needs."""
    for entry in entries:
        if entry.file == "-":
            continue
        if entry.kind == "environment":
            client.environments.create_or_update(_load(plan_dir, entry))
        elif entry.kind == "compute":
            client.compute.begin_create_or_update(_load(plan_dir, entry)).result()
        elif entry.kind == "data":
            asset = _load(plan_dir, entry)
            try:  # versions are immutable: one that exists is the same content
                client.data.get(asset.name, version=asset.version)
            except Exception:
                client.data.create_or_update(asset)


def submit(plan_dir: Path, job: str, *, wait: bool) -> dict[str, Any]:
    """Submit a planned job (the training pipeline by default); stream it with ``wait``.

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


def champion(model: str) -> dict[str, Any]:
    """Return the workspace registry's champion of ``model`` and the last gate decision."""
    from mlflow import MlflowClient

    azure_config = AzureConfig.load()
    connect(azure_config)
    client = MlflowClient(tracking_uri=workspace.tracking_uri(azure_config))
    found: dict[str, Any] = {"model": model, "champion_version": None}
    try:
        found["champion_version"] = client.get_model_version_by_alias(model, "champion").version
    except Exception as exc:  # no alias yet, or a registry without aliases
        logger.info("no champion alias on %s: %s", model, exc)
    versions = client.search_model_versions(f"name = '{model}'", order_by=["version_number DESC"])
    if versions and versions[0].run_id:
        run = client.get_run(versions[0].run_id)
        found["last_decision"] = {
            "version": versions[0].version,
            "promoted": run.data.tags.get("champion_gate.promoted") == "true",
            "reason": run.data.tags.get("champion_gate.reason"),
            "metrics": {k: v for k, v in run.data.metrics.items() if k.startswith("test_")},
        }
    return found


def idle_deployment(traffic: dict[str, int] | None) -> str:
    """Return the deployment a new model goes to: the one serving under half of the traffic.

    Blue/green alternates: the deployment that serves (most of) the traffic keeps serving while
    the other one takes the new model; a canary share is under 50 percent, so during a canary
    the idle one is still the canary, and the full switch and a rollback find it again without
    being told. An endpoint with no traffic yet (or none at all) starts on blue.
    """
    from amlkit.azure.endpoints import DEPLOYMENTS

    shares = {name: int((traffic or {}).get(name, 0)) for name in DEPLOYMENTS}
    if not any(shares.values()):
        return DEPLOYMENTS[0]
    return min(DEPLOYMENTS, key=lambda name: shares[name])


def traffic_split(current: dict[str, int] | None, deployment: str, share: int) -> dict[str, int]:
    """Return the endpoint's traffic after giving ``deployment`` ``share`` percent.

    The other deployment gets the rest, but only when it serves traffic now: on a new endpoint
    (or one whose other deployment serves nothing) the deployment takes all of it, since there
    is nothing to share with.
    """
    if not 0 <= share <= 100:
        raise ValueError(f"traffic share {share} is not a percentage; give 0 to 100")
    split = {name: 0 for name in current or {}}
    others = [name for name, value in (current or {}).items() if name != deployment and value]
    if not others or share == 100:
        return {**split, deployment: 100}
    return {**split, deployment: share, others[0]: 100 - share}


def current_traffic(client: Any, endpoint: str) -> dict[str, int]:
    """Return the live endpoint's traffic split, or ``{}`` when the endpoint does not exist."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return dict(client.online_endpoints.get(endpoint).traffic or {})
    except ResourceNotFoundError:
        return {}


def deploy_entities(
    client: Any,
    entities: dict[str, Any],
    *,
    deployment: str,
    traffic: dict[str, int] | None = None,
    smoke_request: Any = None,
) -> dict[str, Any]:
    """Create the endpoint and one deployment, smoke-test it, then set the traffic.

    Args:
        client: an ``MLClient`` (:func:`connect`).
        entities: ``{"endpoint": ..., "blue": ..., "green": ...}``.
        deployment: which deployment to create or update.
        traffic: the endpoint's traffic afterwards; default all on ``deployment``.
        smoke_request: a request body sent to the new deployment before traffic moves.

    Raises:
        RuntimeError: the smoke test answered an error (traffic is left as it was).
    """
    endpoint = entities["endpoint"]
    try:
        client.online_endpoints.get(endpoint.name)
    except Exception:
        endpoint.traffic = {}
        client.online_endpoints.begin_create_or_update(endpoint).result()
    client.online_deployments.begin_create_or_update(entities[deployment]).result()
    answer = None
    if smoke_request is not None:
        import tempfile

        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
            json.dump(smoke_request, handle)
        answer = client.online_endpoints.invoke(
            endpoint_name=endpoint.name, deployment_name=deployment, request_file=handle.name
        )
        Path(handle.name).unlink()
        if "error" in str(answer)[:200].lower():
            raise RuntimeError(f"smoke test of {deployment} failed: {answer}; traffic unchanged")
    live = client.online_endpoints.get(endpoint.name)
    live.traffic = traffic or {deployment: 100}
    client.online_endpoints.begin_create_or_update(live).result()
    return {"endpoint": live.name, "traffic": live.traffic, "smoke_answer": answer}


def smoke_request(client: Any, model: str) -> dict[str, Any]:
    """Return a request of a few rows for a deployed model: its MLflow input example.

    Args:
        client: an ``MLClient``.
        model: ``azureml:<name>:<version>`` or ``azureml:<name>@latest`` (the deployment's).
    """
    import tempfile

    body = model.removeprefix("azureml:")
    name, _, version = body.partition("@") if "@" in body else body.partition(":")
    found = client.models.get(name, label="latest") if version in ("", "latest") else None
    found = found or client.models.get(name, version=version)
    with tempfile.TemporaryDirectory(prefix="amlkit-smoke-") as tmp:
        client.models.download(name=found.name, version=found.version, download_path=tmp)
        example = next(Path(tmp).rglob("input_example.json"), None)
        if example is None:
            raise RuntimeError(f"model {found.name}:{found.version} holds no input_example.json")
        return {"input_data": json.loads(example.read_text(encoding="utf-8"))}


def rollback(client: Any, endpoint: str, deployment: str) -> dict[str, int]:
    """Put all traffic back on the deployment other than ``deployment``; return the split."""
    live = client.online_endpoints.get(endpoint)
    others = [name for name in ("blue", "green") if name != deployment]
    live.traffic = {others[0]: 100, deployment: 0}
    client.online_endpoints.begin_create_or_update(live).result()
    return dict(live.traffic)
