"""Command jobs that run the stage notebooks with papermill on Azure ML compute.

One job per notebook: its command is :mod:`amlkit.azure.step` running the notebook in the
project's kernel, its inputs are the notebook's parameters (read from the notebook's
``parameters`` cell with papermill's inspection, so the jobs follow the notebooks) and the
folders the stage reads, its outputs the folders the stage writes and the executed notebook.
MLflow reports to the workspace (the notebooks use the job's ``MLFLOW_TRACKING_URI``).

:data:`STAGE_FOLDERS` says which project folders each stage reads and writes, the contract of
``docs/contracts.md``; the pipeline (:mod:`.pipeline`) and the sweep (:mod:`.sweep`) build
their steps from the same pieces. Notebook 05 also gets a distributed variant:
``distribution: tensorflow`` with ``azure_config.json``'s worker count, one worker a node.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amlkit.azure import data_assets
from amlkit.config import AzureConfig, DataConfig

RAW, PROCESSED = "data/raw", "data/processed"
MODELS, SERVICES = "models/trained_models", "models/deployed_models"
REGISTRY_ASSET = "amlkit-registry"
"""The data asset of a registry folder (models/trained_models) that the pipeline registers."""

STAGE_FOLDERS: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "01": ({}, {"raw_data": RAW}),
    "02": ({"raw_data": RAW}, {}),
    "03": ({"raw_data": RAW}, {"processed_data": PROCESSED}),
    "04": ({"processed_data": PROCESSED}, {"trained_models": MODELS}),
    "05": ({}, {"trained_models": MODELS}),
    "06": ({"processed_data": PROCESSED, "trained_models": MODELS}, {"services": SERVICES}),
    "07": (
        {"raw_data": RAW, "processed_data": PROCESSED, "trained_models": MODELS},
        {
            "new_raw_data": RAW,
            "new_processed_data": PROCESSED,
            "new_trained_models": MODELS,
            "services": SERVICES,
            "monitoring": ".amlkit/endpoints",
        },
    ),
}
"""Stage number: ({input name: project folder read}, {output name: project folder written})."""
EXECUTED = "executed_notebook"


@dataclass
class Step:
    """A step's command line and ports, before it becomes a job or a pipeline node."""

    command: str
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)


def notebook_parameters(notebook: Path, values: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return the parameters a job passes to ``notebook``: ``{name: value}``.

    The notebook's own defaults (papermill's inspection of its ``parameters`` cell), except
    the empty ones (``""``, ``None``, ``{}``), which mean "use the configuration" in the
    notebooks and are left to the notebook; then ``values`` for the names it declares, when
    it works on the tabular data set (declares ``dataset``).
    """
    import papermill as pm

    declared = pm.inspect_notebook(str(notebook))
    found = {}
    for name, spec in declared.items():
        try:
            value = ast.literal_eval(spec["default"])
        except (ValueError, SyntaxError):
            continue
        if value not in ("", None) and not isinstance(value, dict | list):
            found[name] = value
    if "dataset" in declared:
        found |= {name: value for name, value in (values or {}).items() if name in declared}
    return found


def default_values(data_config: DataConfig) -> dict[str, Any]:
    """Return the parameter values the configuration decides: the data set, the model name."""
    dataset = data_config.default_dataset
    declared = data_config.dataset(dataset)
    values: dict[str, Any] = {"dataset": dataset}
    if declared is not None and declared.task:
        values["model_name"] = f"{dataset}-{declared.task}"
    return values


def model_name(data_config: DataConfig) -> str:
    """Return the registry name of the default data set's model (``<dataset>-<task>``)."""
    name = default_values(data_config).get("model_name")
    if not name:
        raise ValueError(
            f"data set {data_config.default_dataset!r} declares no task in data_config.json; "
            "declare it, so the jobs know the model's registry name"
        )
    return name


def step_command(
    target: str,
    inputs: dict[str, str],
    outputs: dict[str, str],
    *,
    parameters: Sequence[str] = (),
    executed: bool = True,
    extra: Sequence[str] = (),
) -> str:
    """Return the ``python -m amlkit.azure.step`` command line of a step.

    Args:
        target: the notebook (``notebooks/04_...ipynb``) or ``amlkit <args>``.
        inputs: ``{input name: project folder}`` linked in before the stage runs.
        outputs: ``{output name: project folder}`` copied out after it ran.
        parameters: notebook parameters, each ``-p NAME ${{inputs.NAME}}``.
        executed: save the executed notebook to ``${{outputs.executed_notebook}}``.
        extra: more options (a sweep trial's ``--candidate`` and ``--hyperparameter``).
    """
    parts = ["PYTHONPATH=lib python -m amlkit.azure.step"]
    parts += [f"--in {folder}=${{{{inputs.{name}}}}}" for name, folder in inputs.items()]
    parts += [f"--out {folder}=${{{{outputs.{name}}}}}" for name, folder in outputs.items()]
    if executed:
        parts.append(f"--executed ${{{{outputs.{EXECUTED}}}}}")
    parts += list(extra)
    parts.append(target)
    parts += [f"-p {name} ${{{{inputs.{name}}}}}" for name in parameters]
    return " ".join(parts)


def notebook_step(notebook: Path, values: dict[str, Any], data_inputs: dict[str, Any]) -> Step:
    """Return the step that runs ``notebook``: its command, literal inputs and folder ports.

    Args:
        notebook: a stage notebook (``NN_name.ipynb``).
        values: parameter values that replace the notebook's defaults (those it declares).
        data_inputs: ``{input name: input spec}`` for the folders the stage reads.
    """
    reads, writes = STAGE_FOLDERS[notebook.name[:2]]
    params = notebook_parameters(notebook, values)
    command = step_command(f"notebooks/{notebook.name}", reads, writes, parameters=list(params))
    outputs = {name: {"type": "uri_folder"} for name in [*writes, EXECUTED]}
    return Step(command, {**{n: data_inputs[n] for n in reads}, **params}, outputs)


def asset_inputs(data_config: DataConfig) -> dict[str, Any]:
    """Return the data inputs of standalone jobs: the newest registered version of each."""
    dataset = data_config.default_dataset
    return {
        "raw_data": {"type": "uri_folder", "path": data_assets.reference(dataset, "raw")},
        "processed_data": {
            "type": "uri_folder",
            "path": data_assets.reference(dataset, "processed"),
        },
        "trained_models": {"type": "uri_folder", "path": f"azureml:{REGISTRY_ASSET}@latest"},
    }


def command_job(
    step: Step,
    *,
    code: str,
    environment: str,
    azure_config: AzureConfig,
    display_name: str,
    description: str,
) -> dict[str, Any]:
    """Return a command job spec (``az ml job create`` YAML form) for ``step``."""
    return {
        "type": "command",
        "display_name": display_name,
        "experiment_name": azure_config.experiment_name,
        "description": description,
        "code": code,
        "command": step.command,
        "environment": environment,
        "compute": f"azureml:{azure_config.compute_cluster}",
        "inputs": step.inputs,
        "outputs": step.outputs,
    }


def notebook_jobs(
    notebooks: list[Path],
    *,
    code: str,
    environment: str,
    azure_config: AzureConfig,
    data_config: DataConfig,
) -> dict[str, dict[str, Any]]:
    """Return ``{job name: command job spec}``: one per stage notebook, plus 05 distributed.

    Args:
        notebooks: the stage notebooks (``amlkit.pipeline.stages.discover``).
        code: the code snapshot (the repository), relative to the spec's folder.
        environment: the training environment's ``azureml:name:version``.
        azure_config: compute, experiment, worker count.
        data_config: the default data set (and so the model's registry name).
    """
    values = default_values(data_config)
    inputs = asset_inputs(data_config)
    jobs = {}
    for notebook in notebooks:
        if notebook.name[:2] not in STAGE_FOLDERS:
            continue
        step = notebook_step(notebook, values, inputs)
        title = notebook.stem[3:].replace("_", " ")
        jobs[f"job-{notebook.stem}"] = command_job(
            step,
            code=code,
            environment=environment,
            azure_config=azure_config,
            display_name=f"{notebook.stem[:2]} {title}",
            description=f"Runs notebooks/{notebook.name} with papermill in the project's kernel.",
        )
        if notebook.name.startswith("05"):
            jobs["job-05-distributed"] = distributed(jobs[f"job-{notebook.stem}"], azure_config)
    return jobs


def distributed(job: dict[str, Any], azure_config: AzureConfig) -> dict[str, Any]:
    """Return the deep-learning job spread over ``distributed.worker_count`` workers.

    Azure ML starts the command once per worker (one a node) with ``TF_CONFIG`` describing
    the cluster; the notebook trains under ``tf.distribute.MultiWorkerMirroredStrategy``
    when ``TF_CONFIG`` is set.
    """
    workers = azure_config.distributed.worker_count
    return {
        **job,
        "display_name": f"{job['display_name']} ({workers} workers)",
        "description": f"{job['description']} Distributed: {workers} TensorFlow workers.",
        "distribution": {"type": "tensorflow", "worker_count": workers},
        "resources": {"instance_count": workers},
    }


def code_path(repo: Path, out_dir: Path) -> str:
    """Return the repository as seen from the spec folder: the job's code snapshot."""
    return Path(os.path.relpath(repo.resolve(), out_dir.resolve())).as_posix()
