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

from amlkit import io, kinds

logger = logging.getLogger(__name__)

SERVING_FILE = "serving.json"
METADATA_FILE = "model_metadata.json"


def find_model_dir(root: str | Path) -> Path:
    """Return the folder holding ``model_metadata.json`` at ``root`` or one level below (Azure)."""
    root = Path(root)
    if (root / METADATA_FILE).is_file():
        return root
    found = sorted(p.parent for p in root.glob(f"*/{METADATA_FILE}"))
    if len(found) == 1:
        return found[0]
    raise FileNotFoundError(
        f"no {METADATA_FILE} in {root} or its subfolders ({len(found)} found); point "
        "AZUREML_MODEL_DIR at the packaged model folder (deployed_models/<service>/model)."
    )


def verified_model_dir(service_dir: str | Path, model_root: str | Path | None = None) -> Path:
    """Return a service's model folder after checking every file against ``model_files``.

    ``service_metadata.json`` records the sha256 of each model file at packaging; a file
    that changed, went missing or was added raises ValueError naming it, before anything is
    unpickled. ``model_root``: where the model lies (Azure mounts it apart), default
    ``<service_dir>/model``.
    """
    model_dir = find_model_dir(model_root or Path(service_dir) / "model")
    recorded = io.read_json(Path(service_dir) / "service_metadata.json")["model_files"]
    present = {
        p.relative_to(model_dir).as_posix()
        for p in model_dir.rglob("*")
        if p.is_file() and not p.name.startswith(".") and "__pycache__" not in p.parts
    }
    for rel in sorted(present | set(recorded)):
        path = model_dir / rel
        if rel not in present or rel not in recorded:
            problem = ("is missing" if rel not in present else "was added") + " since packaging"
        elif (got := io.sha256_file(path)) != recorded[rel]:
            problem = f"has sha256 {got}, but service_metadata.json records {recorded[rel]}"
        else:
            continue
        raise ValueError(
            f"model file {path} {problem}; refusing to load the model. Package the service "
            "again (amlkit package) rather than editing its files."
        )
    return model_dir


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
    """A loaded model with its feature contract; ``backend`` overrides ``serving.json``'s."""

    def __init__(self, model_dir: str | Path, backend: str | None = None) -> None:
        self.model_dir = find_model_dir(model_dir)
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
        loader()
        amlkit_dir = Path(__file__).resolve().parents[1]  # a service folder's own copy, or lib's
        logger.info("loaded %s model from %s (amlkit %s)", self.backend, self.model_dir, amlkit_dir)

    # One loader per backend, named _load_<backend>: the amlkit modules a loader imports are
    # what a service folder of that backend carries (see amlkit.serving.package).

    def _load_sklearn(self) -> None:
        path = self.model_dir / self.metadata.get("model_file", "model.pkl")
        with open(path, "rb") as handle:  # a cloudpickle file is a plain pickle to load
            self._model = pickle.load(handle)
        model_classes = getattr(self._model, "classes_", None)
        if model_classes is not None:
            self.classes = [_item(c) for c in model_classes]

    def _load_onnx(self) -> None:
        import onnxruntime as ort

        from amlkit.serving.onnx_inputs import OnnxFeeder

        opts = ort.SessionOptions()
        threads = onnx_threads()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        logger.info("onnxruntime uses %d thread(s) per request", threads)
        # idle threads sleep rather than spin: the HTTP work between requests needs the CPUs
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(
            str(self.model_dir / self.serving["onnx_file"]),
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
        """Build the pandas frame the pipeline expects from validated column values."""
        import pandas as pd

        data = {}
        for col in self.feature_columns:
            kind, vals = self.feature_types[col], values[col]
            if kind in kinds.NUMERIC_KINDS:
                data[col] = np.asarray(vals, dtype=np.float64)
            elif kind == "datetime":
                data[col] = pd.to_datetime(pd.Series(vals, dtype=object), format="ISO8601")
            else:
                data[col] = pd.Series([np.nan if v is None else v for v in vals], dtype=object)
        return pd.DataFrame(data, columns=self.feature_columns)

    def predict_values(
        self, values: dict[str, list[Any]]
    ) -> tuple[list[Any], list[list[float]] | None]:
        """Score validated rows given column by column; probabilities are None for regressors."""
        if self.backend == "onnx":
            return _lists(*self._onnx_arrays(self._feeder.from_values(values)))
        return self.predict_frame(self.frame(values))

    def _onnx_arrays(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, Any]:
        outputs = self._session.run(None, feeds)
        probs = outputs[1] if len(outputs) > 1 and self.task == "classification" else None
        return outputs[0].ravel(), probs

    def predict_arrays(self, frame: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """Score a pandas frame; return predictions and probabilities (or None) as arrays."""
        if self.backend == "onnx":
            return self._onnx_arrays(self._feeder.from_frame(frame))
        if self.backend == "keras":
            raise ValueError("keras models score images; use predict_images")
        model = self._model
        if self.task != "classification" or not hasattr(model, "predict_proba"):
            return np.asarray(model.predict(frame)), None
        from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

        probs = model.predict_proba(frame)
        final = model[-1] if hasattr(model, "steps") else model
        if isinstance(final, RandomForestClassifier | ExtraTreesClassifier):
            return final.classes_.take(probs.argmax(axis=1)), probs  # = its predict: one pass
        return np.asarray(model.predict(frame)), probs

    def predict_frame(self, frame: Any) -> tuple[list[Any], list[list[float]] | None]:
        """Score a pandas frame with the model's feature columns (plain Python lists)."""
        return _lists(*self.predict_arrays(frame))

    def predict_images(self, images: list[Any]) -> dict[str, Any]:
        """Score images (nested lists or base64 PNG) with the Keras model."""
        return self._predict_images(self._model, images, preprocessing=self._preprocessing)


def _lists(preds: np.ndarray, probs: np.ndarray | None) -> tuple[list[Any], Any]:
    return preds.tolist(), None if probs is None else probs.tolist()
