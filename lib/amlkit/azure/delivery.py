"""What ``amlkit azure deploy`` (and ``amlkit deploy``) do: blue/green on a chosen target.

They pick the target and the exact model, write the plan naming it, and run
:mod:`amlkit.azure.rollout`'s blue/green on it.

Targets (:func:`choose_target`): ``workspace``, the managed online endpoint of
``config/azure_config.json``'s workspace; ``local``, the twin
(:class:`amlkit.azure.twin_endpoint.TwinEndpoint`, in ``.amlkit/twin-endpoints/<endpoint>``)
fed by the registry MLflow is configured for. Left unsaid, the workspace when one is
configured, else the twin when ``MLFLOW_TRACKING_URI`` is an ``http(s)`` URI (a twin's
tracking server), else nothing: :class:`amlkit.azure.live.Skipped`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from amlkit import paths
from amlkit.azure import endpoints, rollout
from amlkit.config import AzureConfig, DataConfig, DeploymentConfig

logger = logging.getLogger(__name__)

TARGETS = ("workspace", "local")


def choose_target(asked: str | None, azure_config: AzureConfig) -> str:
    """Return ``workspace`` or ``local`` (see the module); Skipped when neither applies."""
    from amlkit.azure.live import Skipped

    if asked is not None:
        if asked not in TARGETS:
            raise ValueError(f"target {asked!r} is not one of {list(TARGETS)}")
        return asked
    if azure_config.workspace_configured:
        return "workspace"
    if os.environ.get("MLFLOW_TRACKING_URI", "").startswith(("http://", "https://")):
        return "local"
    raise Skipped(
        "config/azure_config.json names no workspace (and MLFLOW_TRACKING_URI names no "
        "tracking server for the local twin; or pass --target local); nothing deployed"
    )


def twin_folder(endpoint: str) -> Path:
    """Return the local twin endpoint's folder: ``<state>/twin-endpoints/<endpoint>``."""
    return paths.state_dir() / "twin-endpoints" / endpoint


def _registry(kind: str, azure_config: AzureConfig) -> Any:
    from mlflow import MlflowClient

    if kind == "workspace":
        from amlkit.azure.live import registry_client

        return registry_client(azure_config)
    from amlkit.registry import tracking

    tracking.ensure_tracking()
    return MlflowClient()


def resolve_model(model: str | None, client: Any, data_config: DataConfig) -> Any:
    """Return the packaged version to deploy: ``model`` (``NAME:VERSION``), else the champion's.

    Raises:
        ValueError: ``model`` is not exact, or no packaged champion is registered.
        LookupError: the registry lacks the version.
    """
    from amlkit.azure import jobs, live
    from amlkit.serving.packaged_model import get_packaged

    if model is None:
        found = live.champion(jobs.model_name(data_config), client)
        if not found["packaged_model"]:
            raise ValueError(
                f"the registry has no packaged champion of {found['model']} (champion version "
                f"{found['champion_version']}); package it with `amlkit package` or pass "
                "--model NAME:VERSION"
            )
        model = found["packaged_model"]
        logger.info("deploying the packaged champion %s", model)
    endpoints.model_reference(model)  # exact, or ValueError
    return get_packaged(str(model).removeprefix("azureml:"), client)


@contextlib.contextmanager
def open_target(kind: str, azure_config: AzureConfig, packaged: Any = None) -> Iterator[Any]:
    """Yield the rollout target of ``kind`` for the configured endpoint; close it after.

    The endpoint is the one of the model served: ``packaged``'s, else the default data
    set's (:func:`amlkit.azure.endpoints.served_config`).
    """
    data_config = DataConfig.load()
    served = endpoints.served_config(DeploymentConfig.load(), data_config, packaged)
    online, _ = endpoints.azure_endpoint_names(served, azure_config)
    if kind == "local":
        from amlkit.azure.twin_endpoint import TwinEndpoint

        with TwinEndpoint(twin_folder(online), online) as twin:
            yield twin
        return
    from amlkit.azure import live

    client = live.connect(azure_config)
    schedule = _schedule_builder(azure_config, data_config, served, packaged)
    yield live.WorkspaceTarget(client, online, schedule)


def _schedule_builder(
    azure_config: AzureConfig, data_config: DataConfig, served: DeploymentConfig, packaged: Any
) -> Any:
    from amlkit.azure import monitoring

    dep = endpoints.for_azure(served, azure_config)
    dataset, _ = endpoints.served_model(data_config, packaged)
    declared = data_config.dataset(dataset)
    if declared is None or declared.task is None:
        return None
    task = declared.task

    def build(deployment: str) -> Any:
        return monitoring.monitor_schedule(
            dep,
            dataset=dataset,
            target=declared.target,
            task=task,
            deployment=deployment,
        )

    return build


def deploy_model(
    *,
    target: str | None = None,
    model: str | None = None,
    deployment: str = rollout.IDLE,
    share: int | None = None,
    smoke_test: bool = False,
    plan_dir: str | Path | None = None,
) -> rollout.Outcome:
    """Deploy the exact packaged ``model`` (default the registry's packaged champion).

    The plan is written to ``plan_dir`` (default ``.amlkit/azure-plan``) naming that version,
    then :func:`amlkit.azure.rollout.deploy` runs on the target.
    """
    from amlkit.azure.plan import write_plan

    azure_config = AzureConfig.load()
    kind = choose_target(target, azure_config)
    packaged = resolve_model(model, _registry(kind, azure_config), DataConfig.load())
    out = Path(plan_dir) if plan_dir else paths.state_dir() / "azure-plan"
    write_plan(out, packaged=packaged)
    with open_target(kind, azure_config, packaged) as endpoint:
        return rollout.deploy(
            endpoint,
            out,
            model=packaged.ref,
            deployment=deployment,
            share=share,
            smoke_test=smoke_test,
        )


def rollback_endpoint(*, target: str | None = None, deployment: str = rollout.IDLE) -> Any:
    """Roll the endpoint back (:func:`amlkit.azure.rollout.rollback`) on the chosen target."""
    azure_config = AzureConfig.load()
    kind = choose_target(target, azure_config)
    with open_target(kind, azure_config) as endpoint:
        return rollout.rollback(endpoint, deployment=deployment)
