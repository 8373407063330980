"""Notebook 05 run as users run it: `amlkit run -s 05` on digits upsampled to 16×16 (an .npz).

The network, its callbacks and its training live in the notebook, so they are tested here,
through what the notebook writes: the registered Keras model, its hyperparameters, metrics
and MLflow run, and the champion gate's decisions. The notebook runs twice with the same
parameters, in two kernels, to check that training is repeatable.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml
from mlflow import MlflowClient
from sklearn.datasets import load_digits

from amlkit.registry import tracking

pytestmark = pytest.mark.slow

EPOCHS, PATIENCE = 20, 2


def _run_05(project, run_id: str, *params: str) -> None:
    command = ["run", "-s", "05", "--no-progress", "--run-id", run_id, *params]
    proc = subprocess.run(
        [sys.executable, "-m", "amlkit.cli", *command],
        capture_output=True,
        text=True,
        cwd=project,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"run {run_id}: 1 notebook(s) ok" in proc.stdout


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, new_project, repo):
    """Run notebook 05 twice on the same 16×16 .npz; return (project root, .npz path)."""
    with pytest.MonkeyPatch.context() as mp:
        project = new_project(tmp_path_factory.mktemp("nb05") / "project", mp)
        digits = load_digits()
        images = np.kron(digits.images, np.ones((1, 2, 2)))  # N×8×8 -> N×16×16, values 0..16
        npz = project / "digits16.npz"
        np.savez(npz, x=images.astype(np.uint8), y=digits.target)
        shutil.copytree(repo / "notebooks", project / "notebooks")
        params = ["-p", "images", "digits16.npz", "-p", "epochs", str(EPOCHS)]
        params += ["-p", "deep_learning", f"{{'patience': {PATIENCE}}}"]
        for run_id in ("first", "second"):
            _run_05(project, run_id, *params)
        yield project, npz


def _version(project, number: int) -> dict:
    folder = project / "models" / "trained_models" / "digits16-cnn" / str(number)
    return {
        "folder": folder,
        "meta": json.loads((folder / "model_metadata.json").read_text()),
        "metrics": json.loads((folder / "performance_metrics.json").read_text()),
        "hyperparameters": yaml.safe_load((folder / "hyperparameters.yaml").read_text()),
    }


def test_notebook_05_registers_a_keras_version_of_the_npz_images(two_runs):
    project, npz = two_runs
    summary = json.loads((project / "runs" / "first" / "run.json").read_text())
    assert summary["notebooks"][0]["parameters"] == {
        "images": "digits16.npz",  # relative paths are read from the project root
        "epochs": EPOCHS,
        "deep_learning": {"patience": PATIENCE},
    }
    version = _version(project, 1)
    meta = version["meta"]
    assert meta["flavor"] == "keras" and meta["model_file"] == "artifacts/model.keras"
    assert meta["input_shape"] == [16, 16, 1]
    assert meta["data"] == {
        "dataset": "digits16",
        "version": meta["data"]["sha256"][:12],
        "sha256": hashlib.sha256(npz.read_bytes()).hexdigest(),
    }
    preprocessing = json.loads((version["folder"] / "artifacts" / "preprocessing.json").read_text())
    assert (preprocessing["height"], preprocessing["width"], preprocessing["scale"]) == (16, 16, 16)
    assert 0.9 <= version["metrics"]["test"]["accuracy"] <= 1.0  # chance is 0.1


def test_notebook_05_builds_the_configured_network_with_the_parameters_on_top(two_runs):
    keras = pytest.importorskip("keras")
    project, _ = two_runs
    version = _version(project, 1)
    hyper = version["hyperparameters"]
    assert (hyper["epochs"], hyper["patience"]) == (EPOCHS, PATIENCE)  # notebook parameters
    assert (hyper["conv_filters"], hyper["batch_size"]) == ([16, 32], 32)  # model_config.json

    network = keras.saving.load_model(
        version["folder"] / "artifacts" / "model.keras", compile=False
    )
    kinds = [type(layer).__name__ for layer in network.layers]
    assert kinds == [
        *["Conv2D", "MaxPooling2D"] * 2,
        *["Flatten", "Dropout", "Dense", "Dropout", "Dense"],
    ]
    convolutions = [layer for layer in network.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [layer.filters for layer in convolutions] == [16, 32]
    assert network.input_shape == (None, 16, 16, 1) and network.output_shape == (None, 10)
    assert network.layers[-1].activation.__name__ == "softmax"
    assert network.get_layer("dense").units == 64 and network.get_layer("dropout1").rate == 0.25


def test_notebook_05_stops_early_and_keeps_the_best_epoch(two_runs):
    project, _ = two_runs
    version = _version(project, 1)
    client = MlflowClient(tracking_uri=tracking.local_tracking_uri())
    history = client.get_metric_history(version["meta"]["mlflow_run_id"], "epoch_val_loss")
    val_loss = [m.value for m in sorted(history, key=lambda m: m.step)]
    best = int(np.argmin(val_loss)) + 1
    assert len(val_loss) == version["hyperparameters"]["epochs_run"] < EPOCHS
    assert len(val_loss) == best + PATIENCE  # stopped after PATIENCE epochs without a new best
    # restore_best_weights: the registered network scores the best epoch's loss, not the last
    assert version["metrics"]["validation"]["log_loss"] == pytest.approx(val_loss[best - 1], 1e-4)


def test_notebook_05_twice_gives_the_same_model_and_the_gate_keeps_the_first(two_runs):
    project, _ = two_runs
    first, second = _version(project, 1), _version(project, 2)
    assert second["metrics"] == first["metrics"]  # exactly: the runs are deterministic
    assert second["hyperparameters"] == first["hyperparameters"]
    model_dir = first["folder"].parent
    champion = json.loads((model_dir / "champion.json").read_text())
    assert champion["version"] == 1 and champion["metric"] == "f1_macro"
    decisions = [
        json.loads(line) for line in (model_dir / "decisions.jsonl").read_text().splitlines()
    ]
    assert [d["promoted"] for d in decisions] == [True, False]
    assert decisions[1]["candidate_score"] == decisions[1]["champion_score"]
