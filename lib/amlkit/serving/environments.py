"""The lean environments a service runs in: one per backend, holding what its runtime imports.

A service folder's ``environment.yml`` and the Azure ML environments of the online and batch
deployments are built from :data:`BACKEND_PACKAGES`, not from the project's environment
(TensorFlow, JupyterLab, papermill, ... about 3.3 GB): an ONNX service needs the Azure ML
inference server, orjson (it reads requests and writes answers and the request log),
onnxruntime and numpy, nothing else. Version bounds are the project's own
(``pyproject.toml``, read from amlkit's installed metadata), so a service never gets a library
older than the one that trained its model.

- :data:`DATA_COLLECTOR`: what the scoring script uses to hand model inputs and outputs to
  Azure ML's data collector (``azureml-ai-monitoring``, which reads pandas frames); added to
  online deployments that collect data.
- :data:`BATCH`: what a batch deployment needs beside the backend: pandas and pyarrow to read
  CSV and Parquet files, and ``azureml-core``, which Azure ML's batch driver requires.

``tests/serving/test_environments.py`` runs each backend's scoring script with every
other package blocked, and checks that each module it loads comes from these packages or
their dependencies.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

SERVER = ("azureml-inference-server-http", "orjson")  # orjson: requests and the request log
BACKEND_PACKAGES: dict[str, tuple[str, ...]] = {
    "onnx": (*SERVER, "onnxruntime", "numpy"),
    "sklearn": (*SERVER, "scikit-learn", "pandas", "numpy", "scipy"),
    "keras": (*SERVER, "tensorflow", "numpy"),
}
"""The packages of each backend's runtime (``amlkit.serving.runtime.Scorer._load_<backend>``)."""
DATA_COLLECTOR: tuple[str, ...] = ("azureml-ai-monitoring",)
BATCH: tuple[str, ...] = ("pandas", "pyarrow", "azureml-core")
OWN_BOUNDS = {"azureml-ai-monitoring": ">=1.0", "azureml-core": ">=1.60"}
"""Bounds of the packages the project itself does not depend on."""


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def project_bounds() -> dict[str, str]:
    """Return ``{package: version specifier}`` of amlkit's own dependencies (pyproject.toml).

    Read from the installed package's metadata; empty when amlkit is not installed (a service
    folder on Azure), in which case the bounds of :data:`OWN_BOUNDS` alone apply.
    """
    try:
        requires = metadata.requires("amlkit") or []
    except metadata.PackageNotFoundError:
        return {}
    bounds = {}
    for line in requires:
        if ";" in line:  # an extra's requirement (dev tools)
            continue
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*)", line)
        if match:
            bounds[_canonical(match.group(1))] = match.group(2).strip()
    return bounds


def requirements(backend: str, extras: tuple[str, ...] = ()) -> list[str]:
    """Return the pip requirements of a ``backend`` service, plus ``extras`` packages.

    Args:
        backend: ``onnx``, ``sklearn`` or ``keras``.
        extras: more packages, such as :data:`DATA_COLLECTOR` or :data:`BATCH`.

    Raises:
        ValueError: an unknown backend.
    """
    if backend not in BACKEND_PACKAGES:
        raise ValueError(
            f"no serving environment for backend {backend!r}; the backends are "
            f"{', '.join(BACKEND_PACKAGES)}. Package the model again."
        )
    bounds = project_bounds() | OWN_BOUNDS
    names = dict.fromkeys([*BACKEND_PACKAGES[backend], *extras])  # ordered, no repeats
    return [f"{name}{bounds.get(_canonical(name), '')}" for name in names]


def conda_spec(backend: str, extras: tuple[str, ...] = (), *, name: str = "") -> dict[str, Any]:
    """Return the conda specification (``environment.yml`` content) of a serving environment.

    Args:
        backend: ``onnx``, ``sklearn`` or ``keras``.
        extras: more packages (:data:`DATA_COLLECTOR`, :data:`BATCH`).
        name: the environment's name; default ``amlkit-<backend>``.
    """
    python = f"python={sys.version_info.major}.{sys.version_info.minor}"
    return {
        "name": name or f"amlkit-{backend}",
        "channels": ["conda-forge"],
        "dependencies": [python, "pip", {"pip": requirements(backend, extras)}],
    }


def write_environment_file(
    path: str | Path, backend: str, extras: tuple[str, ...] = (), *, name: str = ""
) -> Path:
    """Write :func:`conda_spec` as YAML to ``path`` and return it."""
    path = Path(path)
    header = f"# Serving environment of an amlkit {backend} service (amlkit.serving.environments)\n"
    body = yaml.safe_dump(conda_spec(backend, extras, name=name), sort_keys=False)
    path.write_text(header + body, encoding="utf-8")
    return path
