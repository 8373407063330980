"""Tests of image data: loading, versioning, splitting, and decoding requests for serving."""

from __future__ import annotations

import base64
import hashlib
import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from amlkit.deep import images


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    x, y = images.load_images()
    return x[:400], y[:400]


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
    shares = [np.bincount(a.split(s)[1], minlength=10) / len(a.split(s)[1]) for s in images.SPLITS]
    assert np.ptp(shares, axis=0).max() <= 0.02  # each class has the same share in every split


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


def test_data_info_hashes_the_digits_arrays_and_the_npz_bytes(tmp_path, digits):
    x, y = images.load_images()
    info = images.data_info("digits", x, y)
    assert info == images.data_info("digits", *images.load_images())
    assert info["dataset"] == "digits" and info["version"] == info["sha256"][:12]
    assert images.data_info("digits", x[:-1], y[:-1])["sha256"] != info["sha256"]

    path = tmp_path / "scans.npz"
    np.savez(path, x=digits[0][..., 0], y=digits[1])
    npz = images.data_info(path, *images.load_images(path))
    assert npz["dataset"] == "scans"
    assert npz["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_importing_images_for_serving_loads_neither_tensorflow_nor_scikit_learn():
    code = "import sys, amlkit.deep.images\n"
    code += "print('tensorflow' in sys.modules, 'sklearn' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]
