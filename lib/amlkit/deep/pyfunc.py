"""Save a Keras image classifier as an MLflow model, load it back, and serve predictions.

An MLflow model folder written by :func:`save_mlflow_model` holds::

    MLmodel                         pyfunc and keras flavors, signature, metadata
    keras_image_classifier.py       the pyfunc wrapper (MLflow "models from code")
    artifacts/model.keras           the network, Keras format
    artifacts/preprocessing.json    scale, height, width, channels, classes
    conda.yaml, python_env.yaml, requirements.txt

The wrapper (:mod:`amlkit.deep.keras_image_classifier`) does not import amlkit, so the folder
loads with ``mlflow.pyfunc.load_model`` wherever MLflow, Keras and TensorFlow are installed (an
Azure ML environment included); ``mlflow.keras.load_model`` on the same folder returns the
bare network. The pyfunc ``predict`` takes images in their original scale as the signature says,
a float64 array N×H×W×C (MLflow enforces dtype and rank before ``predict`` runs: convert
nested lists with ``np.asarray(images, dtype=np.float64)``), and returns a DataFrame:
``prediction`` (the class label) and one ``probability_<class>`` column per class.

Scoring scripts call :func:`load_mlflow_model` once in ``init()`` and :func:`predict_images`
in ``run()``; it also accepts base64 PNG images.
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
    """Return the MLflow signature: a float64 image tensor in, label and probabilities out.

    Args:
        preprocessing: the record saved with the model (shape and classes).

    Returns:
        An :class:`mlflow.models.ModelSignature`.
    """
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    pre = preprocessing
    shape = (-1, pre["height"], pre["width"], pre["channels"])
    label_type = "string" if any(isinstance(c, str) for c in pre["classes"]) else "long"
    outputs = [ColSpec(label_type, "prediction")]
    outputs += [ColSpec("float", f"probability_{c}") for c in pre["classes"]]
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float64), shape)]),
        outputs=Schema(outputs),
    )


def save_mlflow_model(
    model: keras.Model, path: str | Path, *, preprocessing: dict[str, Any]
) -> Path:
    """Write ``model`` as an MLflow pyfunc model into the empty folder ``path``.

    Args:
        model: the trained network.
        path: an empty (or not yet existing) folder, for example the registry's staging folder.
        preprocessing: :attr:`amlkit.deep.images.ImageSplits.preprocessing` (scale, shape,
            classes); written to ``artifacts/preprocessing.json`` and to the MLmodel metadata.

    Returns:
        ``path``. The Keras file is ``path / KERAS_FILE``.

    Raises:
        ValueError: ``path`` is not empty, or ``preprocessing`` lacks a key.
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
    return path


def _keras_flavored_model() -> Any:
    """An MLflow Model carrying a ``keras`` flavor that points at :data:`KERAS_FILE`.

    With it ``mlflow.keras.load_model(path)`` returns the bare network, beside the pyfunc
    flavor that ``mlflow.pyfunc.load_model`` uses.
    """
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
    """Load the network and its preprocessing from a folder written by :func:`save_mlflow_model`.

    Faster than ``mlflow.pyfunc.load_model`` and what :func:`predict_images` needs.

    Args:
        path: the MLflow model folder (for example ``$AZUREML_MODEL_DIR/<name>``).

    Returns:
        ``(model, preprocessing)``.

    Raises:
        FileNotFoundError: the folder lacks the Keras file or the preprocessing record.
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

    Uses ``predict_on_batch`` in chunks of :data:`PREDICT_CHUNK`: a compiled function, about
    0.5 ms for one image on two cores, against about 8 ms for an eager call and 100 ms for
    ``model.predict``.
    """
    x = np.asarray(x, dtype=np.float32)
    out = [
        model.predict_on_batch(x[i : i + PREDICT_CHUNK]) for i in range(0, len(x), PREDICT_CHUNK)
    ]
    return np.concatenate(out) if out else np.zeros((0, model.output_shape[-1]), np.float32)


def predict_images(model: Any, images: Any, *, preprocessing: dict[str, Any]) -> dict[str, Any]:
    """Predict the class of each image of a request.

    Args:
        model: a Keras model, or the result of ``mlflow.pyfunc.load_model`` on a folder
            written by :func:`save_mlflow_model`.
        images: a batch: nested lists or an array of numbers in the original scale (N×H×W
            for one channel, or N×H×W×C), or a list of base64 PNG/JPEG strings (converted to
            the model's channels and resized to its H×W; 8-bit pixels, 255 is white).
        preprocessing: the record saved with the model.

    Returns:
        ``{"predictions": [label, ...], "probabilities": [[p per class], ...]}`` with
        probabilities in the order of ``preprocessing["classes"]``, rounded to 6 places.

    Raises:
        ValueError: an empty batch, wrong shape, non-numeric values or bad base64, with what
            was expected.
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
