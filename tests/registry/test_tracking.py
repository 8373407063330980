"""Tests for amlkit.registry.tracking against a real MLflow SQLite store in tmp_path."""

from __future__ import annotations

import subprocess
from pathlib import Path

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


def test_set_experiment_keeps_artifacts_in_the_state_folder(root: Path) -> None:
    experiment_id = tracking.set_experiment("exp-a")

    with mlflow.start_run() as run:
        mlflow.log_dict({"a": 1}, "extra/info.json")

    assert run.info.experiment_id == experiment_id == tracking.set_experiment("exp-a")
    assert list((root / ".amlkit" / "mlartifacts" / "exp-a").rglob("info.json"))
    assert not (root / "mlruns").exists()


def test_source_tags_name_the_notebook_and_the_commit(root: Path) -> None:
    tracking.set_experiment("exp-s")

    with mlflow.start_run(tags=tracking.source_tags("notebooks/04_x.ipynb")) as run:
        pass

    tags = MlflowClient().get_run(run.info.run_id).data.tags
    assert tags["mlflow.source.name"] == "notebooks/04_x.ipynb"
    assert tags["mlflow.source.type"] == "NOTEBOOK"
    assert tags["mlflow.source.git.commit"] == tracking.code_commit()


def test_ensure_tracking_keeps_a_tracking_uri_chosen_before(root: Path, tmp_path: Path) -> None:
    chosen = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    mlflow.set_tracking_uri(chosen)

    assert tracking.ensure_tracking() == chosen


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
