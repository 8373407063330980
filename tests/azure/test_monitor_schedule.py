"""The MonitorSchedule follows Microsoft's examples: mltable reference, the serving deployment,
prediction drift on the column the collector writes, null thresholds from the training data."""

from __future__ import annotations

import sys

import pandas as pd
import pytest
import yaml

from amlkit.config import DeploymentConfig


def _schedule_dict(schedule, folder):
    from amlkit.azure import specs

    return specs.entity_dict(schedule, folder)


def _schedule(project, tmp_path, **kwargs):
    from amlkit.azure import monitoring

    config = kwargs.pop("config", None) or DeploymentConfig.load()
    schedule = monitoring.monitor_schedule(
        config, dataset="penguins", target="species", task="classification", **kwargs
    )
    return _schedule_dict(schedule, tmp_path)


def test_monitor_reads_the_training_split_as_an_mltable_with_its_target(project, tmp_path):
    signals = _schedule(project, tmp_path)["create_monitor"]["monitoring_signals"]
    for signal in signals.values():
        reference = signal["reference_data"]
        assert reference["input_data"] == {
            "type": "mltable",
            "path": "azureml:penguins-train@latest",
        }
        assert reference["data_column_names"] == {"target_column": "species"}


@pytest.mark.parametrize(
    ("traffic", "deployment", "watched"),
    [({"blue": 100}, None, "blue"), ({"blue": 0, "green": 100}, None, "green"),
     ({"blue": 100}, "green", "green"), ({}, None, "blue")],
    ids=["blue_serves", "green_serves", "named_after_a_switch", "no_traffic_yet"],
)  # fmt: skip
def test_monitor_watches_the_deployment_that_serves(
    project, tmp_path, traffic, deployment, watched
):
    config = DeploymentConfig.load().model_copy(update={"traffic": traffic})
    spec = _schedule(project, tmp_path, config=config, deployment=deployment)["create_monitor"]
    assert (
        spec["monitoring_target"]["endpoint_deployment_id"] == f"azureml:amlkit-penguins:{watched}"
    )
    for name, collection in (("data_drift", "model_inputs"), ("prediction_drift", "model_outputs")):
        production = spec["monitoring_signals"][name]["production_data"]
        assert (
            production["input_data"]["path"] == f"azureml:amlkit-penguins-{watched}-{collection}:1"
        )
        assert production["data_context"] == collection


@pytest.mark.parametrize("alert", [True, False])
def test_monitor_watches_feature_attribution_with_the_local_ndcg_threshold(
    project, tmp_path, alert
):
    from amlkit.azure import monitoring, specs

    config = DeploymentConfig.load()
    rules = config.monitoring.retraining.model_copy(update={"attribution_drift": alert})
    limits = config.monitoring.thresholds.model_copy(
        update={"normalized_discounted_cumulative_gain": 0.85}
    )
    monitoring_config = config.monitoring.model_copy(
        update={"retraining": rules, "thresholds": limits}
    )
    config = config.model_copy(update={"monitoring": monitoring_config})
    schedule = monitoring.monitor_schedule(
        config, dataset="penguins", target="species", task="classification", deployment="green"
    )
    path = tmp_path / "schedule.yml"
    specs.write(specs.entity_dict(schedule, tmp_path), path, "schedule")
    first, second = specs.round_trip(path, "schedule")  # the SDK's own loader and dumper
    assert first == second
    signal = first["create_monitor"]["monitoring_signals"]["feature_attribution_drift"]
    assert signal["type"] == "feature_attribution_drift"
    assert signal["metric_thresholds"] == {"normalized_discounted_cumulative_gain": 0.85}
    assert signal["alert_enabled"] is alert
    assert signal["reference_data"]["data_column_names"] == {"target_column": "species"}
    assert signal["reference_data"]["data_context"] == "training"
    assert [(p["data_context"], p["input_data"]["path"]) for p in signal["production_data"]] == [
        ("model_inputs", "azureml:amlkit-penguins-green-model_inputs:1"),
        ("model_outputs", "azureml:amlkit-penguins-green-model_outputs:1"),
    ]


def test_monitor_refuses_a_deployment_the_endpoint_does_not_have(project):
    from amlkit.azure import monitoring

    with pytest.raises(ValueError, match=r"'red' is not one of the endpoint's deployments"):
        monitoring.monitor_schedule(
            DeploymentConfig.load(), dataset="penguins", target="species",
            task="classification", deployment="red",
        )  # fmt: skip


def test_null_thresholds_allow_the_training_splits_own_nulls(project, tmp_path):
    folder = project / "data" / "processed" / "penguins" / "v1"
    folder.mkdir(parents=True)
    train = pd.DataFrame({
        "bill_length_mm": [39.1, None, 40.3, 36.7, 39.3, 38.9, 39.2, 34.1, 42.0, 37.8],
        "sex": ["male", "female", None, None, "male", "female", "male", None, "male", "female"],
        "species": ["Adelie"] * 10,
    })  # fmt: skip
    train.to_parquet(folder / "train.parquet")
    spec = _schedule(project, tmp_path, data_version="v1")
    quality = spec["create_monitor"]["monitoring_signals"]["data_quality"]["metric_thresholds"]
    allowance = DeploymentConfig.load().monitoring.thresholds.null_value_rate
    assert quality["numerical"]["null_value_rate"] == pytest.approx(0.1 + allowance)
    assert quality["categorical"]["null_value_rate"] == pytest.approx(0.3 + allowance)


def test_null_thresholds_without_training_data_use_the_retraining_rules_rate(project, tmp_path):
    spec = _schedule(project, tmp_path)
    quality = spec["create_monitor"]["monitoring_signals"]["data_quality"]["metric_thresholds"]
    tolerated = DeploymentConfig.load().monitoring.retraining.max_quality_rates.null_value_rate
    assert quality["numerical"]["null_value_rate"] == tolerated > 0
    assert quality["categorical"]["null_value_rate"] == tolerated


def test_planned_training_split_is_an_mltable_folder_that_pandas_reads(
    processed_penguins, tmp_path
):
    from amlkit.azure import data_assets

    assets = data_assets.processed_assets(mltable_dir=tmp_path / "tables")
    [train] = [a for a in assets if a.name == "penguins-train"]
    assert train.type == "mltable"
    table = yaml.safe_load(
        (tmp_path / "tables" / f"penguins-train-{train.version}" / "MLTable").read_text()
    )
    assert table["type"] == "mltable" and table["transformations"] == ["read_parquet"]
    [path] = [p["file"] for p in table["paths"]]
    copied = pd.read_parquet(tmp_path / "tables" / f"penguins-train-{train.version}" / path)
    pd.testing.assert_frame_equal(copied, processed_penguins.train)


def test_data_assets_are_registered_oldest_data_first(
    processed_penguins, processed_subset, tmp_path
):
    from datetime import datetime, timedelta

    from amlkit.azure import data_assets

    newer = processed_subset(processed_penguins, 40)
    # made a day after the original, while its name sorts before it: registered in name
    # order, Azure's @latest (the version created last) would be the older data
    made = datetime.fromisoformat(processed_penguins.manifest.created) + timedelta(days=1)
    newer.manifest.model_copy(update={"created": made.isoformat()}).write(
        newer.path / "manifest.json"
    )
    assert newer.manifest.version < processed_penguins.manifest.version
    assets = data_assets.all_assets(tmp_path / "tables")
    order = [f"{a.name}:{a.version}" for a in assets]
    assert order[-2:] == [
        f"penguins-processed:{newer.manifest.version}",
        f"penguins-train:{newer.manifest.version}",
    ]
    assert order[0].startswith("penguins-raw:")  # ingested before anything was made from it


def test_monitor_workflow_downloads_the_outputs_the_prediction_drift_reads(repo):
    workflow = yaml.safe_load((repo / ".github" / "workflows" / "monitor.yml").read_text())
    steps = workflow["jobs"]["monitor"]["steps"]
    [download] = [s["run"] for s in steps if "download-batch" in s.get("run", "")]
    assert "for collection in model_inputs model_outputs" in download
    assert "/$collection/$day/" in download


@pytest.mark.parametrize(
    ("path", "uploaded"),
    [
        ("notebooks/04_model_training_evaluation.ipynb", True),
        ("lib/amlkit/azure/step.py", True),
        ("config/model_config.json", True),
        ("pyproject.toml", True),
        (".git/HEAD", False),
        ("tests/conftest.py", False),
        ("benchmarks/README.md", False),
        ("docs/index.md", False),
        ("mlflow.db", False),
        (".amlkit/azure-plan/plan.json", False),
        ("runs/azure/run.json", False),
        ("data/processed/penguins/v1/train.parquet", False),
        ("models/trained_models/m/1/model.pkl", False),
        (".venv/bin/python", False),
    ],
)
def test_job_code_upload_leaves_out_what_jobs_do_not_need(repo, path, uploaded):
    """Checked with azure-ai-ml's own reader of the ignore file, the one its upload uses."""
    from azure.ai.ml._utils._asset_utils import get_ignore_file

    ignore = get_ignore_file(repo)
    assert ignore.path.name == ".amlignore"
    assert ignore.is_file_excluded(repo / path) is not uploaded


def _locked(repo):
    import tomllib

    data = tomllib.loads((repo / "uv.lock").read_text())
    return {p["name"]: {q["version"] for q in data["package"] if q["name"] == p["name"]}
            for p in data["package"]}  # fmt: skip


def test_every_package_of_the_planned_environments_is_the_locks_version(repo):
    from amlkit.azure import environments
    from amlkit.azure.lock import canonical
    from amlkit.config import AzureConfig

    locked = _locked(repo)
    config = AzureConfig.load()
    planned = [environments.training_environment(config, repo)] + [
        environments.serving_environment(config, backend, use, collect_data=use == "online")
        for backend in ("onnx", "sklearn", "keras")
        for use in ("online", "batch")
    ]
    for environment in planned:
        pip = environment.conda_file["dependencies"][-1]["pip"]
        for requirement in pip:
            name, _, version = requirement.partition("==")
            if requirement.startswith("azureml-core"):  # batch only; not a dependency of ours
                assert requirement.startswith("azureml-core>="), requirement
                continue
            assert version in locked[canonical(name)], (environment.name, requirement)
    training = planned[0].conda_file["dependencies"][-1]["pip"]
    names = {r.partition("==")[0] for r in training}
    # the dependencies come pinned too, not only what environment.yml lists
    assert {"pandas", "mlflow", "mlflow-skinny", "azureml-ai-monitoring", "numpy"} <= names


def test_monitor_workflow_downloads_from_the_endpoints_azure_name(repo):
    """The collector writes under the endpoint's Azure name, which is unique per workspace."""
    import subprocess

    from amlkit.azure.endpoints import azure_endpoint_names
    from amlkit.config import AzureConfig, DeploymentConfig

    workflow = yaml.safe_load((repo / ".github" / "workflows" / "monitor.yml").read_text())
    [download] = [
        s["run"]
        for s in workflow["jobs"]["monitor"]["steps"]
        if "download-batch" in s.get("run", "")
    ]
    [line] = [line.strip() for line in download.splitlines() if line.strip().startswith("online=")]
    assert '--pattern "modelDataCollector/$online/*/' in download
    shell = line.replace(".venv/bin/python", sys.executable) + '\necho "$online"'
    named = subprocess.run(["bash", "-c", shell], cwd=repo, capture_output=True, text=True)
    assert named.returncode == 0, named.stderr
    expected = azure_endpoint_names(DeploymentConfig.load(), AzureConfig.load())[0]
    assert named.stdout.strip() == expected != DeploymentConfig.load().endpoint_for()
