"""Tests of the Keras track -> register -> champion-gate steps, on a real MLflow store.

Tests that register use the ``root`` fixture: a fresh project root with its own MLflow store.
The network is the small ``digit_classifier`` of tests/conftest.py.
"""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from mlflow import MlflowClient

from amlkit import names
from amlkit.config import ModelConfig
from amlkit.deep import images
from amlkit.registry import store, tracking

keras = pytest.importorskip("keras")
pyfunc = pytest.importorskip("amlkit.deep.pyfunc")
workflow = pytest.importorskip("amlkit.deep.workflow")

MODEL_CONFIG = ModelConfig.model_validate(
    {"primary_metric": {"classification": "f1_macro", "regression": "rmse"}, "candidates": {}}
)
HYPERPARAMETERS = {"conv_filters": [8], "epochs": 3, "random_state": 7}


def _register(model, history, splits, name="digits-cnn", figures=None):
    data = {"dataset": "digits", "version": "abc123abc123", "sha256": "abc123abc123" + "0" * 52}
    metrics = {split: workflow.score_split(model, splits, split) for split in images.SPLITS}
    return workflow.track_and_register(
        model,
        history,
        splits,
        metrics,
        name=name,
        data=data,
        hyperparameters=HYPERPARAMETERS,
        figures=figures,
    )


def _untrained(shape):
    """A compiled network that was never fitted, for tests that only need its input shape."""
    model = keras.Sequential(
        [keras.Input(shape), keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


@pytest.mark.parametrize(
    ("dataset", "name"),
    [("digits", "digits-cnn"), ("digits16", "digits16-cnn"), ("my scans (v2)", "my-scans-v2-cnn")],
)
def test_default_model_name_is_dataset_cnn_and_a_valid_registry_name(dataset, name):
    assert workflow.default_model_name(dataset) == name
    assert names.is_name(name)


def test_score_split_scores_each_split_with_the_project_metrics(digit_splits, digit_classifier):
    model, _ = digit_classifier
    scores = {split: workflow.score_split(model, digit_splits, split) for split in images.SPLITS}
    assert {"accuracy", "f1_macro", "roc_auc", "log_loss"} <= set(scores["test"])
    predicted = pyfunc.predict_proba(model, digit_splits.x_test).argmax(axis=1)
    assert scores["test"]["accuracy"] == np.mean(predicted == digit_splits.y_test)
    assert scores["test"]["accuracy"] > 0.5  # 3 epochs on 240 images, 10 classes: chance 0.1
    with pytest.raises(ValueError, match="unknown split 'holdout'"):
        workflow.score_split(model, digit_splits, "holdout")


def test_track_and_register_writes_a_keras_version_and_a_full_mlflow_run(
    root, digit_splits, digit_classifier
):
    model, history = digit_classifier
    figure = plt.figure()
    version, run_id = _register(model, history, digit_splits, figures={"learning_curves": figure})
    plt.close(figure)

    meta = version.metadata
    assert (meta.name, meta.version, meta.flavor) == ("digits-cnn", 1, "keras")
    assert meta.model_file == pyfunc.KERAS_FILE
    assert meta.input_shape == [8, 8, 1] and meta.classes == list(range(10))
    assert meta.data.version == "abc123abc123" and meta.mlflow_run_id == run_id
    assert {"tensorflow", "keras"} <= set(meta.library_versions)
    for file in ("MLmodel", "performance_metrics.json", "hyperparameters.yaml"):
        assert (version.path / file).is_file()
    stored = json.loads((version.path / "performance_metrics.json").read_text())
    assert set(stored) == {"train", "validation", "test"}

    client = MlflowClient()
    run = client.get_run(run_id)
    assert run.data.params["conv_filters"] == "[8]"
    assert run.data.metrics["test_accuracy"] == stored["test"]["accuracy"]
    assert run.data.tags["data.sha256"].startswith("abc123")
    assert run.data.tags["mlflow.source.name"] == "notebooks/05_deep_learning.ipynb"
    assert "mlflow.source.git.commit" in run.data.tags
    assert run.data.tags["data.source"] == "digits"
    curve = client.get_metric_history(run_id, "epoch_val_loss")
    assert [m.step for m in curve] == [1, 2, 3]
    assert [m.value for m in curve] == pytest.approx(history["val_loss"])
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"figures", "preprocessing.json"} <= artifacts
    assert client.get_model_version("digits-cnn", "1").run_id == run_id

    network = store.load_model("digits-cnn", 1)
    assert np.array_equal(
        pyfunc.predict_proba(network, digit_splits.x_test),
        pyfunc.predict_proba(model, digit_splits.x_test),
    )


def test_track_and_register_inside_a_job_records_in_the_jobs_run(
    mlflow_server, new_project, tmp_path, monkeypatch, digit_splits, digit_classifier
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", mlflow_server.uri)
    monkeypatch.chdir(new_project(tmp_path / "job", monkeypatch))
    client = MlflowClient(mlflow_server.uri, registry_uri=mlflow_server.uri)
    experiment = client.create_experiment("deep-job")
    job = client.create_run(experiment, run_name="deep-job-run").info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", job)  # as the platform starts a job
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", experiment)
    tracking.configure_tracking()
    model, history = digit_classifier

    version, run_id = _register(model, history, digit_splits, name="digits-job-cnn")

    run = client.get_run(run_id)
    assert run_id == job == version.metadata.mlflow_run_id
    assert (run.info.experiment_id, run.info.status) == (experiment, "RUNNING")
    assert run.data.params["conv_filters"] == "[8]"
    registered = client.get_model_version("digits-job-cnn", "1")
    assert registered.source == f"runs:/{job}/registry/digits-job-cnn/v1"
    assert client.get_experiment_by_name(workflow.EXPERIMENT) is None


def test_champion_gate_promotes_the_first_and_keeps_it_against_an_equal_model(
    root, digit_splits, digit_classifier
):
    model, history = digit_classifier
    first, _ = _register(model, history, digit_splits)
    decision = workflow.champion_gate(first, digit_splits, MODEL_CONFIG)
    assert decision.promoted and decision.metric == "f1_macro"
    expected = workflow.score_split(model, digit_splits)["f1_macro"]
    assert decision.candidate_score == pytest.approx(expected)

    second, _ = _register(model, history, digit_splits)
    again = workflow.champion_gate(second, digit_splits, MODEL_CONFIG)
    assert not again.promoted and again.champion_version == 1
    assert again.champion_score == pytest.approx(again.candidate_score)
    assert store.read_champion("digits-cnn").version == 1
    alias = MlflowClient().get_model_version_by_alias("digits-cnn", "champion")
    assert int(alias.version) == 1


@pytest.mark.filterwarnings("ignore:Skipping variable loading")  # untrained: no optimizer
def test_champion_gate_refuses_a_champion_for_images_of_another_shape(root, digit_splits):
    x, y = images.load_images()
    big = images.split_images(np.kron(x[:400], np.ones((1, 2, 2, 1))), y[:400], random_state=7)
    no_curves = {"loss": [1.0], "val_loss": [1.0]}
    champion, _ = _register(_untrained((16, 16, 1)), no_curves, big)
    workflow.champion_gate(champion, big, MODEL_CONFIG)

    candidate, _ = _register(_untrained((8, 8, 1)), no_curves, digit_splits)
    with pytest.raises(ValueError, match=r"input \[16, 16, 1\].*images \[8, 8, 1\]"):
        workflow.champion_gate(candidate, digit_splits, MODEL_CONFIG)
