"""The sweep job: Azure ML hyperparameter tuning over the training notebook.

Each trial runs notebook 04 (:mod:`amlkit.azure.step`) on one sampled setting: a
``candidate`` (choice over ``model_config.json``'s candidates for the task) and a value for
every hyperparameter of every candidate's search space, named ``<candidate>__<parameter>``;
the step narrows the trial's model configuration to the sampled candidate and its values, so
the notebook fits exactly that setting, and logs ``validation_<primary metric>``, the sweep's
objective. Sampling, limits and Bandit early termination come from ``model_config.json``'s
``sweep``.

The search space translates scipy's conventions (what the notebook's own random search uses)
into Azure ML's: ``loguniform [lo, hi]`` is Azure's ``loguniform`` over ``ln lo .. ln hi``
(Azure draws the exponent), ``randint [lo, hi)`` is ``quniform lo .. hi-1, q=1`` (Azure's
``randint`` has no lower bound), and a ``None`` choice is the string ``"None"`` (Azure's
choices hold no nulls; the step reads it back). Bayesian sampling takes choice, uniform and
quniform only, so there a loguniform range becomes a choice of :data:`BAYESIAN_GRID`
log-spaced values.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from amlkit.azure import jobs
from amlkit.config import AzureConfig, DataConfig, ModelConfig

BAYESIAN_GRID = 8
SEPARATOR = "__"


def azure_distribution(spec: dict[str, list[Any]], sampling: str) -> dict[str, Any]:
    """Return the Azure ML search-space entry of one ``model_config.json`` distribution."""
    kind, args = next(iter(spec.items()))
    if kind == "choice":
        return {"type": "choice", "values": ["None" if v is None else v for v in args]}
    low, high = args
    if kind == "uniform":
        return {"type": "uniform", "min_value": low, "max_value": high}
    if kind == "randint":
        return {"type": "quniform", "min_value": low, "max_value": high - 1, "q": 1}
    if sampling == "bayesian":
        step = (math.log(high) - math.log(low)) / (BAYESIAN_GRID - 1)
        grid = [math.exp(math.log(low) + i * step) for i in range(BAYESIAN_GRID)]
        return {"type": "choice", "values": [float(f"{v:.6g}") for v in grid]}
    return {
        "type": "loguniform",
        "min_value": round(math.log(low), 6),
        "max_value": round(math.log(high), 6),
    }


def search_space(model_config: ModelConfig, task: str) -> dict[str, Any]:
    """Return the sweep's search space for ``task``: the candidate, then their parameters."""
    sampling = model_config.sweep.sampling_algorithm
    candidates = model_config.candidates_for(task)
    space: dict[str, Any] = {"candidate": {"type": "choice", "values": list(candidates)}}
    for name, candidate in candidates.items():
        for param, spec in candidate.search_space.get(task, {}).items():  # type: ignore[call-overload]
            space[f"{name}{SEPARATOR}{param}"] = azure_distribution(spec, sampling)
    return space


def sweep_job(
    notebooks: list[Path],
    *,
    code: str,
    environment: str,
    azure_config: AzureConfig,
    data_config: DataConfig,
    model_config: ModelConfig,
) -> dict[str, Any]:
    """Return the sweep job spec (``az ml job create`` YAML form) over notebook 04.

    Raises:
        ValueError: the default data set declares no task, or there is no notebook 04.
    """
    from amlkit.training.evaluate import greater_is_better

    notebook = next((n for n in notebooks if n.name.startswith("04_")), None)
    if notebook is None:
        raise ValueError("the sweep runs notebook 04_*.ipynb, which is missing")
    declared = data_config.dataset(data_config.default_dataset)
    task = declared.task if declared else None
    if task is None:
        raise ValueError(
            f"data set {data_config.default_dataset!r} declares no task in data_config.json; "
            "the sweep needs it to choose the candidates and the primary metric"
        )
    space = search_space(model_config, task)
    values = jobs.default_values(data_config) | {"search_iterations": 1}
    params = jobs.notebook_parameters(notebook, values)
    reads, writes = jobs.STAGE_FOLDERS["04"]
    extra = ["--candidate ${{search_space.candidate}}"] + [
        f"--hyperparameter {name}=${{{{search_space.{name}}}}}"
        for name in space
        if name != "candidate"
    ]
    command = jobs.step_command(
        f"notebooks/{notebook.name}", reads, writes, parameters=list(params), extra=extra
    )
    metric = model_config.primary_metric[task]
    settings = model_config.sweep
    data_inputs = jobs.asset_inputs(data_config)
    spec: dict[str, Any] = {
        "type": "sweep",
        "display_name": f"amlkit sweep over {notebook.stem}",
        "experiment_name": azure_config.experiment_name,
        "description": "Tunes the candidates of model_config.json with notebook 04, one "
        "sampled candidate and setting a trial.",
        "compute": f"azureml:{azure_config.compute_cluster}",
        "trial": {"code": code, "command": command, "environment": environment},
        "inputs": {**{name: data_inputs[name] for name in reads}, **params},
        "outputs": {name: {"type": "uri_folder"} for name in [*writes, jobs.EXECUTED]},
        "sampling_algorithm": settings.sampling_algorithm,
        "search_space": space,
        "objective": {
            "goal": "maximize" if greater_is_better(metric) else "minimize",
            "primary_metric": f"validation_{metric}",
        },
        "limits": {
            "max_total_trials": settings.max_total_trials,
            "max_concurrent_trials": settings.max_concurrent_trials,
            "timeout": settings.timeout_s,
            "trial_timeout": settings.trial_timeout_s,
        },
    }
    if settings.early_termination is not None:
        spec["early_termination"] = {"type": "bandit", **settings.early_termination.model_dump()}
    return spec
