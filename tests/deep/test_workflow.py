"""Tests of the Keras track -> register -> champion-gate steps, on a real MLflow store.

Tests that register use the ``root`` fixture: a fresh project root with its own MLflow store.

Networks train for three epochs on 400 digits (a second or two); TensorFlow is imported once.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from mlflow import MlflowClient

from amlkit.config import ModelConfig
from amlkit.deep import images
from amlkit.registry import store

deep = pytest.importorskip("amlkit.deep.network")
deep_serving = pytest.importorskip("amlkit.deep.pyfunc")
deep_workflow = pytest.importorskip("amlkit.deep.workflow")

deep.set_determinism(7)  # thread counts are fixed before TensorFlow's first op

FAST = {"epochs": 3, "patience": 2, "conv_filters": [8, 16], "dense_units": 32}
MODEL_CONFIG = ModelConfig.model_validate(
    {"primary_metric": {"classification": "f1_macro", "regression": "rmse"}, "candidates": {}}
)


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    x, y = images.load_images()
    return x[:400], y[:400]


@pytest.fixture(scope="module")
def splits(digits):
    return images.split_images(*digits, random_state=7)


@pytest.fixture(scope="module")
def trained(splits):
    return deep.train_cnn(splits, FAST, seed=7)


def _register(model, history, splits, name="digits-cnn", figures=None):
    data = {"dataset": "digits", "version": "abc123abc123", "sha256": "abc123abc123" + "0" * 52}
    return deep_workflow.track_and_register(
        model,
        history,
        splits,
        deep.evaluate_cnn(model, splits),
        name=name,
        data=data,
        hyperparameters=deep.cnn_params(FAST) | {"random_state": 7},
        figures=figures,
    )


# --- data and parameters -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("images", "expected"),
    [("digits", "digits"), ("", "digits"), ("bundled:digits", "digits")],
)
def test_resolve_source_names_the_bundled_digits(images, expected):
    assert deep_workflow.resolve_source(images) == expected


def test_resolve_source_reads_relative_paths_from_the_project_root(project, tmp_path):
    assert deep_workflow.resolve_source("data/external/a.npz") == project / "data/external/a.npz"
    elsewhere = tmp_path / "elsewhere" / "b.npz"
    assert deep_workflow.resolve_source(str(elsewhere)) == elsewhere


@pytest.mark.parametrize(
    ("dataset", "name"),
    [("digits", "digits-cnn"), ("digits16", "digits16-cnn"), ("my scans (v2)", "my-scans-v2-cnn")],
)
def test_default_model_name_is_dataset_cnn_and_a_valid_registry_name(dataset, name):
    assert deep_workflow.default_model_name(dataset) == name
    assert store.NAME_PATTERN.match(name)


def test_data_info_hashes_the_digits_arrays_and_the_npz_bytes(tmp_path, digits):
    x, y = images.load_images()
    info = deep_workflow.data_info("digits", x, y)
    assert info == deep_workflow.data_info("digits", *images.load_images())
    assert info["dataset"] == "digits" and info["version"] == info["sha256"][:12]
    assert deep_workflow.data_info("digits", x[:-1], y[:-1])["sha256"] != info["sha256"]

    path = tmp_path / "scans.npz"
    np.savez(path, x=digits[0][..., 0], y=digits[1])
    npz = deep_workflow.data_info(path, *images.load_images(path))
    assert npz["dataset"] == "scans"
    assert npz["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_cnn_config_layers_config_then_dict_then_set_scalars():
    config = ModelConfig.model_validate(
        {"candidates": {}, "deep_learning": {"epochs": 40, "dense_units": 64, "dropout": 0.25}}
    )
    params = deep_workflow.cnn_config(
        config, {"dropout": 0.0, "dense_units": 16}, epochs=5, batch_size=0, learning_rate=0.0
    )
    assert params["epochs"] == 5  # a set scalar wins
    assert params["dense_units"] == 16 and params["dropout"] == 0.0  # the dict overrides config
    assert params["batch_size"] == deep.DEFAULT_PARAMS["batch_size"]  # 0 keeps the default
    assert params["learning_rate"] == deep.DEFAULT_PARAMS["learning_rate"]
    with pytest.raises(ValueError, match="unknown deep-learning parameter"):
        deep_workflow.cnn_config(config, {"layers": 3})


# --- tracking, registry and the champion gate --------------------------------------------------


def test_track_and_register_writes_a_keras_version_and_a_full_mlflow_run(root, splits, trained):
    model, history = trained
    figure = deep.plot_learning_curves(history)
    version, run_id = _register(model, history, splits, figures={"learning_curves": figure})
    plt.close(figure)

    meta = version.metadata
    assert (meta["name"], meta["version"], meta["flavor"]) == ("digits-cnn", 1, "keras")
    assert meta["model_file"] == deep_serving.KERAS_FILE
    assert meta["input_shape"] == [8, 8, 1] and meta["classes"] == list(range(10))
    assert meta["data"]["version"] == "abc123abc123" and meta["mlflow_run_id"] == run_id
    assert {"tensorflow", "keras"} <= set(meta["library_versions"])
    for file in ("MLmodel", "performance_metrics.json", "hyperparameters.yaml"):
        assert (version.path / file).is_file()
    stored = json.loads((version.path / "performance_metrics.json").read_text())
    assert set(stored) == {"train", "validation", "test"}

    client = MlflowClient()
    run = client.get_run(run_id)
    assert run.data.params["conv_filters"] == "[8, 16]"
    assert run.data.metrics["test_accuracy"] == stored["test"]["accuracy"]
    assert run.data.tags["data.sha256"].startswith("abc123") and "code_commit" in run.data.tags
    assert run.data.tags["data.source"] == "digits"
    curve = client.get_metric_history(run_id, "epoch_val_loss")
    assert [m.step for m in curve] == [1, 2, 3]
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"figures", "preprocessing.json"} <= artifacts
    assert client.get_model_version("digits-cnn", "1").run_id == run_id

    network = store.load_model("digits-cnn", 1)
    assert np.array_equal(
        deep.predict_classes(network, splits.x_test), deep.predict_classes(model, splits.x_test)
    )


def test_champion_gate_promotes_the_first_and_keeps_it_against_an_equal_model(
    root, splits, trained
):
    model, history = trained
    first, _ = _register(model, history, splits)
    decision = deep_workflow.champion_gate(first, splits, MODEL_CONFIG)
    assert decision.promoted and decision.metric == "f1_macro"
    expected = deep_workflow.split_scores(model, splits)["f1_macro"]
    assert decision.candidate_score == pytest.approx(expected)

    second, _ = _register(model, history, splits)
    again = deep_workflow.champion_gate(second, splits, MODEL_CONFIG)
    assert not again.promoted and again.champion_version == 1
    assert again.champion_score == pytest.approx(again.candidate_score)
    assert store.read_champion("digits-cnn")["version"] == 1
    alias = MlflowClient().get_model_version_by_alias("digits-cnn", "champion")
    assert int(alias.version) == 1


@pytest.mark.filterwarnings("ignore:Skipping variable loading")  # untrained: no optimizer
def test_champion_gate_refuses_a_champion_for_images_of_another_shape(root, digits, splits):
    x, y = digits
    big = images.split_images(np.kron(x, np.ones((1, 2, 2, 1))), y, random_state=7)
    untrained = deep.build_cnn((16, 16, 1), 10, conv_filters=[4], dense_units=8)
    champion, _ = _register(untrained, {"loss": [1.0], "val_loss": [1.0]}, big)
    deep_workflow.champion_gate(champion, big, MODEL_CONFIG)

    small = deep.build_cnn((8, 8, 1), 10, conv_filters=[4], dense_units=8)
    candidate, _ = _register(small, {"loss": [1.0], "val_loss": [1.0]}, splits)
    with pytest.raises(ValueError, match=r"input \[16, 16, 1\].*images \[8, 8, 1\]"):
        deep_workflow.champion_gate(candidate, splits, MODEL_CONFIG)


def test_load_pyfunc_verifies_files_then_predicts_labels(root, splits, trained):
    model, history = trained
    version, _ = _register(model, history, splits)
    requests = deep_workflow.serving_requests(splits, n=4)
    batch = np.asarray(requests["lists"], dtype=np.float64)[..., None]
    out = deep_workflow.load_pyfunc(version).predict(batch)
    assert out["prediction"].tolist() == deep.predict_classes(model, splits.x_test[:4]).tolist()

    (version.path / "artifacts" / "preprocessing.json").write_text("{}")
    with pytest.raises(store.ModelIntegrityError, match=r"preprocessing\.json"):
        deep_workflow.load_pyfunc(version)


def test_serving_requests_as_lists_and_png_give_the_same_predictions(splits, trained):
    model, _ = trained
    requests = deep_workflow.serving_requests(splits, n=5)
    assert np.asarray(requests["lists"]).shape == (5, 8, 8)
    assert len(requests["base64_png"]) == 5
    pre = splits.preprocessing
    answers = [deep_serving.predict_images(model, requests[k], preprocessing=pre) for k in requests]
    assert answers[0]["predictions"] == answers[1]["predictions"]
    expected = deep.predict_classes(model, splits.x_test[:5]).tolist()
    assert answers[0]["predictions"] == [splits.classes[i] for i in expected]


def test_serving_requests_skip_png_for_images_with_two_channels():
    x = np.random.default_rng(0).random((30, 4, 4, 2))
    two = images.split_images(x, np.arange(30) % 3, random_state=0)
    requests = deep_workflow.serving_requests(two, n=2)
    assert np.asarray(requests["lists"]).shape == (2, 4, 4, 2) and requests["base64_png"] == []


# --- notebook set-up and quiet TensorFlow ------------------------------------------------------


def test_notebook_setup_with_tensorflow_turns_on_determinism(project, monkeypatch):
    from tensorflow.python.framework import config as tf_config

    from amlkit import notebook

    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    done = notebook.setup(seed=5, threads=1, tensorflow=True)
    assert done == {"seed": 5, "threads": 1, "tensorflow": True, "device": deep.compute_device()}
    assert os.environ["PYTHONHASHSEED"] == "5"
    assert tf_config.is_op_determinism_enabled()


@pytest.mark.slow
def test_importing_the_deep_modules_and_training_writes_nothing_to_stderr(project):
    code = (
        "from amlkit.deep import images, network as deep, pyfunc\n"
        "deep.set_determinism(3)\n"
        "x, y = images.load_images()\n"
        "s = images.split_images(x[:200], y[:200], random_state=3)\n"
        "deep.train_cnn(s, {'epochs': 1, 'conv_filters': [4], 'dense_units': 8}, seed=3)\n"
        "from amlkit.deep import quiet\n"
        "print(len(quiet.startup_messages) > 0)\n"
        "print(deep.compute_device())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr == ""
    captured, device = done.stdout.split()[-2:]
    assert captured == "True"  # TensorFlow did talk; it was kept off the screen
    assert device == "CPU" or device.startswith("GPU")
