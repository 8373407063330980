"""The twin gives a job what Azure ML gives it, with real stand-ins: the job's MLflow run made
on the tracking server before the process starts (and ended after), the platform's variables,
inputs downloaded read-only from the datastore (Azurite), outputs uploaded there, the next
step reading the datastore's copy, named outputs registered as data asset versions."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

pytestmark = pytest.mark.slow

PROBE = """
import json, os, pathlib, stat, sys
mode, source, out = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
if mode == "make":
    (out / "made.txt").write_text("made by the first step")
    sys.exit(0)
if mode == "touch":
    (pathlib.Path(source) / "new.txt").write_text("written into an input")
    sys.exit(0)
names = ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME",
         "AZUREML_RUN_ID", "AZUREML_ARM_PROJECT_NAME", "AZUREML_ARM_WORKSPACE_NAME", "AMLKIT_ROOT")
files = sorted(p for p in pathlib.Path(source).rglob("*") if p.is_file())
record = {
    "env": {n: os.environ.get(n) for n in names},
    "input": source,
    "files": {p.name: p.read_text() for p in files},
    "read_only": all(not p.stat().st_mode & stat.S_IWUSR for p in files),
}
(out / "seen.json").write_text(json.dumps(record))
"""
JOB = {
    "type": "command",
    "code": "../../code",
    "environment": "azureml:probe-env:1",
    "compute": "azureml:cpu-cluster",
}


@pytest.fixture
def plan(tmp_path: Path) -> Path:
    """A plan folder: a data asset (a local folder) and the probe's code."""
    (tmp_path / "rows").mkdir()
    (tmp_path / "rows" / "rows.csv").write_text("a,b\n1,2\n")
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "probe.py").write_text(PROBE)
    plan = tmp_path / "plan"
    (plan / "data").mkdir(parents=True)
    (plan / "jobs").mkdir()
    (plan / "plan.json").write_text("[]")
    asset = {"name": "probe-rows", "version": "1", "type": "uri_folder", "path": "../../rows"}
    (plan / "data" / "probe-rows-1.yml").write_text(yaml.safe_dump(asset))
    return plan


def _write(plan: Path, name: str, spec: dict) -> Path:
    path = plan / "jobs" / f"{name}.yml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _twin(spec: Path, out: Path, mlflow_server, azurite):
    from amlkit.azure.twin import Twin

    return Twin(spec, out, tracking_uri=mlflow_server.uri, storage=azurite.connection_string)


def _command(plan: Path, mode: str = "seen") -> Path:
    return _write(
        plan,
        f"probe-{mode}",
        {
            **JOB,
            "experiment_name": "twin-probe",
            "command": f"python probe.py {mode} ${{{{inputs.rows}}}} ${{{{outputs.result}}}}",
            "inputs": {"rows": {"type": "uri_folder", "path": "azureml:probe-rows:1"}},
            "outputs": {"result": {"type": "uri_folder", "name": "probe-result"}},
        },
    )


def test_a_command_job_runs_in_its_run_with_inputs_from_the_datastore_read_only(
    plan, tmp_path, mlflow_server, azurite
):
    summary = _twin(_command(plan), tmp_path / "out", mlflow_server, azurite).run()
    [step] = summary["steps"]
    seen = json.loads((tmp_path / "out" / "outputs" / "result" / "seen.json").read_text())
    env = seen["env"]
    assert env["MLFLOW_RUN_ID"] == env["AZUREML_RUN_ID"] == step["run_id"]
    assert env["MLFLOW_TRACKING_URI"] == mlflow_server.uri
    assert env["MLFLOW_EXPERIMENT_NAME"] == env["AZUREML_ARM_PROJECT_NAME"] == "twin-probe"
    assert env["AMLKIT_ROOT"] is None
    client = MlflowClient(mlflow_server.uri)
    run = client.get_run(step["run_id"])
    assert run.info.status == "FINISHED"
    assert run.info.experiment_id == env["MLFLOW_EXPERIMENT_ID"]
    assert client.get_experiment(run.info.experiment_id).name == "twin-probe"
    # the input: the datastore's copy, mounted read-only, not the asset's own folder
    assert seen["files"] == {"rows.csv": "a,b\n1,2\n"}
    assert seen["read_only"] is True
    assert Path(seen["input"]).is_relative_to(tmp_path / "out" / "job" / "inputs")
    assert step["inputs"]["rows"].startswith(
        "azureml://datastores/workspaceblobstore/paths/LocalUpload/"
    )
    fs = azurite.filesystem()
    uploaded = step["inputs"]["rows"].removeprefix("azureml://datastores/workspaceblobstore/paths/")
    assert fs.cat(f"workspaceblobstore/{uploaded}/rows.csv") == b"a,b\n1,2\n"
    # the output: uploaded to the job's folder in the datastore
    assert step["outputs"]["result"] == (
        f"azureml://datastores/workspaceblobstore/paths/azureml/{step['run_id']}/result"
    )
    assert fs.exists(f"workspaceblobstore/azureml/{step['run_id']}/result/seen.json")
    # a named output is a data asset, a new version each run
    [first] = summary["registered_data"]
    again = _twin(_command(plan), tmp_path / "again", mlflow_server, azurite).run()
    [second] = again["registered_data"]
    assert (first["name"], second["name"]) == ("probe-result", "probe-result")
    assert int(second["version"]) == int(first["version"]) + 1
    assert second["path"] == again["steps"][0]["outputs"]["result"]
    assert json.loads((tmp_path / "again" / "run.json").read_text())["registered_data"] == [second]


def test_a_pipeline_step_reads_the_datastores_copy_of_the_previous_output_in_a_child_run(
    plan, tmp_path, mlflow_server, azurite
):
    step = {**JOB, "outputs": {"out": {"type": "uri_folder"}}}
    spec = {
        "type": "pipeline",
        "experiment_name": "twin-probe-pipeline",
        "display_name": "probe pipeline",
        "jobs": {
            "make": {**step, "command": "python probe.py make - ${{outputs.out}}"},
            "read": {
                **step,
                "command": "python probe.py seen ${{inputs.src}} ${{outputs.out}}",
                "inputs": {"src": "${{parent.jobs.make.outputs.out}}"},
            },
        },
    }
    out = tmp_path / "out"
    summary = _twin(_write(plan, "pipeline", spec), out, mlflow_server, azurite).run()
    seen = json.loads((out / "read" / "out" / "seen.json").read_text())
    assert seen["files"] == {"made.txt": "made by the first step"}
    assert Path(seen["input"]) == out / "read" / "inputs" / "src"  # not make's folder
    assert seen["read_only"] is True
    client = MlflowClient(mlflow_server.uri)
    parent = client.get_run(summary["pipeline_run_id"])
    assert (parent.info.status, parent.info.run_name) == ("FINISHED", "probe pipeline")
    for record in summary["steps"]:
        child = client.get_run(record["run_id"])
        assert child.info.status == "FINISHED"
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.info.run_name == record["step"]
        assert child.info.experiment_id == parent.info.experiment_id
    assert seen["env"]["MLFLOW_RUN_ID"] == summary["steps"][1]["run_id"]


def test_a_step_that_writes_into_its_input_fails_and_its_run_is_failed(
    plan, tmp_path, mlflow_server, azurite
):
    from amlkit.azure.twin import TwinError

    with pytest.raises(TwinError, match=r"wrote into its input 'rows'.*read-only.*new\.txt"):
        _twin(_command(plan, "touch"), tmp_path / "out", mlflow_server, azurite).run()
    client = MlflowClient(mlflow_server.uri)
    experiment = client.get_experiment_by_name("twin-probe")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"])
    assert runs[0].info.status == "FAILED"


def test_mounted_inputs_lose_their_write_permission(tmp_path):
    from amlkit.azure.twin_platform import make_read_only, make_writable

    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f.txt").write_text("x")
    make_read_only(tmp_path / "a")
    modes = [p.stat().st_mode for p in [tmp_path / "a", *(tmp_path / "a").rglob("*")]]
    assert not any(mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) for mode in modes)
    make_writable(tmp_path / "a")
    assert (tmp_path / "a" / "b" / "f.txt").stat().st_mode & stat.S_IWUSR
