"""The twin's stand-ins are the real services: a model registered over HTTP, blobs in Azurite."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

pytestmark = pytest.mark.slow


def test_mlflow_server_registers_a_model_from_a_run_over_http(
    mlflow_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", mlflow_server.uri)
    # an earlier test's mlflow.set_tracking_uri would win over the environment
    monkeypatch.setattr(mlflow.tracking._tracking_service.utils, "_tracking_uri", None)
    monkeypatch.setattr(mlflow.tracking._model_registry.utils, "_registry_uri", None)
    client = MlflowClient(tracking_uri=mlflow_server.uri, registry_uri=mlflow_server.uri)
    experiment = client.create_experiment("standins-registry")
    run = client.create_run(experiment)
    (tmp_path / "model.txt").write_text("weights", encoding="utf-8")
    client.log_artifacts(run.info.run_id, str(tmp_path), "model")
    client.create_registered_model("standins-model")
    version = client.create_model_version(
        "standins-model", f"runs:/{run.info.run_id}/model", run.info.run_id
    )
    fetched = mlflow.artifacts.download_artifacts(
        f"models:/standins-model/{version.version}",
        dst_path=str(tmp_path / "back"),
    )
    assert (Path(fetched) / "model.txt").read_text(encoding="utf-8") == "weights"
    # the artifacts went through the server, into its own store, not this folder
    stored = list((mlflow_server.folder / "artifacts").rglob("model.txt"))
    assert len(stored) == 1


def test_azurite_round_trips_a_parquet_file_through_abfs(azurite):
    fs = azurite.filesystem()
    fs.mkdir("standins")
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    frame.to_parquet("abfs://standins/rows.parquet", storage_options=azurite.storage_options())
    back = pd.read_parquet("az://standins/rows.parquet", storage_options=azurite.storage_options())
    pd.testing.assert_frame_equal(back, frame)
    assert fs.ls("standins") == ["standins/rows.parquet"]
