"""The Azure ML environments: the training environment and the lean serving environments.

Training jobs run in ``amlkit-training``: the project's ``environment.yml`` (what the notebooks
need) on the pinned base image of ``azure_config.json``. Deployments run in one of the lean
serving environments of :mod:`amlkit.serving.environments` (``amlkit-serving-onnx``, ...,
plus the data collector's client for online deployments and the file readers for batch
ones), built on the same image. Each version is the first 12 hex digits of the sha256 of the
image and the conda specification, so a changed environment gets a new version and an
unchanged one is reused: ``azureml:amlkit-training:<version>`` names exactly one content.

The pip lists are pinned at plan time to ``uv.lock`` (:mod:`amlkit.azure.lock`): every
package and each of its dependencies at the lock's version, so Azure ML builds the
environment the project's tests ran in, not what the bounds resolve to on the day it builds.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from amlkit import paths
from amlkit.azure import lock
from amlkit.config import AzureConfig
from amlkit.serving import environments as serving

TRAINING = "amlkit-training"


def _version(image: str, conda: dict[str, Any]) -> str:
    text = json.dumps({"image": image, "conda": conda}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def pin_to_lock(conda: dict[str, Any], root: Path | None = None) -> dict[str, Any]:
    """Return ``conda`` with its pip list pinned to ``uv.lock``, dependencies included."""
    source = lock.lock_path(root or paths.project_root())
    dependencies = []
    for item in conda["dependencies"]:
        if isinstance(item, dict) and "pip" in item:
            item = {**item, "pip": lock.pinned_requirements(list(item["pip"]), source)}
        dependencies.append(item)
    return {**conda, "dependencies": dependencies}


def training_conda(root: Path | None = None) -> dict[str, Any]:
    """Return the project's ``environment.yml``, its pip packages pinned to ``uv.lock``.

    The repository's ``environment.yml`` stands in when the project root has none.
    """
    here = (root or paths.project_root()) / "environment.yml"
    source = here if here.is_file() else Path(__file__).resolve().parents[3] / "environment.yml"
    return pin_to_lock(yaml.safe_load(source.read_text(encoding="utf-8")), root)


def training_environment(azure_config: AzureConfig, root: Path | None = None) -> Any:
    """Return the ``Environment`` the notebooks run in on Azure ML compute."""
    from azure.ai.ml.entities import Environment

    conda = training_conda(root)
    return Environment(
        name=TRAINING,
        version=_version(azure_config.base_image, conda),
        description="amlkit notebooks: the project's environment.yml (papermill, scikit-learn, "
        "TensorFlow, MLflow with azureml-mlflow)",
        image=azure_config.base_image,
        conda_file=conda,
    )


def serving_name(backend: str, use: str) -> str:
    """Return the environment name of a ``backend`` service used ``online`` or ``batch``."""
    return f"amlkit-{use}-{backend}"


def serving_environment(
    azure_config: AzureConfig, backend: str, use: str, *, collect_data: bool = False
) -> Any:
    """Return the lean ``Environment`` of a ``backend`` deployment.

    Args:
        azure_config: gives the base image.
        backend: ``onnx``, ``sklearn`` or ``keras``.
        use: ``online`` (the inference server) or ``batch`` (adds file readers and
            azureml-core).
        collect_data: add Azure ML's data collector client (online deployments).
    """
    from azure.ai.ml.entities import Environment

    extras = serving.BATCH if use == "batch" else ()
    extras += serving.DATA_COLLECTOR if collect_data else ()
    name = serving_name(backend, use)
    conda = pin_to_lock(serving.conda_spec(backend, extras, name=name))
    return Environment(
        name=name,
        version=_version(azure_config.base_image, conda),
        description=f"lean {use} environment of an amlkit {backend} service",
        image=azure_config.base_image,
        conda_file=conda,
    )


def reference(environment: Any) -> str:
    """Return ``azureml:<name>:<version>``, how jobs and deployments name an environment."""
    return f"azureml:{environment.name}:{environment.version}"
