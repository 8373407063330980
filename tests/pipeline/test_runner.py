"""`amlkit run`: papermill runs with non-default parameters, stage selection, failures."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
from vega_datasets import local_data

from amlkit.pipeline import PipelineError, runner, stages

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
    kernel_logs = "".join(p.read_text() for p in run.glob("*.kernel.log"))
    for output in (proc.stdout, proc.stderr, kernel_logs):  # encrypted, not merely hidden
        assert "without encryption" not in output
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


def test_failing_notebook_stops_the_run_names_the_cell_and_keeps_the_output(
    project_with_notebooks, make_notebook
):
    make_notebook(
        project_with_notebooks / "notebooks" / "00_broken.ipynb",
        "raise RuntimeError('bad things')",
        parameters="x: int = 1  # a parameter",
    )
    proc = _amlkit("run", "--no-progress", "--run-id", "broken", cwd=project_with_notebooks)
    assert proc.returncode == 1
    assert "00_broken.ipynb failed in cell 1" in proc.stderr
    assert "RuntimeError: bad things" in proc.stderr
    kept = project_with_notebooks / "runs" / "broken" / "00_broken.ipynb"
    assert kept.is_file()
    assert f"The executed notebook is kept for inspection: {kept}" in proc.stderr
    summary = json.loads((kept.parent / "run.json").read_text())
    assert summary["status"] == "failed" and len(summary["notebooks"]) == 1
    assert summary["notebooks"][0]["error"] == "RuntimeError: bad things"


def test_a_kernel_that_dies_stops_the_run_and_names_the_notebook(project, make_notebook):
    make_notebook(project / "notebooks" / "00_killed.ipynb", "import os\nos._exit(1)")
    proc = _amlkit("run", "--no-progress", "--run-id", "killed", cwd=project)
    assert proc.returncode == 1
    assert "00_killed.ipynb stopped: Kernel died" in proc.stderr
    summary = json.loads((project / "runs" / "killed" / "run.json").read_text())
    assert summary["notebooks"][0]["error"].startswith("DeadKernelError")


def test_a_killed_run_leaves_its_kernel_connection_file_in_the_run_not_in_tmp(
    project, make_notebook, tmp_path
):
    marker = tmp_path / "kernel.json"
    record = (
        "import json, os\nfrom ipykernel import get_connection_file\n"
        f"open({str(marker)!r}, 'w').write(json.dumps([get_connection_file(), os.getpid()]))"
    )
    make_notebook(project / "notebooks" / "00_slow.ipynb", record, "import time\ntime.sleep(120)")
    run = subprocess.Popen(
        [sys.executable, "-m", "amlkit.cli", "run", "--no-progress", "--run-id", "slow"],
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.is_file() or not marker.read_text():
            assert run.poll() is None and time.monotonic() < deadline, "the kernel never started"
            time.sleep(0.2)
    finally:
        run.kill()  # as a user's kill -9 or a lost terminal would
        run.wait()
    connection_file, kernel_pid = json.loads(marker.read_text())
    os.kill(kernel_pid, signal.SIGKILL)  # the orphaned kernel
    assert Path(connection_file).parent == project / "runs" / "slow"
    assert Path(connection_file).parent != Path(tempfile.gettempdir())


def test_a_kernel_that_fails_to_start_is_reported_with_the_end_of_its_log(
    project, make_notebook, tmp_path, monkeypatch
):
    spec = tmp_path / "jupyter" / "kernels" / "broken" / "kernel.json"
    spec.parent.mkdir(parents=True)
    crash = "import sys; sys.exit('No module named ipykernel_launcher')"
    argv = [sys.executable, "-c", crash, "{connection_file}"]
    spec.write_text(json.dumps({"argv": argv, "display_name": "broken", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    make_notebook(project / "notebooks" / "00_start.ipynb", "1", kernel="broken")

    proc = _amlkit("run", "--no-progress", "--run-id", "start", cwd=project)

    assert proc.returncode == 1
    log = project / "runs" / "start" / "00_start.kernel.log"
    assert (
        f"The kernel's log ({log}) ends with:\n  No module named ipykernel_launcher" in proc.stderr
    )


def test_a_notebook_whose_kernel_is_not_installed_is_refused_before_anything_runs(
    project, make_notebook
):
    make_notebook(project / "notebooks" / "00_other.ipynb", "1", kernel="no-such-kernel")
    proc = _amlkit("run", cwd=project)
    assert proc.returncode == 2
    assert "00_other.ipynb declares the Jupyter kernel 'no-such-kernel'" in proc.stderr
    assert "python3 dev.py setup" in proc.stderr
    assert not (project / "runs").exists()


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


def test_run_notebooks_from_inside_a_notebook_runs_the_repository_stage_and_keeps_it(
    project, tmp_path, make_notebook
):
    # as notebook 07 retrains: its kernel re-runs stage notebooks through papermill; the
    # project root (like nbval's) has only config/, so the repository's notebooks run
    caller = make_notebook(
        tmp_path / "caller.ipynb",
        "from amlkit.pipeline import runner\n"
        "executed = runner.run_notebooks(['01'], {'dataset': 'penguins'}, record)",
        "[p.name for p in executed]",
        parameters="record: str = ''  # the folder for the executed notebooks",
    )
    record = tmp_path / "retraining" / "v2"

    runner.execute(caller, tmp_path / "caller-run.ipynb", {"record": str(record)}, progress=False)

    last = json.loads((tmp_path / "caller-run.ipynb").read_text())["cells"][-1]
    assert [o["output_type"] for o in last["outputs"]] == ["execute_result"]
    assert last["outputs"][0]["data"]["text/plain"] == ["['01_data_ingestion.ipynb']"]
    assert not (project / "notebooks").exists()
    summary = json.loads((record / "run.json").read_text())
    assert summary["status"] == "ok"
    assert summary["notebooks"][0]["parameters"] == {"dataset": "penguins"}
    executed = json.loads((record / "01_data_ingestion.ipynb").read_text())
    assert executed["metadata"]["papermill"]["input_path"].endswith(
        "notebooks/01_data_ingestion.ipynb"
    )
    assert len(list((project / "data" / "raw" / "penguins").iterdir())) == 1


def test_run_notebooks_refuses_a_folder_that_already_holds_a_record(project, tmp_path):
    record = tmp_path / "record"
    record.mkdir()
    (record / "run.json").write_text("{}")
    with pytest.raises(ValueError, match="already holds files"):
        runner.run_notebooks(["01"], output_dir=record)


@pytest.fixture
def two_stages(project, make_notebook):
    """Stage 01 writes a file into the project root; stage 02 prints it."""
    folder = project / "notebooks"
    make_notebook(
        folder / "01_write.ipynb",
        "from amlkit import paths\n(paths.project_root() / 'note.txt').write_text('from 01')",
    )
    make_notebook(
        folder / "02_read.ipynb",
        "from amlkit import paths\nprint((paths.project_root() / 'note.txt').read_text())",
    )
    return folder


def test_refresh_runs_the_earlier_stages_in_a_fresh_root_and_writes_back_a_clean_notebook(
    project, two_stages
):
    first = (two_stages / "01_write.ipynb").read_text()

    refreshed = runner.refresh_notebooks([two_stages / "02_read.ipynb"])

    assert refreshed == [two_stages / "02_read.ipynb"]
    nb = json.loads((two_stages / "02_read.ipynb").read_text())
    assert nb["cells"][0]["outputs"][0]["text"] == ["from 01\n"]
    assert "papermill" not in nb["metadata"]
    assert (two_stages / "01_write.ipynb").read_text() == first
    assert not (project / "note.txt").exists()


def test_a_failed_refresh_leaves_the_notebook_untouched_and_keeps_the_failed_copy(
    two_stages, make_notebook
):
    broken = make_notebook(two_stages / "02_read.ipynb", "raise ValueError('no')")
    before = broken.read_text()

    with pytest.raises(PipelineError, match=r"02_read\.ipynb failed in cell 0") as failure:
        runner.refresh_notebooks([broken])

    assert broken.read_text() == before
    kept = Path(str(failure.value).rsplit(": ", 1)[-1])
    assert kept.name == "02_read.ipynb" and kept.is_file()
    shutil.rmtree(kept.parent)
