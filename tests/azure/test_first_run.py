"""A team's first run, predicted here: a fresh export of the repository (`git archive`: no data,
no models, no local state) is planned, and the twin runs the training pipeline against a real
tracking server and Azurite, as Azure ML would; the champion is read from that registry, CD's
commands run against the twin, and a second pipeline run on unchanged data does not promote.

One first run for the module (it runs the real notebooks); the test functions read it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from mlflow import MlflowClient

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
MODEL = "penguins-classification"
SMALLEST = ["--set", "inputs.search_iterations=1", "--set", "inputs.cv_folds=2"]


def _env(export: Path, own_mlflow_server: Any, azurite: Any) -> dict[str, str]:
    """A shell in the export: no project root set, the twin's platform shared by every call."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMLKIT_", "MLFLOW_"))}
    env["PYTHONPATH"] = str(export / "lib")
    env["AMLKIT_TWIN_TRACKING_URI"] = own_mlflow_server.uri
    env["AMLKIT_TWIN_STORAGE"] = azurite.connection_string
    return env


def _amlkit(args: list[str], export: Path, env: dict[str, str], timeout: int = 1800) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "amlkit.cli", *args],
        cwd=export,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, own_mlflow_server, azurite) -> dict[str, Any]:
    """Export, plan, run the training pipeline twice; record what each step gave."""
    root = tmp_path_factory.mktemp("first-run")
    export = root / "export"
    export.mkdir()
    archive = subprocess.run(
        ["git", "archive", "--format=tar", "HEAD"], cwd=REPO, capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(export)], input=archive.stdout, check=True)
    state = ("data/raw", "data/processed", "models/trained_models", "models/deployed_models")
    exported = [str(p.relative_to(export)) for f in state for p in (export / f).glob("*/*")]
    exported += [str(p) for p in [export / ".amlkit", export / "mlflow.db"] if p.exists()]
    env = _env(export, own_mlflow_server, azurite)
    found: dict[str, Any] = {"export": export, "env": env, "exported_state": exported}
    found["root"] = root
    plan = _amlkit(["azure", "plan", "--out", str(export / "plan")], export, env, 600)
    found["plan"] = plan
    if plan.returncode:
        return found
    spec = str(export / "plan" / "pipelines" / "training.yml")
    for label in ("run1", "run2"):
        done = _amlkit(
            ["azure", "run-local", spec, *SMALLEST, "--out", str(root / label)], export, env
        )
        found[label] = done
        if done.returncode:
            break
        found[f"{label}_summary"] = json.loads((root / label / "run.json").read_text())
    return found


def _pipeline_ran(first_run: dict[str, Any], label: str = "run1") -> dict[str, Any]:
    assert first_run["plan"].returncode == 0, first_run["plan"].stderr[-3000:]
    done = first_run[label]
    assert done.returncode == 0, done.stderr[-3000:]
    return first_run[f"{label}_summary"]


def test_the_export_holds_no_data_models_or_state(first_run):
    assert first_run["exported_state"] == []
    assert first_run["plan"].returncode == 0, first_run["plan"].stderr[-3000:]


def test_the_pipeline_runs_each_step_in_a_child_of_the_pipeline_run(first_run, own_mlflow_server):
    summary = _pipeline_ran(first_run)
    assert [s["step"] for s in summary["steps"]] == ["ingest", "preprocess", "train", "package"]
    client = MlflowClient(own_mlflow_server.uri)
    parent = client.get_run(summary["pipeline_run_id"])
    assert parent.info.status == "FINISHED"
    for step in summary["steps"]:
        run = client.get_run(step["run_id"])
        assert (run.info.status, run.data.tags["mlflow.parentRunId"]) == (
            "FINISHED",
            parent.info.run_id,
        )
    [registry] = [a for a in summary["registered_data"] if a["name"] == "amlkit-registry"]
    assert registry["path"] == summary["steps"][2]["outputs"]["trained_models"]


def test_training_logs_into_the_jobs_run_and_registers_over_http(first_run, own_mlflow_server):
    summary = _pipeline_ran(first_run)
    client = MlflowClient(own_mlflow_server.uri, registry_uri=own_mlflow_server.uri)
    train = client.get_run(summary["steps"][2]["run_id"])
    children = client.search_runs(
        [train.info.experiment_id], f"tags.mlflow.parentRunId = '{train.info.run_id}'"
    )
    assert children, "the candidates are nested under the job's run"
    versions = client.search_model_versions(f"name = '{MODEL}'")
    assert versions and all(v.source.startswith(("runs:/", "models:/")) for v in versions)


def test_the_champion_is_read_from_the_registry_the_job_registered_in(first_run, own_mlflow_server):
    summary = _pipeline_ran(first_run)
    client = MlflowClient(own_mlflow_server.uri, registry_uri=own_mlflow_server.uri)
    champion = client.get_model_version_by_alias(MODEL, "champion")
    local = Path(summary["outputs"]["trained_models"]) / MODEL / "champion.json"
    assert int(json.loads(local.read_text())["version"]) == int(champion.version)
    shown = _amlkit(
        ["azure", "champion", "--json"],
        first_run["export"],
        {**first_run["env"], "MLFLOW_TRACKING_URI": own_mlflow_server.uri},
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    record = json.loads(shown.stdout)
    assert (record["model"], str(record["champion_version"])) == (MODEL, champion.version)
    assert record["packaged_model"].startswith(f"{MODEL}-packaged:")


def test_cd_deploys_the_produced_version_and_its_traffic_reaches_the_monitor(
    first_run, own_mlflow_server, tmp_path
):
    """CD's deploy job against the twin: the exact packaged version, first at 100%, then the
    switch finds nothing to switch and the rollback nothing to roll back; the deployment's
    data collector writes what it scores, and `amlkit monitor` reads it."""
    from amlkit.azure.twin_endpoint import TwinEndpoint

    _pipeline_ran(first_run)
    export = first_run["export"]
    env = {**first_run["env"], "MLFLOW_TRACKING_URI": own_mlflow_server.uri}
    shown = json.loads(_amlkit(["azure", "champion", "--json"], export, env).stdout)
    packaged = shown["packaged_model"]

    def deploy(*args: str) -> dict[str, Any]:
        done = _amlkit(["azure", "deploy", "--deployment", "idle", *args, "--json"], export, env)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return json.loads(done.stdout)

    canary = deploy("--model", packaged, "--traffic", "10", "--smoke-test")  # CD's canary step
    assert (canary["action"], canary["model"], canary["traffic"]) == (
        "first",
        packaged,
        {"blue": 100},
    )  # the first deployment takes all traffic: nothing to share it with
    switch = deploy("--model", packaged, "--traffic", "100", "--smoke-test")  # CD's switch
    assert (switch["action"], switch["traffic"]) == ("unchanged", {"blue": 100})
    assert deploy("--rollback")["action"] == "nothing_to_roll_back"

    [folder] = (export / ".amlkit" / "twin-endpoints").iterdir()
    processed = first_run["root"] / "run1" / "preprocess" / "processed_data"
    [test_split] = processed.glob("*/*/test.parquet")
    rows = pd.read_parquet(test_split).drop(columns=["species"])
    with TwinEndpoint(folder, folder.name) as endpoint:
        body = {"input_data": json.loads(rows.to_json(orient="split", index=False))}
        status, answer, served_by = endpoint.score(body)
        assert (status, served_by, len(answer["predictions"])) == (200, "blue", len(rows))
        collected = endpoint.collected("blue").parent
        assert _wait_for_rows(collected, len(rows)), f"the collector wrote too little: {collected}"

    project = tmp_path / "monitoring"  # what monitor.yml rebuilds: the config and the baseline
    shutil.copytree(export / "config", project / "config")
    (project / "data").mkdir()
    (project / "data" / "processed").symlink_to(processed, target_is_directory=True)
    monitored = _amlkit(
        ["monitor", "--production", str(collected), "--dataset", "penguins", "--json"],
        export,
        {**env, "AMLKIT_ROOT": str(project)},
    )
    assert monitored.returncode in (0, 4), monitored.stderr[-2000:]
    summary = json.loads(monitored.stdout)
    assert summary["rows"] >= len(rows)  # the smoke tests' rows were collected too
    assert summary["training_data"]["dataset"] == "penguins"


def _wait_for_rows(folder: Path, rows: int, timeout_s: float = 60.0) -> bool:
    """Wait until the collector's model_inputs under ``folder`` hold ``rows`` more rows."""
    from amlkit.monitoring.collected import read_collected

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (folder / "model_outputs").is_dir() and (folder / "model_inputs").is_dir():
            frame = read_collected(folder)
            if frame["prediction"].notna().sum() >= rows:
                return True
        time.sleep(0.5)
    return False


def test_a_second_run_on_unchanged_data_does_not_promote(first_run, own_mlflow_server):
    _pipeline_ran(first_run)
    second = _pipeline_ran(first_run, "run2")
    client = MlflowClient(own_mlflow_server.uri, registry_uri=own_mlflow_server.uri)
    champion = client.get_model_version_by_alias(MODEL, "champion")
    newest = max(int(v.version) for v in client.search_model_versions(f"name = '{MODEL}'"))
    assert int(champion.version) < newest  # the second run registered, and did not promote
    first = first_run["run1_summary"]
    assert first["steps"][0]["outputs"] != second["steps"][0]["outputs"]  # fresh job folders
    [one] = [a for a in first["registered_data"] if a["name"] == "amlkit-registry"]
    [two] = [a for a in second["registered_data"] if a["name"] == "amlkit-registry"]
    assert int(two["version"]) == int(one["version"]) + 1
