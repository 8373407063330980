"""The service as an Azure ML managed online endpoint with blue/green deployments.

:func:`build_entities` builds real azure-ai-ml entities: a ``ManagedOnlineEndpoint`` and a
``blue`` and a ``green`` ``ManagedOnlineDeployment`` of the packaged service, with request
settings and probes from ``deployment_config.json``, the lean environment of the service's
backend (:mod:`amlkit.azure.environments`), Application Insights on, and a data collector
for the model's inputs and outputs (the collections Azure ML model monitoring reads, see
:mod:`amlkit.azure.monitoring`). :func:`write_specs` writes them as ``endpoint.yml``,
``blue.yml`` and ``green.yml`` with paths relative to their folder and loads them back with
the SDK's loaders. Deploying them is :mod:`amlkit.azure.rollout`'s (blue/green), on a
workspace (:mod:`amlkit.azure.live`) or the local twin (:mod:`amlkit.azure.twin_endpoint`).
Endpoint names on Azure are unique per workspace by default (:func:`azure_endpoint_names`).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

from amlkit import io
from amlkit.azure import environments, specs
from amlkit.config import AzureConfig, DataConfig, DeploymentConfig

logger = logging.getLogger(__name__)

DEPLOYMENTS = ("blue", "green")
COLLECTIONS = ("model_inputs", "model_outputs")
MAX_ENDPOINT_NAME = 32  # Azure ML's limit for an endpoint name


def collected_data(endpoint: str, deployment: str, collection: str) -> dict[str, Any]:
    """Return the data asset a deployment's data collector writes a collection to."""
    return {
        "name": f"{endpoint}-{deployment}-{collection}",
        "path": f"azureml://datastores/workspaceblobstore/paths/modelDataCollector/"
        f"{endpoint}/{deployment}/{collection}",
        "version": "1",
    }


def data_collector(deployment_config: DeploymentConfig, deployment: str) -> Any:
    """Return the ``DataCollector`` of a deployment (None when collection is off)."""
    from azure.ai.ml.entities import DataAsset, DataCollector, DeploymentCollection

    settings = deployment_config.data_collection
    if not settings.enabled:
        return None
    endpoint = deployment_config.endpoint_name
    return DataCollector(
        collections={
            name: DeploymentCollection(
                enabled="true", data=DataAsset(**collected_data(endpoint, deployment, name))
            )
            for name in COLLECTIONS
        },
        sampling_rate=settings.sampling_rate,
    )


def endpoint(deployment_config: DeploymentConfig, description: str = "") -> Any:
    """Return the ``ManagedOnlineEndpoint`` with its traffic split."""
    from azure.ai.ml.entities import ManagedOnlineEndpoint

    auth_mode = {"key": "key", "aml_token": "aml_token", "none": "key"}
    return ManagedOnlineEndpoint(
        name=deployment_config.endpoint_name,
        auth_mode=auth_mode[deployment_config.auth_mode],
        description=description or f"amlkit service {deployment_config.endpoint_name}",
        traffic=dict(deployment_config.traffic),
    )


def online_deployment(
    name: str, deployment_config: DeploymentConfig, *, model: Any, code: str, environment: Any
) -> Any:
    """Return one ``ManagedOnlineDeployment`` (``blue`` or ``green``) of the service.

    Args:
        name: the deployment's name.
        deployment_config: instances, request settings, probes, telemetry, data collection.
        model: ``azureml:<name>:<version>``, ``azureml:<name>@latest`` (a plan made before
            the version is known; deploys always name one), or an anonymous ``Model``.
        code: the service folder (scoring script and its modules).
        environment: the lean serving ``Environment``.
    """
    from azure.ai.ml.entities import (
        CodeConfiguration,
        ManagedOnlineDeployment,
        OnlineRequestSettings,
        ProbeSettings,
    )

    dep = deployment_config
    return ManagedOnlineDeployment(
        name=name,
        endpoint_name=dep.endpoint_name,
        model=model,
        environment=environment,
        code_configuration=CodeConfiguration(code=code, scoring_script="scoring_script.py"),
        instance_type=dep.instance_type,
        instance_count=dep.instance_count,
        request_settings=OnlineRequestSettings(**dep.request_settings.model_dump()),
        liveness_probe=ProbeSettings(**dep.liveness_probe.model_dump()),
        readiness_probe=ProbeSettings(**dep.readiness_probe.model_dump()),
        environment_variables={"AMLKIT_AUTH": "endpoint", "AMLKIT_DEPLOYMENT": name},
        app_insights_enabled=dep.app_insights_enabled,
        data_collector=data_collector(dep, name),
    )


def served_model(data_config: DataConfig, packaged: Any = None) -> tuple[str, str | None]:
    """Return the (data set, model name) the Azure endpoints serve, which name them.

    ``packaged`` (a :class:`amlkit.serving.packaged_model.PackagedVersion`, what a deploy
    names): its source model, and the declared data set whose ``<dataset>-<task>`` that model
    is (else the default data set). Without it: the default data set and its model, what the
    training pipeline trains and a deploy takes the champion of.
    """
    dataset = data_config.default_dataset
    declared = data_config.dataset(dataset)
    model = f"{dataset}-{declared.task}" if declared is not None and declared.task else None
    source = getattr(packaged, "source_model", "") or ""
    if source:
        model = source
        for name, declaration in data_config.datasets.items():
            if declaration.task and source == f"{name}-{declaration.task}":
                dataset = name
    return dataset, model


def served_config(
    deployment_config: DeploymentConfig, data_config: DataConfig, packaged: Any = None
) -> DeploymentConfig:
    """Return ``deployment_config`` with its endpoints named after what they serve.

    The model and data set are :func:`served_model`'s; see
    :meth:`amlkit.config.DeploymentConfig.resolved`.
    """
    dataset, model = served_model(data_config, packaged)
    return deployment_config.resolved(dataset=dataset, model=model, data_config=data_config)


def azure_endpoint_names(
    deployment_config: DeploymentConfig, azure_config: AzureConfig
) -> tuple[str, str]:
    """Return the online and batch endpoints' names on Azure, unique per workspace by default.

    Azure ML wants an endpoint name unique in its region, so a fixed name fails the second
    team. ``azure_endpoint_name`` (and ``batch.azure_endpoint_name``) of
    ``deployment_config.json`` win when set; otherwise the local name gets ``-`` and 6 hex
    digits of sha256(subscription_id/resource_group/workspace_name), cut to Azure's 32
    characters. Local service folders keep ``endpoint_name``. A template is filled in first
    for the default data set's model (:func:`served_config`); resolve it yourself to name
    another.
    """
    if not deployment_config.is_resolved:
        deployment_config = deployment_config.resolved()
    workspace = "/".join(
        (azure_config.subscription_id, azure_config.resource_group, azure_config.workspace_name)
    )
    suffix = hashlib.sha256(workspace.encode()).hexdigest()[:6]

    def unique(name: str) -> str:
        return f"{name[: MAX_ENDPOINT_NAME - len(suffix) - 1].rstrip('-')}-{suffix}"

    batch = deployment_config.batch
    return (
        deployment_config.azure_endpoint_name or unique(deployment_config.endpoint_name),
        batch.azure_endpoint_name or unique(batch.endpoint_name),
    )


def for_azure(deployment_config: DeploymentConfig, azure_config: AzureConfig) -> DeploymentConfig:
    """Return ``deployment_config`` with its endpoints named as on Azure.

    The names are :func:`azure_endpoint_names`'.

    The spec builders (online, batch, monitoring) take this copy, so every spec names the
    same endpoints.
    """
    online, batch = azure_endpoint_names(deployment_config, azure_config)
    return deployment_config.model_copy(
        update={
            "endpoint_name": online,
            "batch": deployment_config.batch.model_copy(update={"endpoint_name": batch}),
        }
    )


def model_reference(model: str) -> str:
    """Return ``azureml:NAME:VERSION`` for an exact ``NAME:VERSION`` (ValueError otherwise).

    A deployment names one version: ``@latest`` would deploy whatever was registered last,
    not what the train job produced.
    """
    name, _, version = model.removeprefix("azureml:").partition(":")
    if not (name and version.isdigit()) or "@" in model:
        raise ValueError(
            f"model {model!r} is not NAME:VERSION with a version number; name the exact "
            "packaged version (`amlkit azure champion --json` prints it as packaged_model)"
        )
    return f"azureml:{name}:{version}"


def service_model(service_dir: Path) -> tuple[Any, str]:
    """Return a packaged service's model for a deployment spec, and its backend.

    A service registered by ``amlkit package`` (its ``service_metadata.json`` records
    ``registered``) is named by its exact version, ``azureml:<model>-packaged:<M>``. Otherwise
    the spec uploads the folder's ``model/`` as an anonymous model: a name and a version
    picked here would collide with the versions the pipeline registers under that name.
    """
    from azure.ai.ml.entities import Model

    info = io.read_json(service_dir / "service_metadata.json")
    registered = info.get("registered") or {}
    if registered.get("name") and registered.get("version"):
        return model_reference(f"{registered['name']}:{registered['version']}"), info["backend"]
    model = Model(
        path=str(service_dir / "model"),
        type="custom_model",
        description=f"{info['model']['name']} v{info['model']['version']} packaged for serving "
        f"(backend {info['backend']})",
    )
    return model, info["backend"]


def build_entities(
    service_dir: str | Path,
    *,
    azure_config: AzureConfig | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """Return ``{"endpoint": ..., "blue": ..., "green": ...}`` for a packaged service.

    Args:
        service_dir: a packaged service folder (its ``deployment_config.json`` is used).
        azure_config: the workspace (it names the endpoint) and the environments' base image;
            default ``azure_config.json``.
        code: the code folder as the spec will name it; default the service folder.
    """
    folder = Path(service_dir).resolve()
    azure_config = azure_config or AzureConfig.load()
    dep = for_azure(
        DeploymentConfig.from_dict(
            {
                k: v
                for k, v in io.read_json(folder / "deployment_config.json").items()
                if k != "service"
            }
        ),
        azure_config,
    )
    model, backend = service_model(folder)
    environment = environments.serving_environment(
        azure_config, backend, "online", collect_data=dep.data_collection.enabled
    )
    entities = {"endpoint": endpoint(dep, f"amlkit service {folder.name}")}
    for name in DEPLOYMENTS:
        entities[name] = online_deployment(
            name, dep, model=model, code=code or str(folder), environment=environment
        )
    return entities


def write_specs(service_dir: str | Path, out_dir: str | Path | None = None) -> dict[str, Path]:
    """Write ``endpoint.yml``, ``blue.yml``, ``green.yml`` (default in ``<service_dir>/azure``).

    Args:
        service_dir: a packaged service folder.
        out_dir: where to write; default ``<service_dir>/azure``.

    Returns:
        ``{"endpoint": path, "blue": path, "green": path}``.

    Raises:
        ValueError: a written spec does not load with the SDK's loader.
    """
    folder = Path(service_dir).resolve()
    out = Path(out_dir).resolve() if out_dir else folder / "azure"
    written = {}
    with specs.quiet_sdk():
        entities = build_entities(folder)
    for kind, entity in entities.items():
        spec_kind = "online_endpoint" if kind == "endpoint" else "online_deployment"
        path = specs.write(specs.entity_dict(entity, out), out / f"{kind}.yml", spec_kind)
        specs.validate(path, spec_kind)
        written[kind] = path
    logger.info("wrote and validated Azure specs in %s", out)
    return written
