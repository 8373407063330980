"""Tests of the Keras model as an MLflow model: saving, loading back, predicting requests.

The network is the small ``digit_classifier`` of tests/conftest.py, trained once per session.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from amlkit.deep import images

pyfunc = pytest.importorskip("amlkit.deep.pyfunc")


def _classes(model, x) -> np.ndarray:
    return pyfunc.predict_proba(model, x).argmax(axis=1)


def test_predict_images_gives_the_same_answer_for_lists_and_base64_png(
    digit_splits, digit_classifier
):
    model, _ = digit_classifier
    pre = digit_splits.preprocessing
    raw = np.rint(digit_splits.x_test[:6, :, :, 0] * pre["scale"])  # original 0..16 integers
    from_lists = pyfunc.predict_images(model, raw.tolist(), preprocessing=pre)
    pngs = [images.encode_png(image, pre["scale"]) for image in raw]
    from_png = pyfunc.predict_images(model, pngs, preprocessing=pre)
    assert from_lists["predictions"] == from_png["predictions"]
    assert np.allclose(from_lists["probabilities"], from_png["probabilities"], atol=0.02)
    assert from_lists["predictions"] == _classes(model, raw[..., None] / 16).tolist()
    assert np.allclose(np.sum(from_lists["probabilities"], axis=1), 1, atol=1e-4)
    json.dumps(from_lists)  # a web response


def test_predict_proba_keeps_the_class_axis_for_an_empty_batch(digit_classifier):
    model, _ = digit_classifier
    assert pyfunc.predict_proba(model, np.zeros((0, 8, 8, 1))).shape == (0, 10)


def test_save_mlflow_model_loads_with_pyfunc_and_predicts_the_same(
    tmp_path, digit_splits, digit_classifier
):
    import mlflow

    model, _ = digit_classifier
    pre = digit_splits.preprocessing
    target = tmp_path / "staging"
    target.mkdir()
    pyfunc.save_mlflow_model(model, target, preprocessing=pre)
    assert (target / "MLmodel").is_file() and (target / pyfunc.KERAS_FILE).is_file()
    assert (target / pyfunc.WRAPPER.name).read_text() == pyfunc.WRAPPER.read_text()
    assert json.loads((target / pyfunc.PREPROCESSING_FILE).read_text()) == pre

    raw = digit_splits.x_test.astype(np.float64) * pre["scale"]
    expected = _classes(model, digit_splits.x_test)
    loaded = mlflow.pyfunc.load_model(str(target))
    out = loaded.predict(raw)
    assert isinstance(out, pd.DataFrame)
    assert out["prediction"].tolist() == [pre["classes"][i] for i in expected]
    assert list(out.columns[1:]) == [f"probability_{c}" for c in pre["classes"]]
    assert loaded.metadata.get_input_schema().inputs[0].shape == (-1, 8, 8, 1)
    assert loaded.metadata.metadata["preprocessing"] == pre

    native = mlflow.keras.load_model(str(target))  # the keras flavor: the bare network
    assert _classes(native, digit_splits.x_test).tolist() == expected.tolist()

    keras_model, loaded_pre = pyfunc.load_mlflow_model(target)
    assert loaded_pre == pre
    served = pyfunc.predict_images(keras_model, raw[:5].tolist(), preprocessing=pre)
    via_pyfunc = pyfunc.predict_images(loaded, raw[:5].tolist(), preprocessing=pre)
    assert served == via_pyfunc
    assert served["predictions"] == out["prediction"].tolist()[:5]


def test_save_mlflow_model_refuses_a_non_empty_folder_or_mismatched_preprocessing(
    tmp_path, digit_splits, digit_classifier
):
    model, _ = digit_classifier
    (tmp_path / "old.txt").write_text("x")
    with pytest.raises(ValueError, match="is not empty"):
        pyfunc.save_mlflow_model(model, tmp_path, preprocessing=digit_splits.preprocessing)
    wrong = {**digit_splits.preprocessing, "height": 16}
    with pytest.raises(ValueError, match="takes images of shape"):
        pyfunc.save_mlflow_model(model, tmp_path / "new", preprocessing=wrong)
    with pytest.raises(ValueError, match="lacks \\['scale'\\]"):
        pyfunc.save_mlflow_model(
            model, tmp_path / "new", preprocessing={k: v for k, v in wrong.items() if k != "scale"}
        )


def test_load_mlflow_model_says_when_a_folder_is_not_a_keras_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a model saved by save_mlflow_model"):
        pyfunc.load_mlflow_model(tmp_path)
