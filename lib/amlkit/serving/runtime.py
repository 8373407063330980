"""Load a packaged model once and score validated rows (ONNX fast path or the pipeline).

Used by the scoring script and by batch scoring, so both answer the same way.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from amlkit import integrity, io, kinds

logger = logging.getLogger(__name__)

SERVING_FILE = "serving.json"
METADATA_FILE = "model_metadata.json"
SERVICE_METADATA_FILE = "service_metadata.json"
# classifiers whose own predict is classes_[argmax(predict_proba)] (scikit-learn's code)
ARGMAX_LABELS = frozenset(
    {
        "RandomForestClassifier",
        "ExtraTreesClassifier",
        "DecisionTreeClassifier",
        "ExtraTreeClassifier",
    }
)


def find_model_dir(root: str | Path) -> Path:
    """Return the folder holding ``model_metadata.json`` at ``root`` or one level below (Azure).

    A registered packaged service mounted by Azure ML (``$AZUREML_MODEL_DIR/service/``) holds
    its model in ``model/``: that folder is found too.
    """
    root = Path(root)
    if (root / METADATA_FILE).is_file():
        return root
    found = sorted(p.parent for p in root.glob(f"*/{METADATA_FILE}"))
    found = found or sorted(p.parent for p in root.glob(f"*/model/{METADATA_FILE}"))
    if len(found) == 1:
        return found[0]
    raise FileNotFoundError(
        f"no {METADATA_FILE} in {root} or its subfolders ({len(found)} found); point "
        "AZUREML_MODEL_DIR at the packaged model folder (deployed_models/<service>/model)."
    )


def verified_model_dir(service_dir: str | Path, model_root: str | Path | None = None) -> Path:
    """Return a service's model folder after checking every file against ``model_files``.

    ``service_metadata.json`` records the sha256 of each model file at packaging; a file
    that changed, went missing or was added raises :class:`~amlkit.integrity.ModelIntegrityError`
    (a ValueError) naming it, before anything is unpickled. ``model_root``: where the model
    lies (Azure mounts it apart), default ``<service_dir>/model``.
    """
    model_dir = find_model_dir(model_root or Path(service_dir) / "model")
    _check(model_dir, Path(service_dir) / SERVICE_METADATA_FILE)
    return model_dir


def verified_version_dir(model_dir: str | Path) -> Path:
    """Return a model folder after checking its files against its own ``model_metadata.json``.

    For a registered version folder, or a packaged model without its service folder (an
    Azure ML batch deployment's model): ``files`` of the metadata records each file at
    registration; packaging may add ``serving.json`` and the ONNX file whose sha256 it
    records. Raises :class:`~amlkit.integrity.ModelIntegrityError` like
    :func:`verified_model_dir`.
    """
    model_dir = find_model_dir(model_dir)
    _check(model_dir)
    return model_dir


def _check(model_dir: Path, service_record: Path | None = None) -> dict[str, str]:
    """Check ``model_dir`` against a service's record, else its own metadata; return hashes."""
    if service_record is not None:
        recorded = io.read_json(service_record)["model_files"]
        hashes = integrity.check_files(
            model_dir,
            recorded,
            record=service_record,
            fix=integrity.SERVICE_FIX,
            skip_hidden=True,
        )
    else:
        meta_path = model_dir / METADATA_FILE
        meta = io.read_json(meta_path)
        recorded = dict(meta.get("files") or {})
        if meta.get("model_file") not in recorded:
            recorded = {}  # no file hashes: refused by the check
        serving_path = model_dir / SERVING_FILE
        if recorded and serving_path.is_file():  # what packaging added, the ONNX file hashed
            serving = io.read_json(serving_path)
            recorded[SERVING_FILE] = io.sha256_file(serving_path)
            if serving.get("onnx_file"):
                recorded[serving["onnx_file"]] = str(serving.get("onnx_sha256"))
        hashes = integrity.check_files(
            model_dir,
            recorded,
            record=meta_path,
            fix=integrity.VERSION_FIX,
            exclude={METADATA_FILE},
            skip_hidden=True,
        )
    return hashes


def onnx_threads() -> int:
    """The CPUs this process may use, shared out among the server's workers (at least 1).

    ``$WORKER_COUNT`` is azmlinfsrv's worker count (1 in batch scoring and notebooks);
    ``$AMLKIT_ONNX_THREADS`` overrides.
    """
    if os.environ.get("AMLKIT_ONNX_THREADS"):
        return max(1, int(os.environ["AMLKIT_ONNX_THREADS"]))
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cpus or 1) // max(1, int(os.environ.get("WORKER_COUNT") or 1)))


def _item(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


class Scorer:
    """A loaded model with its feature contract; ``backend`` overrides ``serving.json``'s.

    The model's files are checked before anything is loaded: against ``service_dir``'s
    ``service_metadata.json`` when given (:func:`verified_model_dir`), else against the
    folder's own ``model_metadata.json`` (:func:`verified_version_dir`).
    """

    def __init__(
        self,
        model_dir: str | Path,
        backend: str | None = None,
        *,
        service_dir: str | Path | None = None,
    ) -> None:
        self.model_dir = find_model_dir(model_dir)
        record = None if service_dir is None else Path(service_dir) / SERVICE_METADATA_FILE
        self._hashes = _check(self.model_dir, record)  # {file: sha256}, before any load
        meta = json.loads((self.model_dir / METADATA_FILE).read_text(encoding="utf-8"))
        self.metadata = meta
        serving_path = self.model_dir / SERVING_FILE
        self.serving = (
            json.loads(serving_path.read_text(encoding="utf-8")) if serving_path.is_file() else {}
        )
        self.feature_columns: list[str] = list(meta.get("feature_columns") or [])
        types = meta.get("feature_types") or {}
        self.feature_types = {c: str(types.get(c, "numeric")) for c in self.feature_columns}
        # columns the model cannot take empty (no imputer there), found at packaging
        self.required: list[str] = list(self.serving.get("required_columns") or [])
        self.task: str = meta.get("task", "classification")
        self.flavor: str = meta.get("flavor", "sklearn")
        self.classes: list[Any] | None = list(meta["classes"]) if meta.get("classes") else None
        default = "keras" if self.flavor == "keras" else "sklearn"
        self.backend: str = backend or self.serving.get("backend") or default
        loader = getattr(self, f"_load_{self.backend}", None)
        if loader is None:
            raise ValueError(
                f"backend {self.backend!r} of {self.model_dir} is not one of "
                "['onnx', 'sklearn', 'keras']; package the model again."
            )
        self._model: Any = None
        self._session: Any = None
        self._argmax_labels = False
        self._model_classes: np.ndarray | None = None
        loader()
        amlkit_dir = Path(__file__).resolve().parents[1]  # a service folder's own copy, or lib's
        logger.info("loaded %s model from %s (amlkit %s)", self.backend, self.model_dir, amlkit_dir)

    # One loader per backend, named _load_<backend>: the amlkit modules a loader imports are
    # what a service folder of that backend carries (see amlkit.serving.package).

    def _load_sklearn(self) -> None:
        rel = self.metadata.get("model_file", "model.pkl")
        # the very bytes that were checked (a cloudpickle file is a plain pickle to load)
        self._model = pickle.loads(integrity.read_verified(self.model_dir / rel, self._hashes[rel]))
        model_classes = getattr(self._model, "classes_", None)
        if model_classes is not None:
            self.classes = [_item(c) for c in model_classes]
        final = self._model[-1] if hasattr(self._model, "steps") else self._model
        self._model_classes = None if model_classes is None else np.asarray(model_classes)
        self._argmax_labels = model_classes is not None and type(final).__name__ in ARGMAX_LABELS

    def _load_onnx(self) -> None:
        import onnxruntime as ort

        from amlkit.serving.onnx_inputs import OnnxFeeder

        opts = ort.SessionOptions()
        threads = onnx_threads()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        logger.info("onnxruntime uses %d thread(s) per request", threads)
        # idle threads sleep rather than spin: the HTTP work between requests needs the CPUs
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        onnx_file = self.serving["onnx_file"]
        self._session = ort.InferenceSession(
            integrity.read_verified(self.model_dir / onnx_file, self._hashes[onnx_file]),
            opts,
            providers=["CPUExecutionProvider"],
        )
        self._feeder = OnnxFeeder(
            self.serving["input_kinds"],
            self.serving.get("normalize", {}),
            self.serving.get("missing_string", ""),
        )
        if self.serving.get("classes"):
            self.classes = list(self.serving["classes"])

    def _load_keras(self) -> None:
        from amlkit.deep import pyfunc

        self._model, self._preprocessing = pyfunc.load_mlflow_model(self.model_dir)
        self._predict_images = pyfunc.predict_images

    def frame(self, values: dict[str, list[Any]]) -> Any:
        """Build the pandas frame the pipeline expects from validated column values.

        Numbers as float64 (null: NaN), texts as objects with NaN for null, dates as the ISO
        strings of the request (the model's DatetimeFeatures reads them).
        """
        import pandas as pd

        arrays = []
        for col in self.feature_columns:
            kind, vals = self.feature_types[col], values[col]
            if kind in kinds.NUMERIC_KINDS:
                arrays.append(np.asarray(vals, dtype=np.float64))
            else:
                arrays.append(np.array([np.nan if v is None else v for v in vals], dtype=object))
        rows = len(arrays[0]) if arrays else 0
        try:  # pandas' own constructor from columns, without the checks a dict goes through
            return pd.DataFrame._from_arrays(
                arrays,
                columns=pd.Index(self.feature_columns),
                index=pd.RangeIndex(rows),
                verify_integrity=False,
            )
        except (AttributeError, TypeError):  # another pandas: the public constructor
            data = dict(zip(self.feature_columns, arrays, strict=True))
            return pd.DataFrame(data, columns=self.feature_columns)

    def predict_values(
        self, values: dict[str, list[Any]]
    ) -> tuple[list[Any], list[list[float]] | None]:
        """Score validated rows given column by column; probabilities are None for regressors.

        Validated rows hold no infinities and no gaps where the model refuses them, so the
        pipeline runs without scikit-learn's finiteness and parameter checks.
        """
        if self.backend == "onnx":
            return _lists(*self._onnx_arrays(self._feeder.from_values(values)))
        import sklearn

        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            return _lists(*self.predict_arrays(self.frame(values)))

    def _onnx_arrays(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, Any]:
        outputs = self._session.run(None, feeds)
        probs = outputs[1] if len(outputs) > 1 and self.task == "classification" else None
        return outputs[0].ravel(), probs

    def predict_arrays(self, frame: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """Score a pandas frame; return predictions and probabilities (or None) as arrays.

        The preprocessing runs once: a forest's labels are read off its probabilities (its
        own ``predict`` does that); another classifier's ``predict`` takes the transformed rows.
        """
        if self.backend == "onnx":
            return self._onnx_arrays(self._feeder.from_frame(frame))
        if self.backend == "keras":
            raise ValueError("keras models score images; use predict_images")
        model = self._model
        if self.task != "classification" or not hasattr(model, "predict_proba"):
            return np.asarray(model.predict(frame)), None
        if self._argmax_labels and self._model_classes is not None:
            probs = model.predict_proba(frame)
            return self._model_classes.take(probs.argmax(axis=1)), probs  # = its predict
        if hasattr(model, "steps") and len(model.steps) > 1:
            rows, final = model[:-1].transform(frame), model[-1]
            return np.asarray(final.predict(rows)), final.predict_proba(rows)
        return np.asarray(model.predict(frame)), model.predict_proba(frame)

    def predict_frame(self, frame: Any) -> tuple[list[Any], list[list[float]] | None]:
        """Score a pandas frame with the model's feature columns (plain Python lists)."""
        return _lists(*self.predict_arrays(frame))

    def predict_images(self, images: list[Any]) -> dict[str, Any]:
        """Score images (nested lists or base64 PNG) with the Keras model."""
        return self._predict_images(self._model, images, preprocessing=self._preprocessing)


def _lists(preds: np.ndarray, probs: np.ndarray | None) -> tuple[list[Any], Any]:
    return preds.tolist(), None if probs is None else probs.tolist()
