"""Convert scikit-learn pipelines to ONNX and check that they answer the same.

Conversion recipe, found by testing on the penguins pipelines (ColumnTransformer with
SimpleImputer + StandardScaler on numbers, SimpleImputer + OneHotEncoder on strings):

- numeric inputs are fed as doubles (float32 inputs flip tree splits: scaling in float32
  differs from scikit-learn's float64 by an ulp);
- onnxruntime's Imputer has no double kernel, so numeric SimpleImputers are taken out of the
  graph and their fill values applied by the runtime before the call (``numeric_fill``);
- string SimpleImputers cannot match NaN inside a string tensor: their ``missing_values``
  becomes ``""`` and the runtime feeds missing strings as ``""``;
- scikit-learn trees compare ``float32(x)`` with float64 thresholds, so a Cast to float and
  back is inserted in front of every TreeEnsemble node.

The converted model is used only when labels are identical and probabilities agree within
``tolerance`` on the supplied rows (plus a copy of them with each column blanked).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

NUMERIC_KINDS = ("numeric", "integer")
STRING_KINDS = ("categorical", "boolean")


@dataclass
class Conversion:
    """The outcome of :func:`convert_and_check`."""

    ok: bool
    reason: str
    onnx_bytes: bytes | None = None
    numeric_fill: dict[str, float] = field(default_factory=dict)
    input_kinds: dict[str, str] = field(default_factory=dict)
    parity: dict[str, Any] = field(default_factory=dict)
    classes: list[Any] | None = None


def _prepare(pipeline: Any, feature_types: dict[str, str]) -> tuple[Any, dict[str, float]]:
    """Return a converted-friendly copy of ``pipeline`` and the numeric fill values."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    clone = copy.deepcopy(pipeline)
    fills: dict[str, float] = {}
    steps = clone.steps if isinstance(clone, Pipeline) else []
    pre = steps[0][1] if steps else None
    if not isinstance(pre, ColumnTransformer):
        return clone, fills
    for idx, (name, trans, cols) in enumerate(pre.transformers_):
        if isinstance(trans, str) or not isinstance(cols, list | tuple | np.ndarray):
            continue
        cols = list(cols)
        kinds = {feature_types.get(c, "numeric") for c in cols}
        first = trans.steps[0][1] if isinstance(trans, Pipeline) else trans
        if not isinstance(first, SimpleImputer):
            continue
        if kinds <= set(NUMERIC_KINDS):
            fills.update({c: float(v) for c, v in zip(cols, first.statistics_, strict=True)})
            identity = FunctionTransformer(feature_names_out="one-to-one")
            identity.fit(np.zeros((1, len(cols))))
            if isinstance(trans, Pipeline):
                trans.steps[0] = (trans.steps[0][0], identity)
            else:
                pre.transformers_[idx] = (name, identity, cols)
        elif kinds <= set(STRING_KINDS):
            first.missing_values = ""
    return clone, fills


def _cast_tree_inputs(model: Any) -> Any:
    from onnx import TensorProto, helper

    nodes = []
    for node in model.graph.node:
        if node.op_type.startswith("TreeEnsemble"):
            x = node.input[0]
            f32, f64 = f"{x}_as_f32", f"{x}_f32_as_f64"
            nodes.append(helper.make_node("Cast", [x], [f32], to=TensorProto.FLOAT, name=f32))
            nodes.append(helper.make_node("Cast", [f32], [f64], to=TensorProto.DOUBLE, name=f64))
            node.input[0] = f64
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def convert(
    pipeline: Any, feature_columns: list[str], feature_types: dict[str, str]
) -> tuple[bytes, dict[str, float], dict[str, str]]:
    """Convert a fitted pipeline to ONNX bytes.

    Returns:
        ``(onnx_bytes, numeric_fill, input_kinds)``.

    Raises:
        ValueError: a feature kind ONNX cannot take (datetime, text); names the column.
        Exception: whatever skl2onnx raises for an unsupported step.
    """
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType, StringTensorType

    kinds: dict[str, str] = {}
    initial_types = []
    for col in feature_columns:
        kind = feature_types.get(col, "numeric")
        if kind in NUMERIC_KINDS:
            kinds[col] = "double"
            initial_types.append((col, DoubleTensorType([None, 1])))
        elif kind in STRING_KINDS:
            kinds[col] = "string"
            initial_types.append((col, StringTensorType([None, 1])))
        else:
            raise ValueError(f"feature {col!r} has kind {kind!r}, which the ONNX path cannot take")
    clone, fills = _prepare(pipeline, feature_types)
    final = clone.steps[-1][1] if hasattr(clone, "steps") else clone
    options = {id(final): {"zipmap": False}} if hasattr(final, "predict_proba") else None
    model = convert_sklearn(
        clone,
        initial_types=initial_types,
        options=options,
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    return _cast_tree_inputs(model).SerializeToString(), fills, kinds


def _with_blanks(frame: Any, feature_columns: list[str]) -> Any:
    import pandas as pd

    base = frame[feature_columns].head(20)
    blanked = []
    for col in feature_columns:
        part = base.copy()
        part[col] = np.nan  # the contract's missing marker, for strings too
        blanked.append(part)
    return pd.concat([frame[feature_columns], *blanked], ignore_index=True)


def convert_and_check(
    pipeline: Any,
    metadata: dict[str, Any],
    rows: Any,
    *,
    tolerance: float = 1e-5,
) -> Conversion:
    """Convert ``pipeline`` and compare it with the original on ``rows``.

    Args:
        pipeline: the fitted scikit-learn pipeline.
        metadata: the version's ``model_metadata.json`` (feature columns, types, task).
        rows: a pandas frame of test rows with the feature columns, or None.
        tolerance: largest allowed probability (or regression value) difference.

    Returns:
        A :class:`Conversion`; ``ok`` False carries the reason in words.
    """
    import onnxruntime as ort

    from amlkit.serving.runtime import _missing

    columns = list(metadata["feature_columns"])
    types = {c: metadata.get("feature_types", {}).get(c, "numeric") for c in columns}
    if rows is None or len(rows) == 0:
        return Conversion(False, "no parity rows supplied; serving the pickled pipeline")
    try:
        onnx_bytes, fills, kinds = convert(pipeline, columns, types)
        session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    except Exception as exc:  # skl2onnx raises many types for unsupported steps
        reason = f"ONNX conversion failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        return Conversion(False, reason)
    frame = _with_blanks(rows, columns)
    feeds = {}
    for col, kind in kinds.items():
        if kind == "double":
            arr = frame[col].to_numpy(dtype=np.float64, na_value=np.nan).copy()
            if col in fills:
                arr[np.isnan(arr)] = fills[col]
            feeds[col] = arr.reshape(-1, 1)
        else:
            vals = ["" if _missing(v) else str(v) for v in frame[col]]
            feeds[col] = np.array(vals, dtype=object).reshape(-1, 1)
    try:
        outputs = session.run(None, feeds)
    except Exception as exc:
        return Conversion(False, f"ONNX model failed on the parity rows: {exc}")
    expected = pipeline.predict(frame)
    got = outputs[0].ravel()
    parity: dict[str, Any] = {"rows": len(frame), "tolerance": tolerance}
    classes = None
    if metadata.get("task", "classification") == "classification":
        same = int((got == expected).sum())
        parity["labels_equal"] = same == len(frame)
        parity["label_mismatches"] = len(frame) - same
        diff = float(np.abs(outputs[1] - pipeline.predict_proba(frame)).max())
        parity["max_probability_diff"] = diff
        ok = parity["labels_equal"] and diff <= tolerance
        classes = [c.item() if hasattr(c, "item") else c for c in pipeline.classes_]
    else:
        diff = float(np.abs(got.astype(np.float64) - expected).max())
        parity["max_abs_diff"] = diff
        ok = diff <= tolerance
    if not ok:
        return Conversion(False, f"ONNX parity check failed: {parity}", parity=parity)
    return Conversion(True, "ONNX parity check passed", onnx_bytes, fills, kinds, parity, classes)
