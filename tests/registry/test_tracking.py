"""Tests for amlkit.registry.tracking against a real MLflow SQLite store in tmp_path."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import mlflow
import pytest
from mlflow import MlflowClient

from amlkit import config
from amlkit.azure import workspace
from amlkit.registry import tracking


def test_configure_tracking_uses_sqlite_store_in_state_folder(root: Path) -> None:
    uri = tracking.configure_tracking(None)

    assert uri == f"sqlite:///{root / '.amlkit' / 'mlflow.db'}"
    assert mlflow.get_tracking_uri() == uri
    assert mlflow.get_registry_uri() == uri
    assert (root / ".amlkit" / "mlartifacts").is_dir()


def test_configure_tracking_stays_local_with_blank_azure_config(root: Path) -> None:
    blank = config.AzureConfig.load()

    assert tracking.configure_tracking(blank) == tracking.local_tracking_uri()


def test_configure_tracking_rejects_half_filled_azure_config(root: Path) -> None:
    half = {"subscription_id": "sub", "resource_group": "", "workspace_name": "ws"}

    with pytest.raises(config.ConfigError, match="resource_group"):
        tracking.configure_tracking(config.AzureConfig.from_dict(half))


def test_azure_ml_client_is_built_offline_for_the_configured_workspace() -> None:
    azure = {"subscription_id": "0000", "resource_group": "rg-ml", "workspace_name": "ws-ml"}

    client = workspace.ml_client(config.AzureConfig.from_dict(azure))

    assert (client.subscription_id, client.resource_group_name) == ("0000", "rg-ml")
    assert client.workspace_name == "ws-ml"


@pytest.mark.azure
@pytest.mark.skip(reason="needs a live Azure ML workspace, credentials and network")
def test_configure_tracking_uses_the_workspace_tracking_uri() -> None:
    azure = config.AzureConfig.load()
    assert tracking.configure_tracking(azure).startswith("azureml://")


def test_start_run_tags_commit_and_data_and_keeps_artifacts_in_state_folder(root: Path) -> None:
    data = {"dataset": "penguins", "version": "v3", "sha256": "ab" * 32}

    with tracking.start_run("exp-a", "first", {"stage": "train"}, data_info=data) as run:
        tracking.log_dict({"a": 1}, "extra/info.json")

    got = MlflowClient().get_run(run.info.run_id)
    assert got.info.status == "FINISHED"
    assert got.data.tags["code_commit"] == tracking.code_commit()
    assert got.data.tags["data.version"] == "v3"
    assert got.data.tags["data.sha256"] == "ab" * 32
    assert got.data.tags["stage"] == "train"
    assert (root / ".amlkit" / "mlartifacts" / "exp-a").is_dir()
    assert list((root / ".amlkit" / "mlartifacts").rglob("info.json"))
    assert not (root / "mlruns").exists()


def test_start_run_reuses_the_experiment_and_marks_failures(root: Path) -> None:
    with tracking.start_run("exp-b") as first:
        pass
    with pytest.raises(ZeroDivisionError), tracking.start_run("exp-b") as second:
        1 / 0  # noqa: B018

    client = MlflowClient()
    assert first.info.experiment_id == second.info.experiment_id
    assert client.get_run(second.info.run_id).info.status == "FAILED"


def test_code_commit_reads_git_head_or_says_unknown(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    (repo / "a.txt").write_text("a")
    subprocess.run([*git, "add", "a.txt"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "a"], cwd=repo, check=True)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()

    assert tracking.code_commit(plain) == "unknown"
    assert tracking.code_commit(repo) == head


def test_log_metrics_flattens_nested_splits_and_skips_non_numbers(root: Path) -> None:
    metrics = {
        "test": {"accuracy": 0.75, "f1_macro": 0.5, "confusion": [[1, 2], [3, 4]]},
        "train": {"accuracy": 1, "loss": float("nan")},
    }

    with tracking.start_run("exp-m") as run:
        logged = tracking.log_metrics(metrics)

    stored = MlflowClient().get_run(run.info.run_id).data.metrics
    assert logged == {"test_accuracy": 0.75, "test_f1_macro": 0.5, "train_accuracy": 1.0}
    assert stored == logged


def test_log_params_flattens_with_dots_and_cuts_long_values(root: Path) -> None:
    params = {"model": {"C": 0.1, "penalty": "l2"}, "notes": "x" * 7000}

    with tracking.start_run("exp-p") as run:
        tracking.log_params(params)

    stored = MlflowClient().get_run(run.info.run_id).data.params
    assert stored["model.C"] == "0.1"
    assert stored["model.penalty"] == "l2"
    assert len(stored["notes"]) == tracking.MAX_PARAM_CHARS


def test_log_figure_and_log_dict_store_artifacts(root: Path) -> None:
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])

    with tracking.start_run("exp-f") as run:
        tracking.log_figure(fig, "plots/curve")
        tracking.log_dict({"classes": ["a", "b"]}, "meta/classes.json")
    plt.close(fig)

    client = MlflowClient()
    run_id = run.info.run_id
    assert [f.path for f in client.list_artifacts(run_id, "plots")] == ["plots/curve.png"]
    assert mlflow.artifacts.load_dict(f"runs:/{run_id}/meta/classes.json") == {
        "classes": ["a", "b"]
    }


@pytest.mark.parametrize(
    ("nested", "prefix", "expected"),
    [
        ({"a": {"b": 1}}, "", {"a_b": 1}),
        ({"a": {"b": {"c": 2}}, "d": 3}, "", {"a_b_c": 2, "d": 3}),
        ({"acc": 1}, "val", {"val_acc": 1}),
    ],
)
def test_flatten_joins_levels_with_prefixes(nested: dict, prefix: str, expected: dict) -> None:
    assert tracking.flatten(nested, prefix) == expected


def test_a_new_store_keeps_default_experiment_artifacts_in_state_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, repo
) -> None:
    shutil.copytree(repo / "config", tmp_path / "config")
    monkeypatch.setenv("AMLKIT_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    tracking.configure_tracking()

    with mlflow.start_run() as run:
        mlflow.log_dict({"a": 1}, "a.json")

    assert run.info.experiment_id == "0"
    assert list((tmp_path / ".amlkit" / "mlartifacts" / "0").rglob("a.json"))
    assert not (tmp_path / "mlruns").exists()
