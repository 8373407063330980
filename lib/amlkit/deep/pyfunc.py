"""Save a Keras image classifier as an MLflow model, load it back, and serve predictions.

The folder holds ``MLmodel`` (pyfunc and keras flavors), the pyfunc wrapper
(:mod:`amlkit.deep.keras_image_classifier`, "models from code"), ``artifacts/model.keras``,
``artifacts/preprocessing.json`` and the environment files. Scoring scripts call
:func:`load_mlflow_model` once in ``init()`` and :func:`predict_images` in ``run()``.
"""

from __future__ import annotations

from amlkit.deep import quiet  # noqa: F401  (imports TensorFlow before Keras, quietly)

# isort: split
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import keras
import numpy as np

from amlkit.deep.images import images_to_model_input

logger = logging.getLogger(__name__)

KERAS_FILE = "artifacts/model.keras"
PREPROCESSING_FILE = "artifacts/preprocessing.json"
WRAPPER = Path(__file__).with_name("keras_image_classifier.py")  # copied into each model
PREPROCESSING_KEYS = ("scale", "height", "width", "channels", "classes")
PROGRESS_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
REQUIREMENTS = ("mlflow", "tensorflow", "keras", "numpy", "pandas")
PREDICT_CHUNK = 1024  # images per predict_on_batch call, as in the wrapper


def _check_preprocessing(preprocessing: dict[str, Any]) -> dict[str, Any]:
    missing = [k for k in PREPROCESSING_KEYS if k not in preprocessing]
    if missing:
        raise ValueError(
            f"preprocessing lacks {missing}; pass ImageSplits.preprocessing (keys "
            f"{', '.join(PREPROCESSING_KEYS)})."
        )
    return json.loads(json.dumps(preprocessing))  # plain JSON types, a copy


@contextmanager
def _no_progress_bars() -> Iterator[None]:
    """Silence MLflow's artifact progress bars (stderr noise in notebooks)."""
    old = os.environ.get(PROGRESS_ENV)
    os.environ[PROGRESS_ENV] = "false"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(PROGRESS_ENV, None)
        else:
            os.environ[PROGRESS_ENV] = old


def _requirements() -> list[str]:
    pins = []
    for name in REQUIREMENTS:
        try:
            pins.append(f"{name}=={importlib_metadata.version(name)}")
        except importlib_metadata.PackageNotFoundError:
            pins.append(name)
    return pins


def model_signature(preprocessing: dict[str, Any]) -> Any:
    """Return the MLflow signature: a float64 image tensor in, label and probabilities out."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    pre = preprocessing
    shape = (-1, pre["height"], pre["width"], pre["channels"])
    label_type = "string" if any(isinstance(c, str) for c in pre["classes"]) else "long"
    outputs: list[ColSpec | TensorSpec] = [ColSpec(label_type, "prediction")]
    outputs += [ColSpec("float", f"probability_{c}") for c in pre["classes"]]
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float64), shape)]),
        outputs=Schema(outputs),
    )


def save_mlflow_model(
    model: keras.Model, path: str | Path, *, preprocessing: dict[str, Any]
) -> None:
    """Write ``model`` as an MLflow pyfunc model into the empty or new folder ``path``.

    Raises:
        ValueError: ``path`` is not empty, or ``preprocessing`` (``ImageSplits.preprocessing``)
            lacks a key or has another shape.
    """
    import mlflow

    path = Path(path)
    if path.exists() and any(path.iterdir()):
        raise ValueError(f"{path} is not empty; save_mlflow_model writes into an empty folder.")
    pre = _check_preprocessing(preprocessing)
    expected = (pre["height"], pre["width"], pre["channels"])
    if tuple(model.input_shape[1:]) != expected:
        raise ValueError(
            f"the model takes images of shape {model.input_shape[1:]} but preprocessing says "
            f"{expected}; pass the preprocessing of the data the model was trained on."
        )
    with tempfile.TemporaryDirectory(prefix="amlkit-keras-") as tmp:
        keras_file = Path(tmp) / "model.keras"
        model.save(keras_file)
        pre_file = Path(tmp) / "preprocessing.json"
        pre_file.write_text(json.dumps(pre, indent=2) + "\n", encoding="utf-8")
        with warnings.catch_warnings(), _no_progress_bars():
            # MLflow suggests an input example; the signature is explicit instead.
            warnings.simplefilter("ignore", UserWarning)
            mlflow.pyfunc.save_model(
                path=str(path),
                mlflow_model=_keras_flavored_model(),
                python_model=str(WRAPPER),
                artifacts={"keras_model": str(keras_file), "preprocessing": str(pre_file)},
                signature=model_signature(pre),
                pip_requirements=_requirements(),
                metadata={"flavor": "keras", "preprocessing": pre},
            )
    logger.info("saved MLflow model %s (%s)", path, model.name)


def _keras_flavored_model() -> Any:
    # A keras flavor beside the pyfunc one: mlflow.keras.load_model returns the bare network.
    from mlflow.models import Model

    mlflow_model = Model()
    mlflow_model.add_flavor(
        "keras",
        data=KERAS_FILE.removesuffix(".keras"),  # mlflow.keras appends ".keras"
        keras_version=keras.__version__,
        keras_backend=keras.backend.backend(),
        save_exported_model=False,
    )
    return mlflow_model


def load_mlflow_model(path: str | Path) -> tuple[keras.Model, dict[str, Any]]:
    """Return ``(model, preprocessing)`` of a :func:`save_mlflow_model` folder, for serving.

    Faster than ``mlflow.pyfunc.load_model``; FileNotFoundError when a file is missing. It
    does not check the files' hashes: load a registered version with
    :class:`amlkit.serving.runtime.Scorer` (``scorer.predict_images``) or
    :func:`amlkit.registry.store.load_model`, which check them first.
    """
    path = Path(path)
    keras_file, pre_file = path / KERAS_FILE, path / PREPROCESSING_FILE
    for file in (keras_file, pre_file):
        if not file.is_file():
            raise FileNotFoundError(
                f"{file} not found; {path} is not a model saved by save_mlflow_model."
            )
    model = keras.saving.load_model(keras_file, compile=False)
    preprocessing = json.loads(pre_file.read_text(encoding="utf-8"))
    return model, preprocessing


def predict_proba(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """Return class probabilities (N×classes) for scaled images.

    ``predict_on_batch`` takes about 0.5 ms for one image on two cores, an eager call about
    8 ms and ``model.predict`` about 100 ms.
    """
    x = np.asarray(x, dtype=np.float32)
    out = [
        model.predict_on_batch(x[i : i + PREDICT_CHUNK]) for i in range(0, len(x), PREDICT_CHUNK)
    ]
    return np.concatenate(out) if out else np.zeros((0, model.output_shape[-1]), np.float32)


def predict_images(model: Any, images: Any, *, preprocessing: dict[str, Any]) -> dict[str, Any]:
    """Return ``{"predictions": [label, ...], "probabilities": [[p per class], ...]}``.

    ``model`` is a Keras model or a loaded pyfunc of :func:`save_mlflow_model`'s folder;
    ``images`` as :func:`~amlkit.deep.images.images_to_model_input` takes them (ValueError
    otherwise). Probabilities follow ``preprocessing["classes"]``, rounded to 6 places.
    """
    if hasattr(model, "unwrap_python_model"):  # an mlflow PyFuncModel of our wrapper
        model = model.unwrap_python_model().model
    x = images_to_model_input(images, preprocessing)
    proba = predict_proba(model, x)
    classes = preprocessing["classes"]
    return {
        "predictions": [classes[i] for i in proba.argmax(axis=1).tolist()],
        "probabilities": np.round(proba.astype(np.float64), 6).tolist(),
    }
