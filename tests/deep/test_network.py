"""Tests of the image data, the Keras CNN, its MLflow packaging and serving helpers.

TensorFlow is imported once for the whole file; networks train for a few epochs on a few
hundred digits, so each training takes a second or two.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from amlkit.deep import images
from amlkit.deep.images import ImageSplits

network = pytest.importorskip("amlkit.deep.network")
pyfunc = pytest.importorskip("amlkit.deep.pyfunc")

# Thread counts can only be set before TensorFlow runs its first op: do it at collection time.
network.set_determinism(7)

FAST = {
    "epochs": 3,
    "patience": 2,
    "conv_filters": [8, 16],
    "dense_units": 32,
    "learning_rate": 0.01,
}


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    x, y = images.load_images()
    return x[:400], y[:400]


@pytest.fixture(scope="module")
def splits(digits) -> ImageSplits:
    return images.split_images(*digits, random_state=7)


@pytest.fixture(scope="module")
def trained(splits):
    model, history = network.train_cnn(splits, FAST, seed=7)
    return model, history


def _write_npz(path, **arrays) -> str:
    np.savez(path, **arrays)
    return str(path)


# --- data --------------------------------------------------------------------------------------


def test_load_images_defaults_to_bundled_digits_in_original_scale():
    x, y = images.load_images()
    assert x.shape == (1797, 8, 8, 1)
    assert x.min() == 0 and x.max() == 16
    assert sorted(np.unique(y).tolist()) == list(range(10))


@pytest.mark.parametrize("shape", [(30, 6, 5), (30, 6, 5, 1), (30, 6, 5, 3)])
def test_load_images_reads_npz_with_or_without_channel_axis(tmp_path, shape):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, size=shape).astype(np.uint8)
    y = np.array(["cat", "dog", "eel"] * 10)
    path = _write_npz(tmp_path / "set.npz", x=x, y=y)
    pixels, labels = images.load_images(path)
    channels = shape[3] if len(shape) == 4 else 1
    assert pixels.shape == (30, 6, 5, channels)
    assert pixels.dtype == np.float64
    assert labels.tolist() == y.tolist()


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"y": np.arange(4) % 2}, "missing array\\(s\\) x"),
        ({"x": np.zeros((4, 3, 3))}, "missing array\\(s\\) y"),
        ({"x": np.zeros((4, 3, 3)), "y": np.array([0, 1, 0])}, "4 images but y has 3"),
        ({"x": np.zeros((4, 9)), "y": np.array([0, 1, 0, 1])}, "expected N×H×W or N×H×W×C"),
        ({"x": np.zeros((4, 3, 3)), "y": np.zeros(4, int)}, "single class"),
        ({"x": np.full((4, 3, 3), "a"), "y": np.array([0, 1, 0, 1])}, "expected numbers"),
        ({"x": np.zeros((4, 3, 3)), "y": np.array([0, 1, None, 1], object)}, "object arrays"),
        ({"x": np.full((4, 3, 3), np.nan), "y": np.array([0, 1, 0, 1])}, "NaN or infinite"),
    ],
)
def test_load_images_rejects_malformed_npz(tmp_path, arrays, message):
    path = _write_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=message):
        images.load_images(path)


def test_load_images_reports_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.npz' not found"):
        images.load_images(tmp_path / "nope.npz")


def test_split_images_is_stratified_seeded_and_scaled_by_train_max(digits):
    a = images.split_images(*digits, random_state=3)
    b = images.split_images(*digits, random_state=3)
    assert np.array_equal(a.x_test, b.x_test) and np.array_equal(a.y_train, b.y_train)
    assert (len(a.x_train), len(a.x_val), len(a.x_test)) == (240, 80, 80)
    assert a.x_train.dtype == np.float32 and a.x_train.max() == 1.0
    assert a.preprocessing == {
        "scale": 16.0,
        "height": 8,
        "width": 8,
        "channels": 1,
        "classes": list(range(10)),
        "source": "digits",
    }
    balance = images.class_balance(a)
    assert list(balance.columns) == ["train", "validation", "test"]
    assert (balance.max(axis=1) - balance.min(axis=1)).max() <= 0.02
    summary = images.split_summary(a)
    assert summary["images"].tolist() == [240, 80, 80]
    assert summary.loc["train", "shape"] == "8×8×1"


def test_split_images_rejects_a_class_too_small_for_three_splits():
    x = np.arange(22 * 4, dtype=float).reshape(22, 2, 2)
    y = np.array([0] * 10 + [1] * 10 + [2] * 2)
    with pytest.raises(ValueError, match=r"classes \[2\] have fewer than 3 images"):
        images.split_images(x[..., None], y)


PRE = {"scale": 16.0, "height": 8, "width": 8, "channels": 1, "classes": list(range(10))}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "empty"),
        (np.zeros((0, 8, 8)), "empty"),
        ("abc", "must be a list"),
        ([[[1] * 8] * 8, [[1] * 8] * 7], "nested lists of equal lengths"),
        ([[["a"] * 8] * 8], "could not read them"),
        (np.zeros((2, 7, 8)).tolist(), r"shape \(2, 7, 8\); expected N×8×8×1 or N×8×8"),
        (np.zeros((8, 8)).tolist(), "a single image\\? wrap it in a list"),
        ([[[float("nan")] * 8] * 8], "NaN or infinite"),
        (["not base64!"], "image 0 is not valid base64"),
        ([base64.b64encode(b"plain text").decode()], "image 0 .* not a readable image"),
        (["aGVsbG8=", [[0] * 8] * 8], "mixes base64 strings"),
    ],
)
def test_images_to_model_input_explains_bad_requests(body, message):
    with pytest.raises(ValueError, match=message):
        images.images_to_model_input(body, PRE)


def test_base64_images_are_converted_to_grayscale_and_resized():
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[:, 8:] = 255  # right half white
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    text = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    x = images.images_to_model_input([text], PRE)
    assert x.shape == (1, 8, 8, 1) and x.dtype == np.float32
    assert x[0, :, :4].mean() < 0.1 and x[0, :, 4:].mean() > 0.9  # left dark, right white


def test_encode_png_round_trips_through_model_input(digits):
    x, _ = digits
    text = images.encode_png(x[0], 16.0)
    decoded = images.images_to_model_input([text], PRE)
    assert np.abs(decoded[0] - x[0] / 16).max() <= 0.5 / 255 + 1e-6


# --- network -----------------------------------------------------------------------------------


def test_cnn_params_merge_config_and_reject_unknown_keys():
    params = network.cnn_params({"epochs": 5, "conv_filters": [4]})
    assert params["epochs"] == 5 and params["conv_filters"] == [4] and params["batch_size"] == 32
    with pytest.raises(ValueError, match="unknown deep-learning parameter"):
        network.cnn_params({"epoch": 5})
    with pytest.raises(ValueError, match="dropout must be in"):
        network.cnn_params({"dropout": 1.5})


@pytest.mark.parametrize(("shape", "pools"), [((8, 8, 1), 3), ((16, 16, 3), 3), ((2, 2, 1), 1)])
def test_build_cnn_stacks_conv_pool_dropout_dense_softmax(shape, pools):
    model = network.build_cnn(shape, 4, conv_filters=[4, 8, 8], dense_units=16)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("Conv2D") == 3 and kinds.count("MaxPooling2D") == pools
    assert kinds.count("Dropout") == 2
    assert model.output_shape == (None, 4)
    assert model.layers[-1].activation.__name__ == "softmax"


def test_training_twice_with_the_same_seed_gives_identical_weights(splits, trained):
    model, _ = trained
    again, _ = network.train_cnn(splits, FAST, seed=7)
    for a, b in zip(model.get_weights(), again.get_weights(), strict=True):
        assert np.array_equal(a, b)
    assert np.array_equal(
        network.predict_proba(model, splits.x_test), network.predict_proba(again, splits.x_test)
    )


def test_set_determinism_sets_hash_seed_and_op_determinism(monkeypatch):
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config

    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    network.set_determinism(7)
    assert os.environ["PYTHONHASHSEED"] == "7"
    assert tf_config.is_op_determinism_enabled()
    assert tf.config.threading.get_intra_op_parallelism_threads() == 1


def test_fit_records_curves_and_learning_rate_and_learns(splits, trained):
    model, history = trained
    logs = history.history
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"} <= set(logs)
    assert len(logs["loss"]) == FAST["epochs"]
    assert logs["loss"][-1] < logs["loss"][0]
    scores = network.evaluate_cnn(model, splits)
    assert set(scores) == {"train", "validation", "test"}
    assert scores["test"]["accuracy"] > 0.5  # 3 epochs on 240 images, 10 classes: chance 0.1


def test_evaluation_tables_and_figures(splits, trained):
    model, history = trained
    y_pred = network.predict_classes(model, splits.x_test)
    table = network.classification_table(splits.y_test, y_pred, splits.classes)
    assert table.index.tolist() == splits.classes
    assert list(table.columns) == ["precision", "recall", "f1", "support"]
    assert table["support"].sum() == len(splits.y_test)
    figures = [
        network.plot_confusion_matrix(splits.y_test, y_pred, splits.classes),
        network.plot_learning_curves(history),
        network.plot_misclassified(splits.x_test, splits.y_test, y_pred, splits.classes),
    ]
    assert [len(f.axes) for f in figures[:2]] == [1, 2]
    wrong = int((y_pred != splits.y_test).sum())
    shown = [ax for ax in figures[2].axes if ax.images]
    assert len(shown) == min(wrong, 16)
    none = network.plot_misclassified(splits.x_test, splits.y_test, splits.y_test, splits.classes)
    assert none.axes[0].texts[0].get_text() == "no misclassified images"
    for fig in [*figures, none]:
        plt.close(fig)


def test_predict_images_gives_the_same_answer_for_lists_and_base64_png(splits, trained):
    model, _ = trained
    pre = splits.preprocessing
    raw = np.rint(splits.x_test[:6, :, :, 0] * pre["scale"])  # original 0..16 integers
    from_lists = pyfunc.predict_images(model, raw.tolist(), preprocessing=pre)
    pngs = [images.encode_png(image, pre["scale"]) for image in raw]
    from_png = pyfunc.predict_images(model, pngs, preprocessing=pre)
    assert from_lists["predictions"] == from_png["predictions"]
    assert np.allclose(from_lists["probabilities"], from_png["probabilities"], atol=0.02)
    assert from_lists["predictions"] == network.predict_classes(model, raw[..., None] / 16).tolist()
    assert np.allclose(np.sum(from_lists["probabilities"], axis=1), 1, atol=1e-4)
    json.dumps(from_lists)  # a web response


def test_save_mlflow_model_loads_with_pyfunc_and_predicts_the_same(tmp_path, splits, trained):
    import mlflow

    model, _ = trained
    pre = splits.preprocessing
    target = tmp_path / "staging"
    target.mkdir()
    pyfunc.save_mlflow_model(model, target, preprocessing=pre)
    assert (target / "MLmodel").is_file() and (target / pyfunc.KERAS_FILE).is_file()
    assert json.loads((target / pyfunc.PREPROCESSING_FILE).read_text()) == pre

    raw = splits.x_test.astype(np.float64) * pre["scale"]
    expected = network.predict_classes(model, splits.x_test)
    loaded = mlflow.pyfunc.load_model(str(target))
    out = loaded.predict(raw)
    assert isinstance(out, pd.DataFrame)
    assert out["prediction"].tolist() == [pre["classes"][i] for i in expected]
    assert list(out.columns[1:]) == [f"probability_{c}" for c in pre["classes"]]
    assert loaded.metadata.get_input_schema().inputs[0].shape == (-1, 8, 8, 1)
    assert loaded.metadata.metadata["preprocessing"] == pre

    native = mlflow.keras.load_model(str(target))  # the keras flavor: the bare network
    assert network.predict_classes(native, splits.x_test).tolist() == expected.tolist()

    keras_model, loaded_pre = pyfunc.load_mlflow_model(target)
    assert loaded_pre == pre
    served = pyfunc.predict_images(keras_model, raw[:5].tolist(), preprocessing=pre)
    via_pyfunc = pyfunc.predict_images(loaded, raw[:5].tolist(), preprocessing=pre)
    assert served == via_pyfunc
    assert served["predictions"] == out["prediction"].tolist()[:5]


def test_save_mlflow_model_refuses_a_non_empty_folder_or_mismatched_preprocessing(
    tmp_path, splits, trained
):
    model, _ = trained
    (tmp_path / "old.txt").write_text("x")
    with pytest.raises(ValueError, match="is not empty"):
        pyfunc.save_mlflow_model(model, tmp_path, preprocessing=splits.preprocessing)
    wrong = {**splits.preprocessing, "height": 16}
    with pytest.raises(ValueError, match="takes images of shape"):
        pyfunc.save_mlflow_model(model, tmp_path / "new", preprocessing=wrong)
    with pytest.raises(ValueError, match="lacks \\['scale'\\]"):
        pyfunc.save_mlflow_model(
            model, tmp_path / "new", preprocessing={k: v for k, v in wrong.items() if k != "scale"}
        )


def test_training_on_an_upsampled_npz_of_another_size(tmp_path, digits):
    x, y = digits
    big = np.kron(x[..., 0], np.ones((1, 2, 2)))  # 8×8 -> 16×16, N×H×W
    path = _write_npz(tmp_path / "digits16.npz", x=big, y=y)
    data = images.prepare_images(path, random_state=1)
    assert data.x_train.shape[1:] == (16, 16, 1)
    assert data.preprocessing["source"] == "digits16.npz"
    model, _ = network.train_cnn(data, {**FAST, "epochs": 2}, seed=1)
    assert model.input_shape == (None, 16, 16, 1)
    result = pyfunc.predict_images(model, big[:3].tolist(), preprocessing=data.preprocessing)
    assert len(result["predictions"]) == 3 and len(result["probabilities"][0]) == 10


CROSS_PROCESS = """
import hashlib
from amlkit.deep import network
from amlkit.deep import images
network.set_determinism(11)
x, y = images.load_images()
splits = images.split_images(x[:300], y[:300], random_state=11)
model, _ = network.train_cnn(splits, {"epochs": 2, "conv_filters": [8], "dense_units": 16}, seed=11)
print(hashlib.sha256(network.predict_proba(model, splits.x_test).tobytes()).hexdigest())
"""


@pytest.mark.slow
def test_training_in_two_processes_gives_identical_predictions():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    digests = []
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-c", CROSS_PROCESS],
            capture_output=True,
            text=True,
            timeout=180,
            env=env,
            check=True,
        )
        digests.append(done.stdout.strip().splitlines()[-1])
    assert digests[0] == digests[1] and len(digests[0]) == 64


def test_saved_model_registers_and_loads_back_through_the_registry(project, splits, trained):
    from amlkit.registry import store

    model, _ = trained
    metadata = {
        "model_type": model.name,
        "task": "classification",
        "target": "digit",
        "feature_columns": ["image"],
        "feature_types": {"image": "image"},
        "classes": splits.classes,
        "data": {"dataset": "digits", "version": "bundled", "sha256": ""},
    }
    version = store.write_version(
        "digits_cnn",
        lambda folder: pyfunc.save_mlflow_model(model, folder, preprocessing=splits.preprocessing),
        flavor="keras",
        model_file=pyfunc.KERAS_FILE,
        metadata=metadata,
        metrics=network.evaluate_cnn(model, splits),
        hyperparameters=network.cnn_params(FAST),
    )
    assert (version.path / pyfunc.KERAS_FILE).is_file()
    loaded = store.load_model("digits_cnn", version.version)
    assert np.array_equal(
        network.predict_classes(loaded, splits.x_test),
        network.predict_classes(model, splits.x_test),
    )
