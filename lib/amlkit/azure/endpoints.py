"""The service as an Azure ML managed online endpoint with blue/green deployments.

:func:`write_specs` writes real azure-ai-ml entities as YAML and checks them offline with the
SDK's own loaders; :func:`deploy` needs a workspace and credentials, and says which is missing.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from amlkit import io
from amlkit.azure import workspace
from amlkit.config import AzureConfig

logger = logging.getLogger(__name__)

BASE_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"
DEPLOYMENTS = ("blue", "green")


@contextlib.contextmanager
def _quiet_sdk() -> Iterator[None]:
    """Hide azure-ai-ml's "experimental class" warnings (stderr noise on every load)."""
    sdk = logging.getLogger("azure.ai.ml._utils._experimental")
    old = sdk.level
    sdk.setLevel(logging.ERROR)
    try:
        yield
    finally:
        sdk.setLevel(old)


def build_entities(service_dir: str | Path, *, model_type: str = "custom_model") -> dict[str, Any]:
    """Return the azure-ai-ml entities ``endpoint``, ``blue`` and ``green`` of a service folder.

    ``model_type``: ``custom_model`` (the folder with ONNX + pickle) or ``mlflow_model``.
    """
    from azure.ai.ml.entities import (
        CodeConfiguration,
        Environment,
        ManagedOnlineDeployment,
        ManagedOnlineEndpoint,
        Model,
        OnlineRequestSettings,
        ProbeSettings,
    )

    folder = Path(service_dir).resolve()
    dep = io.read_json(folder / "deployment_config.json")
    info = io.read_json(folder / "service_metadata.json")
    endpoint_name = dep["endpoint_name"]
    auth_mode = {"key": "key", "aml_token": "aml_token", "none": "key"}[dep["auth_mode"]]
    traffic = {k: int(v) for k, v in dep["traffic"].items()}
    endpoint = ManagedOnlineEndpoint(
        name=endpoint_name,
        auth_mode=auth_mode,
        description=f"amlkit service {info['service']} (model {info['model']['name']})",
        traffic=traffic,
    )
    model_name = str(info["model"]["name"] or endpoint_name)
    model = Model(
        name=model_name,
        version=str(info["model"]["version"]),
        path=str(folder / "model"),
        type=model_type,
        description=f"backend {info['backend']}",
    )
    environment = Environment(
        name=f"{endpoint_name}-env",
        image=BASE_IMAGE,
        conda_file=str(folder / "environment.yml"),
    )
    settings = OnlineRequestSettings(**dep["request_settings"])
    probes = [
        ProbeSettings(**dep[k]) if k in dep else None for k in ("liveness_probe", "readiness_probe")
    ]
    deployments = {}
    for name in DEPLOYMENTS:
        deployments[name] = ManagedOnlineDeployment(
            name=name,
            endpoint_name=endpoint_name,
            model=model,
            environment=environment,
            code_configuration=CodeConfiguration(
                code=str(folder), scoring_script="scoring_script.py"
            ),
            instance_type=dep["instance_type"],
            instance_count=int(dep["instance_count"]),
            request_settings=settings,
            environment_variables={"AMLKIT_AUTH": "endpoint", "AMLKIT_DEPLOYMENT": name},
            liveness_probe=probes[0],
            readiness_probe=probes[1],
        )
    return {"endpoint": endpoint, **deployments}


def _key_fields(kind: str, entity: Any) -> dict[str, Any]:
    if kind == "endpoint":
        return {"name": entity.name, "auth_mode": entity.auth_mode, "traffic": entity.traffic}
    rs = entity.request_settings
    return {
        "name": entity.name,
        "endpoint_name": entity.endpoint_name,
        "instance_type": entity.instance_type,
        "instance_count": entity.instance_count,
        "scoring_script": entity.code_configuration.scoring_script,
        "request_timeout_ms": rs.request_timeout_ms,
        "max_concurrent_requests_per_instance": rs.max_concurrent_requests_per_instance,
        "max_queue_wait_ms": rs.max_queue_wait_ms,
        "liveness_period": entity.liveness_probe.period if entity.liveness_probe else None,
        "environment_image": entity.environment.image,
        "model_type": entity.model.type,
        "environment_variables": dict(entity.environment_variables or {}),
    }


def write_specs(service_dir: str | Path, out_dir: str | Path | None = None) -> dict[str, Path]:
    """Write ``endpoint.yml``, ``blue.yml``, ``green.yml`` (default in ``<service_dir>/azure``).

    ValueError when a spec does not load back with the same key fields.
    """
    from azure.ai.ml import load_online_deployment, load_online_endpoint

    folder = Path(service_dir).resolve()
    out = Path(out_dir) if out_dir else folder / "azure"
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    with _quiet_sdk():
        for kind, entity in build_entities(folder).items():
            path, tmp = out / f"{kind}.yml", out / f".{kind}.tmp.yml"
            with open(tmp, "w", encoding="utf-8") as handle:
                data = entity.dump(handle)
            if not tmp.stat().st_size:  # ManagedOnlineEndpoint.dump ignores dest, returns a dict
                if not isinstance(data, dict):
                    raise ValueError(f"azure-ai-ml wrote no YAML for {kind}; cannot validate it")
                tmp.write_text(yaml.safe_dump(dict(data), sort_keys=False), encoding="utf-8")
            tmp.replace(path)
            loader = load_online_endpoint if kind == "endpoint" else load_online_deployment
            want, got = _key_fields(kind, entity), _key_fields(kind, loader(source=path))
            if want != got:
                diff = {k: (want[k], got.get(k)) for k in want if want[k] != got.get(k)}
                raise ValueError(f"{path} does not round-trip through the SDK loader: {diff}")
            written[kind] = path
    logger.info("wrote and validated Azure specs in %s", out)
    return written


def deploy(
    service_dir: str | Path,
    *,
    deployment: str = "blue",
    traffic: dict[str, int] | None = None,
    smoke_request: Any = None,
) -> dict[str, Any]:
    """Deploy to Azure ML: endpoint, one deployment, smoke test, then shift traffic.

    RuntimeError, saying which, without a configured workspace or credentials.
    """
    azure_cfg = AzureConfig.load()
    if not azure_cfg.workspace_configured:
        raise RuntimeError(
            "Azure deployment skipped: config/azure_config.json names no workspace; fill "
            "subscription_id, resource_group and workspace_name to deploy."
        )
    from azure.identity import DefaultAzureCredential

    try:
        credential = DefaultAzureCredential()
        credential.get_token("https://management.azure.com/.default")
    except Exception as exc:
        raise RuntimeError(f"Azure deployment skipped: no usable credentials ({exc}).") from exc
    client = workspace.ml_client(azure_cfg, credential)
    entities = build_entities(service_dir)
    client.online_endpoints.begin_create_or_update(entities["endpoint"]).result()
    client.online_deployments.begin_create_or_update(entities[deployment]).result()
    answer = None
    if smoke_request is not None:
        request_file = Path(service_dir) / "azure" / "smoke_request.json"
        io.write_json_atomic(request_file, smoke_request)
        answer = client.online_endpoints.invoke(
            endpoint_name=entities["endpoint"].name,
            deployment_name=deployment,
            request_file=str(request_file),
        )
    endpoint = client.online_endpoints.get(entities["endpoint"].name)
    endpoint.traffic = traffic or {deployment: 100}
    client.online_endpoints.begin_create_or_update(endpoint).result()
    return {"endpoint": endpoint.name, "traffic": endpoint.traffic, "smoke_answer": answer}
