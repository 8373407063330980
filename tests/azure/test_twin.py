"""The local twin runs the planned specs: the training pipeline gives the same champion as
`amlkit run`, two sweep trials train their sampled settings, and the batch deployment's entry
script scores a file through init() and run(mini_batch). Planned where data exists, every raw
and processed version is a data asset that round-trips through the SDK's loader."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.slow

SMALL_SEARCH = {"search_iterations": 2, "cv_folds": 3}
AMLKIT_AZURE = [sys.executable, "-m", "amlkit.cli", "azure"]


@pytest.fixture(scope="module")
def planned(tmp_path_factory, new_project):
    """A project where `amlkit run` trained the default model (small search) and the
    champion is packaged as the endpoint's service; then planned."""
    from amlkit.azure.plan import write_plan
    from amlkit.config import DeploymentConfig
    from amlkit.pipeline import runner
    from amlkit.serving.package import package_service

    with pytest.MonkeyPatch.context() as mp:
        root = new_project(tmp_path_factory.mktemp("twin") / "root", mp)
        runner.run_pipeline(["01", "03", "04"], SMALL_SEARCH, progress=False)
        service = DeploymentConfig.load().endpoint_for()  # the default data set's: penguins
        package_service(model_name="penguins-classification", service=service)
        write_plan(root / "plan")
        yield root


def _champion(registry):
    champion = json.loads((registry / "penguins-classification" / "champion.json").read_text())
    folder = registry / "penguins-classification" / str(champion["version"])
    metadata = json.loads((folder / "model_metadata.json").read_text())
    metrics = json.loads((folder / "performance_metrics.json").read_text())
    return metadata["model_type"], metrics["test"][champion["metric"]]


def test_plan_makes_each_data_version_a_versioned_asset_that_round_trips(planned):
    from amlkit.azure import specs
    from amlkit.azure.plan import read_plan

    plan = planned / "plan"
    [raw] = [p.name for p in (planned / "data" / "raw" / "penguins").iterdir()]
    [processed] = [p.name for p in (planned / "data" / "processed" / "penguins").iterdir()]
    data = {e.name: e for e in read_plan(plan) if e.kind == "data"}
    assert set(data) == {
        f"penguins-raw:{raw}",
        f"penguins-processed:{processed}",
        f"penguins-train:{processed}",
    }
    for entry in data.values():
        spec = yaml.safe_load((plan / entry.file).read_text())
        assert not os.path.isabs(spec["path"]), spec["path"]
        assert ((plan / entry.file).parent / spec["path"]).exists(), spec["path"]
        first, second = specs.round_trip(plan / entry.file, entry.kind)
        assert first == second, entry.file
    raw_spec = yaml.safe_load((plan / data[f"penguins-raw:{raw}"].file).read_text())
    assert raw_spec["type"] == "uri_folder"
    assert raw_spec["tags"]["sha256"].startswith(raw)  # the version is the content hash
    train_spec = yaml.safe_load((plan / data[f"penguins-train:{processed}"].file).read_text())
    assert train_spec["type"] == "mltable"  # reference data as Microsoft's monitoring examples
    table = (plan / data[f"penguins-train:{processed}"].file).parent / train_spec["path"]
    assert (table / "MLTable").is_file() and (table / "train.parquet").is_file()


def _platform(own_mlflow_server, azurite) -> dict[str, str]:
    return {"tracking_uri": own_mlflow_server.uri, "storage": azurite.connection_string}


def _run(twin, **kwargs):
    """Run the twin; before agreement 1 (H1), notebook 04 stops on the job's run (fault 1)."""
    from amlkit.azure.twin import TwinError
    from amlkit.registry import tracking

    try:
        return twin.run(**kwargs)
    except TwinError as exc:
        if "Run with id" in str(exc) and not hasattr(tracking, "training_run"):
            pytest.xfail("agreement 1 (H1): notebook 04 does not resume the job's run yet")
        raise


def test_pipeline_spec_runs_here_and_trains_the_same_champion_as_amlkit_run(
    planned, tmp_path, own_mlflow_server, azurite
):
    from amlkit.azure.twin import Twin

    overrides = {f"inputs.{name}": str(value) for name, value in SMALL_SEARCH.items()}
    spec = planned / "plan" / "pipelines" / "training.yml"
    twin = Twin(spec, tmp_path / "run", overrides, **_platform(own_mlflow_server, azurite))
    summary = _run(twin)
    assert [s["step"] for s in summary["steps"]] == ["ingest", "preprocess", "train", "package"]
    assert {s["status"] for s in summary["steps"]} == {"ok"}
    outputs = tmp_path / "run" / "outputs"
    twin_type, twin_score = _champion(outputs / "trained_models")
    local_type, local_score = _champion(planned / "models" / "trained_models")
    assert twin_type == local_type
    assert twin_score == pytest.approx(local_score, abs=1e-12)
    packaged = json.loads((outputs / "packaged_model" / "serving.json").read_text())
    assert packaged["backend"] == "onnx"
    executed = tmp_path / "run" / "train" / "executed_notebook"
    assert (executed / "04_model_training_evaluation.ipynb").is_file()


def test_sweep_trial_command_trains_two_sampled_settings(
    planned, tmp_path, own_mlflow_server, azurite
):
    from amlkit.azure.twin import Twin

    spec = planned / "plan" / "sweeps" / "training.yml"
    twin = Twin(
        spec, tmp_path / "sweep", {"inputs.cv_folds": "2"}, **_platform(own_mlflow_server, azurite)
    )
    summary = _run(twin, trials=2, seed=3)
    trials = summary["trials"]
    assert [t["status"] for t in trials] == ["ok", "ok"]
    estimators = {
        "linear": "LogisticRegression",
        "random_forest": "RandomForestClassifier",
        "hist_gradient_boosting": "HistGradientBoostingClassifier",
    }
    for trial in trials:
        candidate = trial["search_space"]["candidate"]
        registry = tmp_path / "sweep" / trial["step"] / "trained_models"
        # the trial's own version is the newest: the champion the gate fetched is older
        versions = (registry / "penguins-classification").glob("[0-9]*")
        newest = max(versions, key=lambda folder: int(folder.name))
        metadata = json.loads((newest / "model_metadata.json").read_text())
        assert metadata["model_type"] == estimators[candidate]
        assert 0 < trial["validation_f1_macro"] <= 1
    assert summary["best"] in {"trial_0", "trial_1"}


def test_batch_deployment_scores_a_file_through_its_entry_points(
    planned, tmp_path, own_mlflow_server, azurite
):
    from amlkit.data.preprocess import load_processed
    from amlkit.serving.runtime import Scorer

    test_rows = load_processed("penguins").test
    source = tmp_path / "inputs"
    source.mkdir()
    test_rows.head(30).to_csv(source / "first.csv", index=False)
    test_rows.iloc[30:].to_parquet(source / "second.parquet")
    spec = planned / "plan" / "endpoints" / "batch" / "deployment.yml"
    # the model packaged here (the plan names <model>-packaged@latest until one is registered)
    service_model = planned / "models" / "deployed_models" / "amlkit-penguins" / "model"
    out = tmp_path / "batch"
    env = {
        **os.environ,
        "AMLKIT_ROOT": str(planned),
        "AMLKIT_TWIN_TRACKING_URI": own_mlflow_server.uri,
        "AMLKIT_TWIN_STORAGE": azurite.connection_string,
    }
    done = subprocess.run(
        [*AMLKIT_AZURE, "run-local", str(spec), "--data", str(source), "--out", str(out),
         "--set", f"model={service_model}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"scored {len(test_rows)} rows of 2 file(s)" in done.stdout
    run = json.loads((out / "run.json").read_text())
    # append_row: one file, every mini-batch's lines appended, no header (as Azure ML writes
    # it); each line is a JSON object naming its columns, so the file reads back whole
    predictions = pd.read_json(out / "score" / "predictions.jsonl", lines=True)
    assert run["output_uri"].endswith(f"/azureml/{run['run_id']}/score/predictions.jsonl")
    assert predictions["file"].tolist() == ["first.csv"] * 30 + ["second.parquet"] * (
        len(test_rows) - 30
    )
    assert predictions["row"].tolist() == list(range(30)) + list(range(len(test_rows) - 30))
    scorer = Scorer(planned / "models" / "deployed_models" / "amlkit-penguins" / "model")
    assert scorer.backend == "onnx"
    expected, _ = scorer.predict_frame(test_rows[scorer.feature_columns])
    assert predictions["prediction"].tolist() == expected
    assert list(predictions[scorer.feature_columns].columns) == scorer.feature_columns
    # the model mounted as the platform mounts it: AZUREML_MODEL_DIR/<model folder>/...
    model_dir = Path(run["model_dir"])
    assert [p.name for p in model_dir.iterdir()] == ["model"]
    assert (model_dir / "model" / "model_metadata.json").is_file()


@pytest.mark.parametrize(
    "spec",
    [
        {"type": "command", "outputs": {"../up": {"type": "uri_folder"}}},
        {"type": "pipeline", "jobs": {"../step": {"type": "command"}}},
        {"type": "pipeline", "jobs": {"train": {"component": {"outputs": {"a/b": {}}}}}},
        {"output_file_name": "../../predictions.csv"},
    ],
    ids=["job_output", "step", "step_output", "batch_output_file"],
)
def test_a_spec_whose_names_would_write_outside_its_out_folder_is_refused(spec):
    from amlkit.azure.twin import check_spec_names

    with pytest.raises(ValueError, match=r"^(output|step|output file) name '.*' is not allowed"):
        check_spec_names(spec)
