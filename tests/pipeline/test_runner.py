"""`amlkit run`: papermill runs with non-default parameters, stage selection, failures."""

import json
import shutil
import subprocess
import sys

import nbformat
import pandas as pd
import pytest
from vega_datasets import local_data

from amlkit.pipeline import stages

pytestmark = pytest.mark.slow


def _amlkit(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "amlkit.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


@pytest.fixture
def project_with_notebooks(project, repo):
    shutil.copytree(repo / "notebooks", project / "notebooks")
    return project


def test_run_01_and_03_on_another_csv_with_a_date_and_a_text_target(
    project_with_notebooks, tmp_path
):
    weather = local_data.seattle_weather()
    weather["date"] = weather["date"].dt.strftime("%Y-%m-%d")
    csv = tmp_path / "weather.csv"
    weather.to_csv(csv, index=False)
    proc = _amlkit(
        "run",
        "-s",
        "01",
        "-s",
        "03",
        "--no-progress",
        "--run-id",
        "weather-run",
        "-p",
        "dataset",
        "weather",
        "-p",
        "source",
        str(csv),
        "-p",
        "target",
        "weather",
        "-p",
        "task",
        "classification",
        "-p",
        "random_state",
        "7",
        cwd=project_with_notebooks,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "run weather-run: 2 notebook(s) ok" in proc.stdout
    run = project_with_notebooks / "runs" / "weather-run"
    summary = json.loads((run / "run.json").read_text())
    assert [n["notebook"] for n in summary["notebooks"]] == [
        "01_data_ingestion.ipynb",
        "03_data_preprocessing.ipynb",
    ]
    assert summary["notebooks"][1]["parameters"]["random_state"] == 7
    processed = list((project_with_notebooks / "data" / "processed" / "weather").glob("*"))
    assert len(processed) == 1
    manifest = json.loads((processed[0] / "manifest.json").read_text())
    assert manifest["feature_types"]["date"] == "datetime"
    assert manifest["classes"] == ["drizzle", "fog", "rain", "snow", "sun"]
    assert manifest["params"]["random_state"] == 7
    train = pd.read_parquet(processed[0] / "train.parquet")
    assert str(train["date"].dtype).startswith("datetime64")


def test_failing_notebook_stops_the_run_names_the_cell_and_keeps_the_output(project_with_notebooks):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("x: int = 1  # a parameter", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("raise RuntimeError('bad things')"),
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, project_with_notebooks / "notebooks" / "00_broken.ipynb")
    proc = _amlkit("run", "--no-progress", "--run-id", "broken", cwd=project_with_notebooks)
    assert proc.returncode == 1
    assert "00_broken.ipynb failed in cell 1" in proc.stderr
    assert "RuntimeError: bad things" in proc.stderr
    kept = project_with_notebooks / "runs" / "broken" / "00_broken.ipynb"
    assert kept.is_file()
    summary = json.loads((kept.parent / "run.json").read_text())
    assert summary["status"] == "failed" and len(summary["notebooks"]) == 1


def test_unknown_parameter_is_refused_before_anything_runs(project_with_notebooks):
    proc = _amlkit("run", "-s", "01", "-p", "datset", "x", cwd=project_with_notebooks)
    assert proc.returncode == 2
    assert "parameter(s) datset are declared by none of the selected notebooks" in proc.stderr
    assert not (project_with_notebooks / "runs").exists()


def test_broken_config_is_refused_with_exit_2(project_with_notebooks):
    path = project_with_notebooks / "config" / "model_config.json"
    path.write_text(path.read_text().replace('"cv_folds": 5', '"cv_folds": "5"'))
    proc = _amlkit("run", "-s", "01", cwd=project_with_notebooks)
    assert proc.returncode == 2
    assert "config/model_config.json: key 'cv_folds' must be integer" in proc.stderr


def test_stage_selection(repo):
    notebooks = stages.discover(repo / "notebooks")
    names = [p.name[:2] for p in stages.select(["01-02"], notebooks)]
    assert names == ["01", "02"]
    with pytest.raises(ValueError, match="matches no notebook"):
        stages.select(["99"], notebooks)


def test_run_help_documents_parameters_and_exit_status():
    proc = subprocess.run(
        [sys.executable, "-m", "amlkit.cli", "run", "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0
    for text in ("--stages", "-p NAME VALUE", "runs/<run-id>/", "exit status"):
        assert text in proc.stdout


def test_run_through_training_on_a_regression_dataset(project_with_notebooks):
    proc = _amlkit(
        "run",
        "-s",
        "01",
        "-s",
        "03",
        "-s",
        "04",
        "--no-progress",
        "--run-id",
        "cars-run",
        "-p",
        "dataset",
        "cars",
        "-p",
        "search_iterations",
        "2",
        "-p",
        "cv_folds",
        "3",
        cwd=project_with_notebooks,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    models = project_with_notebooks / "models" / "trained_models" / "cars-regression"
    meta = json.loads((models / "1" / "model_metadata.json").read_text())
    assert meta["task"] == "regression" and meta["target"] == "Miles_per_Gallon"
    assert "Year" in meta["feature_types"] and "Name" not in meta["feature_columns"]
    metrics = json.loads((models / "1" / "performance_metrics.json").read_text())
    assert metrics["test"]["r2"] > 0.7
    assert json.loads((models / "champion.json").read_text())["version"] == 1
