"""The training pipeline job: ingestion, preprocessing, training and packaging, wired by folders.

Four command steps, each :mod:`amlkit.azure.step` in the training environment:

    ingest (01) --raw_data--> preprocess (03) --processed_data--> train (04) --trained_models-->
    package (amlkit package) --packaged_model

A step's input is bound to the output of the last step that wrote the same project folder
(``${{parent.jobs.ingest.outputs.raw_data}}``), so the wiring follows
:data:`amlkit.azure.jobs.STAGE_FOLDERS`. The notebooks' parameters become pipeline inputs
(one per name; a name two steps give different defaults becomes ``<step>_<name>``), so
``az ml job create --set inputs.search_iterations=2`` or ``amlkit azure run-local ... --set
inputs.search_iterations=2`` reaches every step that declares it. The registry folder is a
pipeline output with a name, which Azure ML registers as a data asset
(:data:`amlkit.azure.jobs.REGISTRY_ASSET`); the packaged model is a plain output: ``amlkit
package`` registers it in the model registry itself (``<model>-packaged``, from its run), so
the pipeline does not register a second version under the same name.

:func:`schedule` wraps the pipeline in a recurrence ``JobSchedule`` from
``azure_config.json``'s ``pipeline_schedule``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from amlkit.azure import jobs
from amlkit.config import AzureConfig, DataConfig, DeploymentConfig

STEPS = (("ingest", "01"), ("preprocess", "03"), ("train", "04"))
PACKAGE = "package"


def packaged_model_name(model_name: str) -> str:
    """Return the model name ``amlkit package`` registers the packaged service model under."""
    return f"{model_name}-packaged"


def _stage_notebook(notebooks: list[Path], stage: str) -> Path:
    for notebook in notebooks:
        if notebook.name.startswith(f"{stage}_"):
            return notebook
    raise ValueError(f"no notebook {stage}_*.ipynb among {[n.name for n in notebooks]}")


def _pipeline_inputs(steps: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], dict[str, dict]]:
    """Return the pipeline's inputs and each step's binding of its parameters to them."""
    seen: dict[str, set[str]] = {}
    for params in steps.values():
        for name, value in params.items():
            seen.setdefault(name, set()).add(repr(value))
    inputs: dict[str, Any] = {}
    bindings: dict[str, dict[str, str]] = {}
    for step, params in steps.items():
        bindings[step] = {}
        for name, value in params.items():
            shared = len(seen[name]) == 1
            key = name if shared else f"{step}_{name}"
            inputs[key] = value
            bindings[step][name] = f"${{{{parent.inputs.{key}}}}}"
    return inputs, bindings


def training_pipeline(
    notebooks: list[Path],
    *,
    code: str,
    environment: str,
    azure_config: AzureConfig,
    data_config: DataConfig,
    deployment_config: DeploymentConfig,
) -> dict[str, Any]:
    """Return the pipeline job spec (``az ml job create`` YAML form).

    Args:
        notebooks: the stage notebooks (01, 03 and 04 are used).
        code: the code snapshot (the repository), relative to the spec's folder.
        environment: the training environment's ``azureml:name:version``.
        azure_config: compute and experiment.
        data_config: the default data set.
        deployment_config: the service name the package step uses (``endpoint_name``, for
            the default data set's model).
    """
    values = jobs.default_values(data_config)
    model = jobs.model_name(data_config)
    dataset = data_config.default_dataset
    service = deployment_config.endpoint_for(dataset, model, data_config)
    params = {
        step: jobs.notebook_parameters(_stage_notebook(notebooks, stage), values)
        for step, stage in STEPS
    }
    params[PACKAGE] = {"model_name": model}
    inputs, bindings = _pipeline_inputs(params)
    written: dict[str, str] = {}  # project folder -> "${{parent.jobs.<step>.outputs.<name>}}"
    nodes: dict[str, Any] = {}
    for step, stage in STEPS:
        notebook = _stage_notebook(notebooks, stage)
        reads, writes = jobs.STAGE_FOLDERS[stage]
        command = jobs.step_command(
            f"notebooks/{notebook.name}", reads, writes, parameters=list(params[step])
        )
        nodes[step] = _node(
            command,
            code,
            environment,
            {**_bind(reads, written), **bindings[step]},
            [*writes, jobs.EXECUTED],
        )
        written |= {folder: _ref(step, name) for name, folder in writes.items()}
    reads = {"trained_models": jobs.MODELS, "processed_data": jobs.PROCESSED}
    writes = {"services": jobs.SERVICES, "packaged_model": f"{jobs.SERVICES}/{service}/model"}
    command = jobs.step_command(
        f"amlkit package ${{{{inputs.model_name}}}} --service {service}",
        reads,
        writes,
        executed=False,
    )
    nodes[PACKAGE] = _node(
        command, code, environment, {**_bind(reads, written), **bindings[PACKAGE]}, list(writes)
    )
    nodes["train"]["outputs"]["trained_models"] = "${{parent.outputs.trained_models}}"
    nodes[PACKAGE]["outputs"]["packaged_model"] = "${{parent.outputs.packaged_model}}"
    return {
        "type": "pipeline",
        "display_name": f"amlkit training pipeline ({values['dataset']})",
        "experiment_name": azure_config.experiment_name,
        "description": "Ingest (01), preprocess (03), train and register (04), package the "
        "champion as a service (amlkit package): the notebooks, run with papermill.",
        "settings": {
            "default_compute": f"azureml:{azure_config.compute_cluster}",
            "continue_on_step_failure": False,
        },
        "inputs": inputs,
        "outputs": {
            "trained_models": {"type": "uri_folder", "name": jobs.REGISTRY_ASSET},
            "packaged_model": {"type": "uri_folder"},
        },
        "jobs": nodes,
    }


def _ref(step: str, output: str) -> str:
    return f"${{{{parent.jobs.{step}.outputs.{output}}}}}"


def _bind(reads: dict[str, str], written: dict[str, str]) -> dict[str, str]:
    missing = [folder for folder in reads.values() if folder not in written]
    if missing:
        raise ValueError(f"no earlier step writes {missing}; reorder the pipeline's steps")
    return {name: written[folder] for name, folder in reads.items()}


def _node(
    command: str, code: str, environment: str, inputs: dict[str, Any], outputs: list[str]
) -> dict[str, Any]:
    return {
        "type": "command",
        "code": code,
        "command": command,
        "environment": environment,
        "inputs": inputs,
        "outputs": {name: {"type": "uri_folder"} for name in outputs},
    }


def schedule(pipeline_file: str, azure_config: AzureConfig) -> dict[str, Any]:
    """Return the recurrence ``JobSchedule`` spec that submits the pipeline file.

    Args:
        pipeline_file: the pipeline spec, relative to the schedule's folder (``./x.yml``).
        azure_config: ``pipeline_schedule`` gives the recurrence.
    """
    recurrence = azure_config.pipeline_schedule
    trigger: dict[str, Any] = {
        "type": "recurrence",
        "frequency": recurrence.frequency,
        "interval": recurrence.interval,
    }
    if recurrence.frequency in ("day", "week"):  # a time of day only fits these
        trigger["schedule"] = {"hours": recurrence.hours, "minutes": recurrence.minutes}
        if recurrence.frequency == "week":
            trigger["schedule"]["week_days"] = recurrence.week_days
    return {
        "name": "amlkit-training-pipeline-schedule",
        "display_name": "amlkit training pipeline, recurring",
        "description": "Retrains on a recurrence (azure_config.json pipeline_schedule).",
        "trigger": {**trigger, "time_zone": recurrence.time_zone},
        "create_job": pipeline_file,
    }
