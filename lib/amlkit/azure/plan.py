"""``amlkit azure plan``: every Azure ML spec of the project, written and validated offline.

:func:`write_plan` builds the specs from the configuration files, the notebooks and what this
machine holds, writes one YAML file per entity into a folder (paths relative to it), loads
each with the SDK's loader of its kind, and records the plan in ``plan.json``::

    environments/   training.yml, online-<backend>.yml, batch-<backend>.yml
    compute/        <cluster>.yml
    data/           <dataset>-raw-<version>.yml, -processed-, -train-  (versions found here)
    jobs/           one command job per notebook, and 05 distributed
    pipelines/      training.yml (01 -> 03 -> 04 -> package), training-schedule.yml
    sweeps/         training.yml (notebook 04 over model_config.json's search spaces)
    endpoints/      online/ endpoint.yml blue.yml green.yml; batch/ endpoint.yml deployment.yml
    monitoring/     schedule.yml (MonitorSchedule of the online endpoint)
    code/           the batch entry script with its modules (and a service's code, when
                    no service is packaged yet)

It needs no workspace and no data: on a fresh clone the data assets are left out (there are
no versions yet). The online deployments run the generic code folder ``code/online`` with the
packaged service model that ``amlkit package`` registers (``<model>-packaged``): the exact
version when it is known (``write_plan(packaged=...)``, which ``amlkit azure deploy --model
NAME:VERSION`` uses, or a service packaged and registered here), else ``@latest`` with the
ONNX backend assumed, a placeholder a deploy always replaces. Endpoint names follow the model
served (deployment_config.json's ``endpoint_name`` template, ``amlkit-{dataset}``) and are the
Azure ones, unique per workspace (:func:`amlkit.azure.endpoints.azure_endpoint_names`).
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from amlkit import io, paths
from amlkit.azure import (
    batch,
    compute,
    data_assets,
    endpoints,
    environments,
    jobs,
    monitoring,
    specs,
    sweep,
)
from amlkit.azure import pipeline as pipelines
from amlkit.config import AzureConfig, DataConfig, DeploymentConfig, ModelConfig
from amlkit.names import check_name
from amlkit.pipeline.stages import discover
from amlkit.serving.packaged_model import PackagedVersion, packaged_model_name

logger = logging.getLogger(__name__)

PLAN_FILE = "plan.json"
PIPELINE = "training-pipeline"


@dataclass
class Entry:
    """One planned entity: its name, the kind of spec, its file (relative), and a note."""

    name: str
    kind: str
    file: str
    note: str = ""


class Planner:
    """Writes specs into one folder and keeps the list of what it wrote."""

    def __init__(self, out_dir: Path) -> None:
        self.out = out_dir.resolve()
        self.entries: list[Entry] = []

    def add(self, name: str, kind: str, rel_file: str, content: Any, note: str = "") -> None:
        """Write an entity (azure-ai-ml object) or a job dict as ``rel_file`` and validate it."""
        path = self.out / rel_file
        if not isinstance(content, dict):
            content = specs.entity_dict(content, path.parent)
        specs.write(content, path, kind)
        specs.validate(path, kind)
        self.entries.append(Entry(name, kind, rel_file, note))


def _relative(target: Path, folder: Path) -> str:
    return specs.relative_to(str(target.resolve()), folder.resolve())


def write_plan(out_dir: str | Path, *, packaged: PackagedVersion | None = None) -> list[Entry]:
    """Write and validate every spec into ``out_dir`` (emptied first); return the plan.

    Only an empty folder or an earlier plan (it has ``plan.json``) is emptied. ``packaged``:
    the exact packaged model version the online and batch deployments name.

    Raises:
        amlkit.config.ConfigError: a configuration file is invalid.
        ValueError: a spec does not validate (the message names it and the SDK's reason), or
            ``out_dir`` holds files but no plan.
    """
    out = Path(out_dir).resolve()
    if out.is_dir() and any(out.iterdir()) and not (out / PLAN_FILE).is_file():
        raise ValueError(
            f"{out} holds files but no {PLAN_FILE}, so it is not a plan folder and will not be "
            "emptied; choose an empty or new folder for --out"
        )
    if out.is_dir():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    io.write_json_atomic(out / PLAN_FILE, [])  # a plan folder from the start, if it fails
    with specs.quiet_sdk():
        return _write_plan(out, packaged)


def _write_plan(out: Path, packaged: PackagedVersion | None) -> list[Entry]:
    azure_config, data_config = AzureConfig.load(), DataConfig.load()
    model_config, deployment_config = ModelConfig.load(), DeploymentConfig.load()
    notebooks = discover()
    repo = paths.notebooks_dir().parent
    plan = Planner(out)

    training = environments.training_environment(azure_config, repo)
    plan.add(
        training.name,
        "environment",
        "environments/training.yml",
        training,
        f"version {training.version}: environment.yml on {azure_config.base_image}",
    )
    cluster = compute.cluster(azure_config)
    plan.add(
        cluster.name,
        "compute",
        f"compute/{cluster.name}.yml",
        cluster,
        f"{azure_config.compute.vm_size}, 0-{azure_config.compute.max_nodes} nodes",
    )
    assets = data_assets.all_assets(out / "data" / "mltable")
    for asset in assets:
        plan.add(
            f"{asset.name}:{asset.version}",
            "data",
            f"data/{asset.name}-{asset.version}.yml",
            asset,
            asset.type,
        )
    if not assets:
        plan.entries.append(Entry("data assets", "data", "-", "none: no data version here yet"))

    job_code = _relative(repo, out / "jobs")
    env_ref = environments.reference(training)
    for name, job in jobs.notebook_jobs(
        notebooks,
        code=job_code,
        environment=env_ref,
        azure_config=azure_config,
        data_config=data_config,
    ).items():
        note = "distributed: tensorflow" if "distribution" in job else "papermill"
        plan.add(name, "command", f"jobs/{name.removeprefix('job-')}.yml", job, note)
    spec = pipelines.training_pipeline(
        notebooks,
        code=_relative(repo, out / "pipelines"),
        environment=env_ref,
        azure_config=azure_config,
        data_config=data_config,
        deployment_config=deployment_config,
    )
    plan.add(PIPELINE, "pipeline", "pipelines/training.yml", spec, " -> ".join(spec["jobs"]))
    recurrence = azure_config.pipeline_schedule
    plan.add(
        f"{PIPELINE}-schedule",
        "schedule",
        "pipelines/training-schedule.yml",
        pipelines.schedule("./training.yml", azure_config),
        f"every {recurrence.interval} {recurrence.frequency}; "
        f"{'created' if recurrence.enabled else 'not created'} by submit",
    )
    tuning = sweep.sweep_job(
        notebooks,
        code=_relative(repo, out / "sweeps"),
        environment=env_ref,
        azure_config=azure_config,
        data_config=data_config,
        model_config=model_config,
    )
    plan.add(
        "training-sweep",
        "sweep",
        "sweeps/training.yml",
        tuning,
        f"{tuning['sampling_algorithm']}, {tuning['limits']['max_total_trials']} trials, "
        f"{tuning['objective']['goal']} {tuning['objective']['primary_metric']}",
    )
    _deployments(plan, out, assets, azure_config, data_config, deployment_config, packaged)
    io.write_json_atomic(out / PLAN_FILE, [asdict(e) for e in plan.entries])
    return plan.entries


def _online_model(
    packaged: PackagedVersion | None, deployment_config: DeploymentConfig, data_config: DataConfig
) -> tuple[str, str, set[str], dict[str, Any], str]:
    """Return the deployments' model reference, backend, pickled modules, data, and a note.

    The exact packaged version when the caller names it (a deploy always does); else the one a
    service packaged and registered here records; else ``<model>-packaged@latest``, a
    placeholder for ``az ml`` that ``amlkit azure deploy --model NAME:VERSION`` replaces.
    """
    if packaged is not None:
        backend = packaged.backend or "onnx"
        note = f"{packaged.ref} ({backend})"
        return (
            endpoints.model_reference(packaged.ref),
            backend,
            set(packaged.pickled_modules),
            {},
            note,
        )
    service = paths.deployed_models_dir() / check_name("service", deployment_config.endpoint_name)
    if (service / "service_metadata.json").is_file():
        info = io.read_json(service / "service_metadata.json")
        registered = info.get("registered") or {}
        trained_on = io.read_json(service / "model" / "model_metadata.json").get("data") or {}
        if registered.get("version"):
            ref = f"{registered['name']}:{registered['version']}"
            pickled = set(info.get("pickled_modules") or [])
            note = f"{ref} ({info['backend']}), registered by `amlkit package` here"
            return endpoints.model_reference(ref), info["backend"], pickled, trained_on, note
    model_name = packaged_model_name(jobs.model_name(data_config))
    note = f"{model_name}@latest (assumed onnx; deploy names the exact version)"
    return f"azureml:{model_name}@latest", "onnx", set(), {}, note


def _deployments(
    plan: Planner,
    out: Path,
    assets: list[Any],
    azure_config: AzureConfig,
    data_config: DataConfig,
    local_config: DeploymentConfig,
    packaged: PackagedVersion | None,
) -> None:
    """Plan the online endpoint, the batch endpoint and the monitoring schedule.

    The online deployments always use the generic code folder ``code/online`` (the scoring
    script and the modules of the model's backend, no model): the model, the packaged
    service with its ``service_metadata.json``, is the registered version they name.
    The endpoints are named after the model they serve: ``packaged``'s, else the default
    data set's (:func:`amlkit.azure.endpoints.served_config`).
    """
    from amlkit.serving.package import write_service_code

    local_config = endpoints.served_config(local_config, data_config, packaged)  # names filled
    deployment_config = endpoints.for_azure(local_config, azure_config)
    model, backend, pickled, trained_on, source = _online_model(packaged, local_config, data_config)
    online_dir = out / "endpoints" / "online"
    code = out / "code" / "online"
    write_service_code(
        code, backend, local_config.to_dict(), service=local_config.endpoint_name, pickled=pickled
    )
    online_code = _relative(code, online_dir)
    collect = deployment_config.data_collection.enabled
    online_env = environments.serving_environment(
        azure_config, backend, "online", collect_data=collect
    )
    batch_env = environments.serving_environment(azure_config, backend, "batch")
    for env, use in ((online_env, "online"), (batch_env, "batch")):
        plan.add(
            env.name,
            "environment",
            f"environments/{use}-{backend}.yml",
            env,
            f"version {env.version}: {', '.join(_packages(env))}",
        )
    plan.add(
        deployment_config.endpoint_name,
        "online_endpoint",
        "endpoints/online/endpoint.yml",
        endpoints.endpoint(deployment_config),
        f"traffic {deployment_config.traffic}",
    )
    for name in endpoints.DEPLOYMENTS:
        deployment = endpoints.online_deployment(
            name, deployment_config, model=model, code=online_code, environment=online_env
        )
        plan.add(
            f"{deployment_config.endpoint_name}/{name}",
            "online_deployment",
            f"endpoints/online/{name}.yml",
            deployment,
            f"{source}; app insights {deployment_config.app_insights_enabled}, "
            f"data collector {collect}",
        )
    batch_code = batch.write_code(out / "code" / "batch", backend, pickled)
    settings = deployment_config.batch
    plan.add(
        settings.endpoint_name,
        "batch_endpoint",
        "endpoints/batch/endpoint.yml",
        batch.endpoint(deployment_config),
        "scores CSV and Parquet files",
    )
    plan.add(
        f"{settings.endpoint_name}/{settings.deployment_name}",
        "batch_deployment",
        "endpoints/batch/deployment.yml",
        batch.deployment(
            deployment_config,
            azure_config,
            model=model,
            code=_relative(batch_code, out / "endpoints" / "batch"),
            environment=batch_env,
        ),
        f"mini-batch {settings.mini_batch_size} files, {settings.output_action}",
    )
    dataset = trained_on.get("dataset") or data_config.default_dataset
    declared = data_config.dataset(dataset)
    if declared is None or declared.task is None:
        raise ValueError(f"data set {dataset!r} declares no task; monitoring needs it")
    version = trained_on.get("version")  # the deployed model's training split, if planned
    version = (
        version if version in {a.version for a in assets if a.name.endswith("-train")} else None
    )
    plan.add(
        f"{deployment_config.endpoint_name}-monitoring",
        "schedule",
        "monitoring/schedule.yml",
        monitoring.monitor_schedule(
            deployment_config,
            dataset=dataset,
            target=declared.target,
            task=declared.task,
            data_version=version,
        ),
        f"data drift, prediction drift, data quality against {dataset}-train:{version or 'latest'}",
    )


def _packages(environment: Any) -> list[str]:
    pip = next(d["pip"] for d in environment.conda_file["dependencies"] if isinstance(d, dict))
    return [p.split(">")[0].split("=")[0] for p in pip]


def read_plan(out_dir: str | Path) -> list[Entry]:
    """Read a written plan's ``plan.json``."""
    return [Entry(**entry) for entry in io.read_json(Path(out_dir) / PLAN_FILE)]


def format_plan(entries: list[Entry]) -> str:
    """Return the plan as an aligned table: entity, kind, file, note."""
    rows = [
        ("entity", "kind", "file", "note"),
        *((e.name, e.kind, e.file, e.note) for e in entries),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        f"{a:{widths[0]}}  {b:{widths[1]}}  {c:{widths[2]}}  {d}".rstrip() for a, b, c, d in rows
    )
