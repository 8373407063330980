"""`amlkit azure plan` writes every spec with relative paths, and each survives the SDK's
loaders both ways; the live commands skip with the reason when no workspace is configured."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

EXPECTED_KINDS = {
    "environment",
    "compute",
    "command",
    "pipeline",
    "schedule",
    "sweep",
    "online_endpoint",
    "online_deployment",
    "batch_endpoint",
    "batch_deployment",
}


@pytest.fixture(scope="module")
def fresh_plan(tmp_path_factory, new_project):
    """The plan of a fresh clone: configuration only, no data, no model, no workspace."""
    from amlkit.azure.plan import write_plan

    with pytest.MonkeyPatch.context() as mp:
        root = new_project(tmp_path_factory.mktemp("fresh") / "root", mp)
        out = root / "plan"
        yield out, write_plan(out)


def _azure_names() -> tuple[str, str]:
    from amlkit.azure.endpoints import azure_endpoint_names
    from amlkit.config import AzureConfig, DeploymentConfig

    return azure_endpoint_names(DeploymentConfig.load(), AzureConfig.load())


def _path_values(obj, key=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _path_values(v, k)
    elif isinstance(obj, list):
        for item in obj:
            yield from _path_values(item, key)
    elif key in ("path", "code", "conda_file", "model", "create_job") and isinstance(obj, str):
        yield obj


def test_fresh_clone_plan_writes_every_kind_of_spec(fresh_plan):
    _, entries = fresh_plan
    assert {e.kind for e in entries if e.file != "-"} == EXPECTED_KINDS
    names = {e.name for e in entries}
    online, batch = _azure_names()
    assert {"training-pipeline", "training-sweep", "job-05-distributed"} <= names
    assert {f"{online}/blue", f"{batch}/champion"} <= names
    assert f"{online}-monitoring" in names
    data = [e for e in entries if e.kind == "data"]
    assert [(e.file, e.note) for e in data] == [("-", "none: no data version here yet")]


def test_specs_hold_relative_paths_only(fresh_plan):
    out, entries = fresh_plan
    for entry in entries:
        if entry.file == "-":
            continue
        spec = yaml.safe_load((out / entry.file).read_text())
        for value in _path_values(spec):
            assert not os.path.isabs(value), f"{entry.file}: {value}"
            if not value.startswith("azureml:"):
                assert ((out / entry.file).parent / value).exists(), f"{entry.file}: {value}"


def test_every_spec_round_trips_through_its_sdk_loader(fresh_plan):
    from amlkit.azure import specs

    out, entries = fresh_plan
    for entry in entries:
        if entry.file == "-":
            continue
        first, second = specs.round_trip(out / entry.file, entry.kind)
        assert first == second, entry.file


def test_jobs_run_the_notebooks_with_their_own_parameters(fresh_plan, repo):
    import papermill

    out, _ = fresh_plan
    job = yaml.safe_load((out / "jobs" / "04_model_training_evaluation.yml").read_text())
    declared = papermill.inspect_notebook(
        str(repo / "notebooks/04_model_training_evaluation.ipynb")
    )
    params = {k: v for k, v in job["inputs"].items() if k != "processed_data"}
    assert set(params) <= set(declared)
    for name in params:
        assert f"-p {name} ${{{{inputs.{name}}}}}" in job["command"]
    assert job["inputs"]["processed_data"]["path"] == "azureml:penguins-processed@latest"
    assert job["code"] == os.path.relpath(repo, out / "jobs")
    assert job["environment"].startswith("azureml:amlkit-training:")
    distributed = yaml.safe_load((out / "jobs" / "05-distributed.yml").read_text())
    assert distributed["distribution"] == {"type": "tensorflow", "worker_count": 2}
    assert distributed["resources"] == {"instance_count": 2}


def test_pipeline_wires_the_steps_through_their_outputs(fresh_plan):
    out, _ = fresh_plan
    pipeline = yaml.safe_load((out / "pipelines" / "training.yml").read_text())
    jobs = pipeline["jobs"]
    assert list(jobs) == ["ingest", "preprocess", "train", "package"]
    assert jobs["preprocess"]["inputs"]["raw_data"] == "${{parent.jobs.ingest.outputs.raw_data}}"
    assert jobs["train"]["inputs"]["processed_data"] == (
        "${{parent.jobs.preprocess.outputs.processed_data}}"
    )
    assert jobs["train"]["inputs"]["search_iterations"] == "${{parent.inputs.search_iterations}}"
    # `amlkit package` registers <model>-packaged itself; a named output would register a
    # second version under the same name ("already linked ... cannot be overwritten")
    assert pipeline["outputs"]["packaged_model"] == {"type": "uri_folder"}
    registry = {"type": "uri_folder", "name": "amlkit-registry"}
    assert pipeline["outputs"]["trained_models"] == registry


def test_sweep_searches_the_configured_space_for_the_primary_metric(fresh_plan):
    import math

    out, _ = fresh_plan
    sweep = yaml.safe_load((out / "sweeps" / "training.yml").read_text())
    space = sweep["search_space"]
    assert space["candidate"]["values"] == ["linear", "random_forest", "hist_gradient_boosting"]
    assert space["linear__C"]["type"] == "loguniform"
    assert math.exp(space["linear__C"]["min_value"]) == pytest.approx(0.01)
    assert space["random_forest__n_estimators"] == {
        "type": "quniform",
        "min_value": 50,
        "max_value": 199,
        "q": 1,
    }
    assert space["random_forest__max_depth"]["values"] == ["None", 4, 8, 16]
    assert sweep["objective"] == {"goal": "maximize", "primary_metric": "validation_f1_macro"}
    assert sweep["early_termination"]["type"] == "bandit"
    assert sweep["limits"]["max_total_trials"] == 12


def test_online_deployments_collect_data_with_the_lean_environment(fresh_plan):
    out, _ = fresh_plan
    blue = yaml.safe_load((out / "endpoints" / "online" / "blue.yml").read_text())
    assert blue["app_insights_enabled"] is True
    assert set(blue["data_collector"]["collections"]) == {"model_inputs", "model_outputs"}
    pip = blue["environment"]["conda_file"]["dependencies"][-1]["pip"]
    assert not [p for p in pip if p.startswith(("scikit-learn", "tensorflow", "jupyterlab"))]
    assert blue["model"] == "azureml:penguins-classification-packaged@latest"
    code = (out / "endpoints" / "online" / blue["code_configuration"]["code"]).resolve()
    assert (code / "scoring_script.py").is_file() and (code / "amlkit").is_dir()


def test_monitor_uses_the_local_monitors_metric_names_and_thresholds(fresh_plan, repo):
    from amlkit.config import DeploymentConfig

    out, _ = fresh_plan
    schedule = yaml.safe_load((out / "monitoring" / "schedule.yml").read_text())
    thresholds = DeploymentConfig.load(repo / "config").monitoring.thresholds
    signals = schedule["create_monitor"]["monitoring_signals"]
    assert set(signals) == {
        "data_drift",
        "prediction_drift",
        "data_quality",
        "feature_attribution_drift",
    }
    drift = signals["data_drift"]["metric_thresholds"]
    assert drift["numerical"] == {
        "normalized_wasserstein_distance": thresholds.normalized_wasserstein_distance
    }
    assert drift["categorical"] == {"jensen_shannon_distance": thresholds.jensen_shannon_distance}
    quality = signals["data_quality"]["metric_thresholds"]["numerical"]
    tolerated = DeploymentConfig.load(repo / "config").monitoring.retraining.max_quality_rates
    assert quality == {  # no training split on a fresh clone: the retraining rule's null rate
        "null_value_rate": max(thresholds.null_value_rate, tolerated.null_value_rate),
        "data_type_error_rate": thresholds.data_type_error_rate,
        "out_of_bounds_rate": thresholds.out_of_bounds_rate,
    }
    reference = signals["data_drift"]["reference_data"]["input_data"]["path"]
    assert reference == "azureml:penguins-train@latest"
    production = signals["data_drift"]["production_data"]["input_data"]["path"]
    assert production == f"azureml:{_azure_names()[0]}-blue-model_inputs:1"


def test_a_bayesian_sweep_with_early_termination_is_refused():
    from amlkit.config import ConfigError, ModelConfig

    with pytest.raises(ConfigError, match="bayesian sampling takes no early termination"):
        ModelConfig.from_dict({"candidates": {}, "sweep": {"sampling_algorithm": "bayesian"}})


def _amlkit(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "AMLKIT_ROOT": str(root)}
    env.pop("MLFLOW_TRACKING_URI", None)  # no tracking server: nothing to read or deploy to
    return subprocess.run(
        [sys.executable, "-m", "amlkit.cli", "azure", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_plan_command_prints_the_plan(project, tmp_path):
    done = _amlkit(project, "plan", "--out", str(tmp_path / "plan"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["entity", "kind", "file", "note"]
    assert any(line.startswith("training-pipeline ") for line in lines)
    assert "validated with the azure-ai-ml loaders" in lines[-1]


@pytest.mark.parametrize(
    "args",
    [["submit"], ["deploy", "--smoke-test"], ["deploy", "--rollback"], ["champion", "--json"]],
    ids=["submit", "deploy", "rollback", "champion"],
)
def test_live_commands_skip_without_a_workspace(project, args):
    done = _amlkit(project, *args)
    assert done.returncode == 3, done.stderr
    assert done.stdout.startswith("skipped: config/azure_config.json names no workspace")
    assert len(done.stdout.strip().splitlines()) == 1


def test_specs_round_trip_wherever_the_plan_is_written(repo, new_project, tmp_path):
    """A plan inside the repository (as in `dev.py test`'s project) keeps ``code`` in place."""
    import shutil
    import tempfile

    from amlkit.azure import specs
    from amlkit.azure.plan import write_plan

    (repo / ".amlkit").mkdir(exist_ok=True)
    out = Path(tempfile.mkdtemp(prefix="plan-", dir=repo / ".amlkit"))
    try:
        with pytest.MonkeyPatch.context() as mp:
            new_project(tmp_path / "root", mp)
            jobs = [e for e in write_plan(out) if e.file.startswith("jobs/")]
            assert jobs
            for entry in jobs:
                first, second = specs.round_trip(out / entry.file, entry.kind)
                assert first == second, entry.file
                assert Path(first["code"]).resolve() == repo.resolve(), entry.file
        assert not list(out.rglob(".*.roundtrip*")), "the round trip leaves its dump behind"
    finally:
        shutil.rmtree(out, ignore_errors=True)


def test_plan_does_not_empty_a_folder_that_is_not_a_plan(project, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    done = _amlkit(project, "plan", "--out", str(out))
    assert done.returncode == 1  # cmd_plan's status for a plan that could not be written
    message = f"amlkit: plan failed: {out} holds files but no plan.json, so it is not a plan"
    assert message in done.stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_batch_deployment_uses_the_model_deployment_schema_with_settings(fresh_plan):
    out, _ = fresh_plan
    spec = yaml.safe_load((out / "endpoints" / "batch" / "deployment.yml").read_text())
    assert spec["type"] == "model"  # as azureml-examples' current batch deployments
    assert spec["$schema"].endswith("/modelBatchDeployment.schema.json")
    settings = spec["settings"]
    assert {"mini_batch_size", "output_action", "output_file_name", "retry_settings"} <= set(
        settings
    )
    assert settings["environment_variables"]["AMLKIT_BATCH_CHUNK_ROWS"]
    assert "mini_batch_size" not in spec and spec["resources"]["instance_count"] >= 1
