"""Shared fixtures: an isolated project root so tests never touch the repository's data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from mlflow import MlflowClient

from amlkit import paths, tracking

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh project root (config/ copied, no data) that amlkit.paths points at."""
    root = tmp_path / "project"
    shutil.copytree(REPO / "config", root / "config", ignore=shutil.ignore_patterns("schemas"))
    monkeypatch.setenv("AMLKIT_ROOT", str(root))
    return root


@pytest.fixture(scope="session")
def empty_mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite file with the schema created once (alembic takes seconds)."""
    folder = tmp_path_factory.mktemp("mlflow_template")
    tracking.quiet_mlflow()
    MlflowClient(tracking_uri=f"sqlite:///{folder}/mlflow.db").search_experiments()
    return folder / "mlflow.db"


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_mlflow_db: Path) -> Path:
    """An isolated project root: a copy of config/ and its own, ready MLflow store."""
    shutil.copytree(REPO / "config", tmp_path / "config")
    monkeypatch.setenv("AMLKIT_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    shutil.copy(empty_mlflow_db, paths.state_dir() / "mlflow.db")
    tracking.configure_tracking()
    return tmp_path
