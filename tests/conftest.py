"""Shared fixtures: isolated project roots, the MLflow store, and a small penguins model.

Tests never touch the repository's data: every fixture that writes points ``AMLKIT_ROOT`` at
a fresh folder holding a copy of ``config/``. Processed data comes from the real stage: notebook
03 run by papermill.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from amlkit import paths
from amlkit.registry import tracking

REPO = Path(__file__).resolve().parents[1]
PENGUIN_NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
PENGUIN_CATEGORICAL = ["island", "sex"]


@pytest.fixture(scope="session")
def repo() -> Path:
    """The repository checkout (its config/, notebooks/ and packaging files)."""
    return REPO


def make_project(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Create a project root at ``folder`` (config/ copied, no data) and point amlkit at it."""
    shutil.copytree(REPO / "config", folder / "config", ignore=shutil.ignore_patterns("schemas"))
    monkeypatch.setenv("AMLKIT_ROOT", str(folder))
    return folder


@pytest.fixture(scope="session")
def new_project() -> Callable[[Path, pytest.MonkeyPatch], Path]:
    """A factory of project roots, for module- or session-scoped fixtures."""
    return make_project


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh project root (config/ copied, no data) that amlkit.paths points at."""
    return make_project(tmp_path / "project", monkeypatch)


@pytest.fixture(scope="session")
def execute_notebook() -> Callable[..., Path]:
    """Run a stage notebook with papermill against the current ``AMLKIT_ROOT``.

    ``execute_notebook(name, output, **parameters)`` executes ``notebooks/<name>`` with the
    given parameters into ``output`` and returns it; a failing cell raises papermill's error.
    """

    def run(name: str, output: Path, **parameters: object) -> Path:
        import papermill as pm

        pm.execute_notebook(
            str(REPO / "notebooks" / name),
            str(output),
            parameters=parameters,
            cwd=str(REPO / "notebooks"),
            kernel_name="python3",
            progress_bar=False,
        )
        return output

    return run


@pytest.fixture(scope="session")
def processed_penguins_data(
    tmp_path_factory: pytest.TempPathFactory, execute_notebook: Callable[..., Path]
) -> Path:
    """The ``data/`` folder of a project where penguins were ingested and 03 ran (once)."""
    from amlkit.data import ingest

    folder = tmp_path_factory.mktemp("penguins-data") / "project"
    with pytest.MonkeyPatch.context() as mp:
        make_project(folder, mp)
        ingest.ingest("penguins", progress=False)
        execute_notebook("03_data_preprocessing.ipynb", folder / "03_data_preprocessing.ipynb")
    return folder / "data"


@pytest.fixture
def processed_penguins(project: Path, processed_penguins_data: Path):
    """The penguins' processed version that 03 writes by default, in a fresh project root."""
    from amlkit.data import preprocess

    shutil.copytree(processed_penguins_data, project / "data")
    return preprocess.load_processed("penguins")


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


@pytest.fixture(scope="session")
def penguin_features() -> list[str]:
    """The feature columns of :func:`penguins`, numeric first."""
    return PENGUIN_NUMERIC + PENGUIN_CATEGORICAL


@pytest.fixture(scope="session")
def penguins_frame() -> pd.DataFrame:
    """Palmer penguins with a species, as requests and files carry them (NaN for gaps)."""
    from palmerpenguins import load_penguins

    frame = load_penguins().dropna(subset=["species"]).reset_index(drop=True)
    frame[PENGUIN_NUMERIC] = frame[PENGUIN_NUMERIC].astype("float64")
    categories = frame[PENGUIN_CATEGORICAL].astype(object)
    frame[PENGUIN_CATEGORICAL] = categories.where(categories.notna(), np.nan)
    return frame


@pytest.fixture
def penguins(penguins_frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of :func:`penguins_frame` that a test may change."""
    return penguins_frame.copy()


def _penguin_pipeline(estimator):
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    categorical = Pipeline(
        [
            ("impute", SimpleImputer(strategy="most_frequent")),
            ("onehot", OneHotEncoder(handle_unknown="ignore")),
        ]
    )
    pre = ColumnTransformer(
        [("num", numeric, PENGUIN_NUMERIC), ("cat", categorical, PENGUIN_CATEGORICAL)]
    )
    return Pipeline([("preprocess", pre), ("model", estimator)])


@pytest.fixture(scope="session")
def make_version(penguins_frame: pd.DataFrame) -> Callable[..., Path]:
    """A factory writing a penguins model version folder per docs/contracts.md.

    ``make_version(folder, estimator=None, *, name="penguins", version=1)`` fits a pipeline
    (imputation, scaling, one-hot, then ``estimator``, by default a 50-tree forest), saves it
    as an MLflow model under ``folder/<name>/<version>`` with its ``model_metadata.json``,
    and returns that folder. It does not register the version in MLflow.
    """

    def make(folder: Path, estimator=None, *, name: str = "penguins", version: int = 1) -> Path:
        import mlflow.sklearn
        from sklearn.ensemble import RandomForestClassifier

        from amlkit import io

        frame = penguins_frame
        features = PENGUIN_NUMERIC + PENGUIN_CATEGORICAL
        estimator = estimator or RandomForestClassifier(n_estimators=50, random_state=0, n_jobs=1)
        pipeline = _penguin_pipeline(estimator).fit(frame[features], frame["species"])
        target = folder / name / str(version)
        mlflow.sklearn.save_model(
            pipeline, target, serialization_format="cloudpickle", pip_requirements=["scikit-learn"]
        )
        io.write_json_atomic(
            target / "model_metadata.json",
            {
                "name": name,
                "version": version,
                "model_type": type(estimator).__name__,
                "flavor": "sklearn",
                "task": "classification",
                "target": "species",
                "feature_columns": features,
                "feature_types": dict.fromkeys(PENGUIN_NUMERIC, "numeric")
                | dict.fromkeys(PENGUIN_CATEGORICAL, "categorical"),
                "classes": sorted(frame["species"].unique().tolist()),
                "created": "2024-01-01T00:00:00+00:00",
                "data": {"dataset": "penguins", "version": "test", "sha256": "0"},
                "model_file": "model.pkl",
                "model_sha256": io.sha256_file(target / "model.pkl"),
            },
        )
        return target

    return make
