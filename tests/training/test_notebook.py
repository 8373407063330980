"""Notebook 04 as users run it: papermill through the runner, in a fresh project root.

Training is defined once, in the notebook (its Pipelines, the search, the comparison); these
tests run it after 01 and 03 and read back what it wrote: the MLflow store, the registry and
the champion gate's record.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from sklearn.base import clone

from amlkit.pipeline import runner

pytestmark = pytest.mark.slow

NOTEBOOK = "notebooks/04_model_training_evaluation.ipynb"
SMALL_SEARCH = {"search_iterations": 2, "cv_folds": 3}


def trained_project(folder: Path, repo: Path, dataset: str, *, runs: int = 1) -> Path:
    """Run 01 and 03, then 04 ``runs`` times, on ``dataset`` in a new project root."""
    shutil.copytree(repo / "config", folder / "config")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AMLKIT_ROOT", str(folder))
        params = {"dataset": dataset, **SMALL_SEARCH}
        runner.run_pipeline(["01", "03", "04"], params, run_id="first", progress=False)
        for n in range(1, runs):
            runner.run_pipeline(["04"], params, run_id=f"again-{n}", progress=False)
    return folder


@pytest.fixture(scope="module")
def penguins(tmp_path_factory, repo) -> Path:
    return trained_project(tmp_path_factory.mktemp("penguins") / "root", repo, "penguins", runs=2)


@pytest.fixture(scope="module")
def cars(tmp_path_factory, repo) -> Path:
    return trained_project(tmp_path_factory.mktemp("cars") / "root", repo, "cars")


def client(root: Path) -> MlflowClient:
    uri = f"sqlite:///{root / '.amlkit' / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def version_dir(root: Path, name: str, version: int) -> Path:
    return root / "models" / "trained_models" / name / str(version)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_notebook_04_records_a_parent_run_with_a_nested_run_per_candidate(penguins):
    meta = read_json(version_dir(penguins, "penguins-classification", 1) / "model_metadata.json")
    mlflow = client(penguins)
    parent = mlflow.get_run(meta["mlflow_run_id"])
    children = mlflow.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )

    candidates = ["hist_gradient_boosting", "linear", "random_forest"]
    assert sorted(run.info.run_name for run in children) == candidates
    for run in children:
        assert run.data.params["candidate"] == run.info.run_name
        assert {"cv_f1_macro", "cv_f1_macro_std", "validation_f1_macro"} <= set(run.data.metrics)
    assert parent.data.tags["mlflow.source.name"] == NOTEBOOK
    assert parent.data.tags["mlflow.source.type"] == "NOTEBOOK"
    assert parent.data.tags["mlflow.source.git.commit"] == meta["code_commit"]
    assert parent.data.params["candidate"] in candidates
    assert parent.data.metrics["test_f1_macro"] > 0.95
    [data_input] = parent.inputs.dataset_inputs
    assert (data_input.dataset.name, data_input.dataset.digest) == (
        "penguins",
        meta["data"]["version"],
    )
    tags = {tag.key: tag.value for tag in data_input.tags}
    assert tags["mlflow.data.context"] == "training"
    artifacts = {a.path for a in mlflow.list_artifacts(parent.info.run_id, "figures")}
    assert "figures/confusion_matrix.png" in artifacts


def test_notebook_04_registers_a_described_version_tagged_with_its_data(penguins):
    meta = read_json(version_dir(penguins, "penguins-classification", 1) / "model_metadata.json")
    registered = client(penguins).get_model_version("penguins-classification", "1")

    assert registered.run_id == meta["mlflow_run_id"]
    assert registered.description.startswith(f"{meta['model_type']} (")
    assert registered.tags["data.version"] == meta["data"]["version"]
    raw_version = registered.tags["data.raw_version"]
    assert (penguins / "data" / "raw" / "penguins" / raw_version).is_dir()


def test_notebook_04_twice_gives_the_same_model_and_the_gate_keeps_the_first(penguins):
    first, second = (version_dir(penguins, "penguins-classification", n) for n in (1, 2))
    metrics = [read_json(folder / "performance_metrics.json") for folder in (first, second)]
    assert metrics[0] == metrics[1]  # exactly: the runs are deterministic
    assert (first / "hyperparameters.yaml").read_text() == (
        second / "hyperparameters.yaml"
    ).read_text()
    model_dir = first.parent
    assert read_json(model_dir / "champion.json")["version"] == 1
    lines = (model_dir / "decisions.jsonl").read_text().splitlines()
    decisions = [json.loads(line) for line in lines]
    assert [d["promoted"] for d in decisions] == [True, False]
    assert decisions[1]["candidate_score"] == decisions[1]["champion_score"]
    alias = client(penguins).get_model_version_by_alias("penguins-classification", "champion")
    assert int(alias.version) == 1


def test_notebook_04_model_serves_requests_typed_unlike_training(penguins):
    from amlkit.registry import store

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AMLKIT_ROOT", str(penguins))
        model = store.load_model("penguins-classification", "champion")
    request = pd.DataFrame(
        {
            "island": ["Biscoe", "Atlantis", None],
            "bill_length_mm": ["45.1", 39.0, None],
            "bill_depth_mm": [14.5, 18.7, 17.0],
            "flipper_length_mm": [215, 181.0, 190.0],
            "body_mass_g": [5000.0, None, 3700.0],
            "sex": ["female", "MALE", np.nan],
            "year": [2008, "2009", None],
        }
    )
    probabilities = model.predict_proba(request)
    assert set(model.predict(request)) <= {"Adelie", "Chinstrap", "Gentoo"}
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    assert model.predict(request.head(1))[0] == "Gentoo"


def test_notebook_04_preprocessing_is_the_one_the_shared_test_fixture_builds(
    penguins, feature_preprocessor
):
    from amlkit.registry import store

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AMLKIT_ROOT", str(penguins))
        version = store.get_version("penguins-classification", 1)
        model = store.load_model("penguins-classification", 1)
    built_here = feature_preprocessor(version.metadata.feature_types)
    assert repr(clone(model.named_steps["preprocess"])) == repr(built_here)


def test_notebook_04_on_a_regression_data_set_ranks_by_lower_error(cars):
    folder = version_dir(cars, "cars-regression", 1)
    meta = read_json(folder / "model_metadata.json")
    assert (meta["task"], meta["feature_types"]["Year"]) == ("regression", "datetime")
    assert read_json(folder / "performance_metrics.json")["test"]["r2"] > 0.7
    mlflow = client(cars)
    comparison_file = mlflow.download_artifacts(meta["mlflow_run_id"], "comparison.json")
    comparison = pd.DataFrame(json.loads(Path(comparison_file).read_text()))
    assert comparison["validation_rmse"].is_monotonic_increasing  # lower is better
    assert (comparison["cv_rmse"] > 0).all()  # the scorer's negated error, turned back
    chosen = mlflow.get_run(meta["mlflow_run_id"]).data.params["candidate"]
    assert comparison["candidate"].iloc[0] == chosen


def test_notebook_04_turns_dates_into_calendar_parts(cars):
    from amlkit.registry import store

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AMLKIT_ROOT", str(cars))
        model = store.load_model("cars-regression", 1)
    assert "Year_year" in model.named_steps["preprocess"].get_feature_names_out()
