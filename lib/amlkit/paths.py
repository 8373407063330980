"""Where the project keeps its files, under the repository or ``$AMLKIT_ROOT``.

Tests and papermill batches point ``AMLKIT_ROOT`` elsewhere, away from a user's data.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT_ENV = "AMLKIT_ROOT"


def _find_repo_root() -> Path:
    """Return the nearest folder above the package (or the cwd) that holds ``config/``."""
    for start in (Path(__file__).resolve(), Path.cwd().resolve()):
        for folder in [start, *start.parents]:
            if (folder / "config/data_config.json").is_file() and (
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
    """Return ``config/``."""
    return project_root() / "config"


def data_dir() -> Path:
    """Return ``data/`` (``raw/``, ``processed/``, ``external/``)."""
    return project_root() / "data"


def raw_dir() -> Path:
    """Return ``data/raw/``, the ingested, versioned data."""
    return data_dir() / "raw"


def processed_dir() -> Path:
    """Return ``data/processed/``, the split data."""
    return data_dir() / "processed"


def trained_models_dir() -> Path:
    """Return the registry folder, ``models/trained_models/``."""
    return project_root() / "models" / "trained_models"


def deployed_models_dir() -> Path:
    """Return the packaged services' folder, ``models/deployed_models/``."""
    return project_root() / "models" / "deployed_models"


def notebooks_dir() -> Path:
    """Return the project root's notebooks, else the repository's (a test root has none)."""
    own = project_root() / "notebooks"
    return own if own.is_dir() else _find_repo_root() / "notebooks"


def runs_dir() -> Path:
    """Return ``runs/``, where ``amlkit run`` keeps executed notebooks."""
    return project_root() / "runs"


def state_dir() -> Path:
    """Return the ignored local state folder (MLflow store, logs, keys), creating it."""
    path = project_root() / ".amlkit"
    path.mkdir(parents=True, exist_ok=True)
    return path


def check_inside(path: Path, base: Path | None = None) -> Path:
    """Return ``path`` if, symbolic links followed, it lies inside ``base`` and the project.

    Call it before writing to, moving or deleting under ``path``: a link on the way (a data
    set's folder, ``data/raw`` itself) that leads out of the project would send the write
    somewhere else without a word. ``base`` defaults to the project root.

    Raises:
        ValueError: naming the link (or the path) and where it leads, and what to do.
    """
    root = project_root()
    for outer in dict.fromkeys([root, *([base] if base is not None else [])]):
        real, bound = path.resolve(), outer.resolve()
        if real == bound or real.is_relative_to(bound):
            continue
        link = _link_out(path, root, bound) or path
        raise ValueError(
            f"{link} is a symbolic link to {link.resolve()}, outside {bound}: amlkit does not "
            "write through a link that leads out of the project's folders; replace the link by "
            "a folder, or set AMLKIT_ROOT to a project on the disk it points to"
            if link.is_symlink()
            else f"{path} lies outside {bound} (it resolves to {real}); amlkit writes only "
            "there: use a plain name, not a path"
        )
    return path


def _link_out(path: Path, root: Path, bound: Path) -> Path | None:
    """Return the first symbolic link from ``root`` down to ``path`` that leads out of ``bound``."""
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        return None
    for depth in range(1, len(parts) + 1):
        step = root.joinpath(*parts[:depth])
        if step.is_symlink() and not step.resolve().is_relative_to(bound):
            return step
    return None
