"""Where the project keeps its files.

Every path is derived from one root: the repository by default, or the folder named by the
``AMLKIT_ROOT`` environment variable (tests and papermill batches point it elsewhere so that
they never touch a user's data). The layout under the root is fixed by the design:
``config/``, ``data/{raw,processed,external}/``, ``models/{trained_models,deployed_models}/``,
``notebooks/``, ``runs/`` and the ignored state folder ``.amlkit/`` (MLflow store, logs,
endpoint keys).
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT_ENV = "AMLKIT_ROOT"


def _find_repo_root() -> Path:
    """Return the nearest folder above the package (or the cwd) that holds ``config/``."""
    candidates = [Path(__file__).resolve(), Path.cwd().resolve()]
    for start in candidates:
        for folder in [start, *start.parents]:
            if (folder / "config" / "data_config.json").is_file() and (
                folder / "pyproject.toml"
            ).is_file():
                return folder
    return Path.cwd().resolve()


def project_root() -> Path:
    """Return the project root: ``$AMLKIT_ROOT`` if set, else the repository."""
    env = os.environ.get(ROOT_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return _find_repo_root()


def config_dir() -> Path:
    """Return the folder holding the JSON configuration files."""
    return project_root() / "config"


def data_dir() -> Path:
    """Return the data folder (``raw/``, ``processed/``, ``external/``)."""
    return project_root() / "data"


def raw_dir() -> Path:
    """Return the folder of ingested, versioned raw data."""
    return data_dir() / "raw"


def processed_dir() -> Path:
    """Return the folder of processed (split) data."""
    return data_dir() / "processed"


def models_dir() -> Path:
    """Return the models folder."""
    return project_root() / "models"


def trained_models_dir() -> Path:
    """Return the registry folder: ``trained_models/<name>/<version>/``."""
    return models_dir() / "trained_models"


def deployed_models_dir() -> Path:
    """Return the folder of packaged services: ``deployed_models/<service>/``."""
    return models_dir() / "deployed_models"


def notebooks_dir() -> Path:
    """Return the notebooks folder: the project root's, else the repository's.

    A project root made for tests or nbval (``AMLKIT_ROOT`` holding only ``config/``) has no
    notebooks of its own; the pipeline, and notebook 07 re-running 03 and 04, then run the
    repository's.
    """
    own = project_root() / "notebooks"
    return own if own.is_dir() else _find_repo_root() / "notebooks"


def runs_dir() -> Path:
    """Return the folder where ``amlkit run`` keeps executed notebooks."""
    return project_root() / "runs"


def state_dir() -> Path:
    """Return the ignored local state folder (MLflow store, logs, keys), creating it."""
    path = project_root() / ".amlkit"
    path.mkdir(parents=True, exist_ok=True)
    return path
