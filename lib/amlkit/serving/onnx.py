"""Convert scikit-learn pipelines to ONNX and check that they answer the same.

The recipe: numbers fed as doubles, dates as epoch seconds (:mod:`.onnx_inputs`); amlkit's
converters (:mod:`.onnx_converters`); tree ensembles with double thresholds (ai.onnx.ml 3),
where scikit-learn's forests and gradient boosting compare ``float32(x)`` (a Cast to float
and back in front of their nodes) and HistGradientBoosting compares ``x`` itself. The model
is used only when it agrees, within the tolerance, with the pipeline fed as the service
feeds it (:func:`service_frame`) on the supplied rows and hard copies of them
(:func:`parity_frame`). When it is refused, the reason names the step and its options.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from amlkit import kinds

OPSET = {"": 17, "ai.onnx.ml": 3}


def normalized_columns(step: Any, columns: list[str] | None = None) -> dict[str, str]:
    """Return ``{input column: "category" | "boolean"}`` for those a CategoryNormalizer cleans."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    from amlkit.training.transformers import CategoryNormalizer

    found: dict[str, str] = {}
    if isinstance(step, Pipeline):
        for i, (_, inner) in enumerate(step.steps):
            found |= normalized_columns(inner, columns if i == 0 else None)
    elif isinstance(step, ColumnTransformer):
        for _, inner, cols in step.transformers_:
            if not isinstance(inner, str) and isinstance(cols, list | tuple | np.ndarray):
                found |= normalized_columns(inner, [str(c) for c in cols])
    elif isinstance(step, CategoryNormalizer) and columns:
        found = dict.fromkeys(columns, "boolean" if step.boolean else "category")
    return found


def _fix_tree_nodes(model: Any) -> Any:
    """Make the TreeEnsemble nodes compare as scikit-learn does and type their outputs.

    scikit-learn's forests and gradient boosting compare ``float32(x)`` with float64
    thresholds: their input goes through a Cast to float and back (the thresholds stay
    double). HistGradientBoosting compares float64 inputs (nodes named
    :data:`~.onnx_converters.EXACT_DOUBLE_TREES`): nothing is added. ai.onnx.ml 3 trees
    answer in float; an output declared double gets a Cast after the node.
    """
    from onnx import TensorProto, helper

    from amlkit.serving.onnx_converters import EXACT_DOUBLE_TREES

    declared = {
        v.name: v.type.tensor_type.elem_type for v in [*model.graph.output, *model.graph.value_info]
    }
    for node in model.graph.node:  # an Identity passes its declared type back to its input
        if node.op_type == "Identity" and node.output[0] in declared:
            declared.setdefault(node.input[0], declared[node.output[0]])
    nodes = []
    for node in model.graph.node:
        after = []
        if node.op_type in ("TreeEnsembleClassifier", "TreeEnsembleRegressor"):
            x = node.input[0]
            if not node.name.startswith(EXACT_DOUBLE_TREES):
                f32, f64 = f"{x}_as_f32_{node.name}", f"{x}_f32_as_f64_{node.name}"
                nodes.append(helper.make_node("Cast", [x], [f32], to=TensorProto.FLOAT, name=f32))
                nodes.append(
                    helper.make_node("Cast", [f32], [f64], to=TensorProto.DOUBLE, name=f64)
                )
                node.input[0] = f64
            scores = 1 if node.op_type == "TreeEnsembleClassifier" else 0
            out = node.output[scores]
            if declared.get(out) == TensorProto.DOUBLE:
                raw = f"{out}_float"
                node.output[scores] = raw
                after.append(
                    helper.make_node("Cast", [raw], [out], to=TensorProto.DOUBLE, name=raw)
                )
        nodes.append(node)
        nodes.extend(after)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def convert(
    pipeline: Any, feature_columns: list[str], feature_types: dict[str, str]
) -> tuple[bytes, dict[str, str], dict[str, str]]:
    """Return the ONNX bytes, ``{column: "double" | "string"}`` and :func:`normalized_columns`."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType, StringTensorType

    from amlkit.serving import onnx_converters

    onnx_converters.register()
    input_kinds: dict[str, str] = {}
    initial_types = []
    for col in feature_columns:
        kind = feature_types.get(col, "numeric")
        if kind in kinds.NUMERIC_KINDS:
            input_kinds[col] = "double"
            initial_types.append((col, DoubleTensorType([None, 1])))
        elif kind in kinds.CATEGORY_KINDS:
            input_kinds[col] = "string"
            initial_types.append((col, StringTensorType([None, 1])))
        elif kind == kinds.DATETIME:
            input_kinds[col] = "datetime"  # seconds since the epoch (onnx_inputs.epoch_seconds)
            initial_types.append((col, DoubleTensorType([None, 1])))
        else:
            raise ValueError(
                f"feature {col!r} has kind {kind!r}, which the ONNX path does not take "
                "(numeric, integer, categorical, boolean and datetime only)"
            )
    model = pipeline
    final = model.steps[-1][1] if hasattr(model, "steps") else model
    options = {id(final): {"zipmap": False}} if hasattr(final, "predict_proba") else None
    onnx_model = convert_sklearn(
        model,
        initial_types=initial_types,
        options=options,
        target_opset=dict(OPSET),
        **onnx_converters.overrides(),
    )
    normalize = normalized_columns(pipeline)
    return _fix_tree_nodes(onnx_model).SerializeToString(), input_kinds, normalize


def required_columns(pipeline: Any, frame: Any, feature_columns: list[str]) -> list[str]:
    """Return the columns whose missing values ``pipeline`` refuses (it has no imputer there).

    Each column is blanked in turn on up to 20 of ``frame``'s complete rows; a column whose
    blanking makes ``pipeline.predict`` raise is required. A service answers a request that
    leaves such a column empty with a 422 naming it, not with the pipeline's 500.
    """
    base = frame[feature_columns].dropna().head(20)
    if not len(base):
        return []
    required = []
    for col in feature_columns:
        probe = base.copy()
        probe[col] = np.nan
        try:
            pipeline.predict(probe)
        except Exception:  # scikit-learn raises ValueError, custom steps anything
            required.append(col)
    return required


def parity_frame(
    frame: Any,
    feature_columns: list[str],
    feature_types: dict[str, str],
    required: list[str] | tuple[str, ...] = (),
) -> Any:
    """Return ``frame`` plus hard copies: each column blanked, strings padded/upper/empty.

    Rows missing a ``required`` column are left out, and so are blanked copies of it: the
    service refuses those before the model sees them.
    """
    import pandas as pd

    rows = frame[feature_columns].dropna(subset=list(required))
    base = rows.head(20)
    parts = [rows]
    for col in feature_columns:
        if col in required:
            continue
        part = base.copy()
        part[col] = part[col].mask(np.ones(len(part), dtype=bool))  # NaN, NaT: its own dtype
        parts.append(part)
    strings = [c for c in feature_columns if feature_types.get(c) in kinds.CATEGORY_KINDS]
    for change in (lambda s: f"  {s} ", str.upper, lambda s: ""):
        part = base.copy()
        for col in strings:
            part[col] = [change(v) if isinstance(v, str) else v for v in part[col]]
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def service_frame(frame: Any, feature_columns: list[str], feature_types: dict[str, str]) -> Any:
    """Return ``frame``'s feature columns as the service hands them to the pipeline.

    A request's null reaches the pipeline as NaN (:meth:`~amlkit.serving.runtime.Scorer.frame`),
    whereas a Parquet split gives ``None`` in text columns: scikit-learn's imputers take NaN as
    missing but ``None`` as a value of its own, so the two answer differently. Numbers become
    float64, texts objects with NaN for every missing marker; dates are left as they are.
    """
    import pandas as pd

    data = {}
    for col in feature_columns:
        kind, values = feature_types.get(col, "numeric"), frame[col]
        if kind in kinds.NUMERIC_KINDS:
            data[col] = values.to_numpy(dtype=np.float64, na_value=np.nan)
        elif kind in kinds.CATEGORY_KINDS:
            objects = values.astype(object)
            data[col] = objects.where(objects.notna(), np.nan).to_numpy(dtype=object)
        else:
            data[col] = values.to_numpy()
    return pd.DataFrame(data, columns=feature_columns)


def step_paths(model: Any, prefix: str = "") -> dict[int, tuple[str, Any]]:
    """Return ``{id(step): (path, step)}`` of every step, paths like ``preprocess/cat/onehot``."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import FeatureUnion, Pipeline

    found: dict[int, tuple[str, Any]] = {id(model): (prefix or type(model).__name__, model)}
    if isinstance(model, Pipeline):
        children = [(name, step) for name, step in model.steps]
    elif isinstance(model, ColumnTransformer):
        fitted = getattr(model, "transformers_", model.transformers)
        children = [(name, step) for name, step, _ in fitted]
    elif isinstance(model, FeatureUnion):
        children = list(model.transformer_list)
    else:
        children = []
    for name, step in children:
        if not isinstance(step, str):
            found |= step_paths(step, f"{prefix}/{name}" if prefix else name)
    return found


def describe_step(path: str, step: Any) -> str:
    """Return ``step 'path' (Class, option=value, ...)``: the options set away from defaults."""
    import inspect

    options = []
    try:
        defaults = {
            k: p.default for k, p in inspect.signature(type(step).__init__).parameters.items()
        }
        for key, value in step.get_params(deep=False).items():
            if hasattr(value, "get_params") or key in ("steps", "transformers", "memory"):
                continue
            default = defaults.get(key, inspect.Parameter.empty)
            same = default is not inspect.Parameter.empty and (
                value is default or (type(value) is type(default) and value == default)
            )
            if not same:
                text = getattr(value, "__name__", None) or repr(value)
                options.append(f"{key}={text[:40]}")
    except (TypeError, ValueError):  # a step without scikit-learn's parameter conventions
        pass
    return f"step {path!r} ({', '.join([type(step).__name__, *options])})"


def failing_step(pipeline: Any, exc: BaseException) -> str | None:
    """Return :func:`describe_step` of the step that raised ``exc``, found in its traceback."""
    paths = step_paths(pipeline)
    found = None
    tb = exc.__traceback__
    while tb is not None:  # the innermost frame that works on a step of this pipeline wins
        for name in ("operator", "self", "model", "op"):
            value = tb.tb_frame.f_locals.get(name)
            value = getattr(value, "raw_operator", value)
            if id(value) in paths and value is not pipeline:
                found = paths[id(value)]
        tb = tb.tb_next
    if found is None:  # a step skl2onnx has no converter for names its class
        message = str(exc)
        named = [p for p in paths.values() if f"{type(p[1]).__name__}'" in message]
        found = named[0] if named else None
    return None if found is None else describe_step(*found)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


def _refused(reason: str, parity: dict[str, Any] | None = None) -> tuple[None, dict[str, Any]]:
    return None, {"reason": reason, "parity": parity or {}}


def convert_and_check(
    pipeline: Any,
    metadata: dict[str, Any],
    rows: Any,
    *,
    tolerance: float = 1e-5,
    required: list[str] | tuple[str, ...] = (),
) -> tuple[bytes | None, dict[str, Any]]:
    """Convert ``pipeline`` and compare it with the original on ``rows`` (a frame, or None).

    ``required``: :func:`required_columns` of the pipeline. Returns the ONNX bytes (None when
    refused) and the ``serving.json`` fields.
    """
    import onnxruntime as ort

    from amlkit.serving.onnx_converters import MISSING_STRING
    from amlkit.serving.onnx_inputs import OnnxFeeder

    columns = list(metadata["feature_columns"])
    types = {c: metadata.get("feature_types", {}).get(c, "numeric") for c in columns}
    if rows is None or len(rows) == 0:
        return _refused("no parity rows supplied; serving the pickled pipeline")
    try:
        onnx_bytes, input_kinds, normalize = convert(pipeline, columns, types)
        session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    except Exception as exc:  # skl2onnx raises many types for unsupported steps
        step = failing_step(pipeline, exc)
        where = f"{step}: " if step else ""
        return _refused(f"ONNX conversion failed: {where}{_first_line(exc)}")
    frame = service_frame(parity_frame(rows, columns, types, required), columns, types)
    if not len(frame):
        return _refused("no parity row has every required column; serving the pickled pipeline")
    try:
        expected = pipeline.predict(frame)
        expected_probs = (
            pipeline.predict_proba(frame)
            if metadata.get("task", "classification") == "classification"
            else None
        )
    except Exception as exc:  # e.g. a category never seen, with handle_unknown="error"
        step = failing_step(pipeline, exc)
        where = f"{step} raises " if step else "it raises "
        hint = ""
        if "unknown categor" in str(exc).lower():
            hint = (
                "; the service would answer such requests with an error too: set "
                "handle_unknown='ignore' (or 'infrequent_if_exist') on that step and train again"
            )
        return _refused(
            "the pipeline itself fails on the parity rows (the test split, with values blanked "
            f"and categories never seen): {where}{_first_line(exc)}{hint}"
        )
    feeds = OnnxFeeder(input_kinds, normalize, MISSING_STRING).from_frame(frame)
    try:
        outputs = session.run(None, feeds)
    except Exception as exc:
        return _refused(f"ONNX model failed on the parity rows: {exc}")
    got = outputs[0].ravel()
    parity: dict[str, Any] = {"rows": len(frame), "tolerance": tolerance}
    classes = None
    if metadata.get("task", "classification") == "classification":
        same = int((got == expected).sum())
        parity["labels_equal"] = same == len(frame)
        parity["label_mismatches"] = len(frame) - same
        diff = float(np.abs(outputs[1] - expected_probs).max())
        parity["max_probability_diff"] = diff
        ok = parity["labels_equal"] and diff <= tolerance
        classes = [c.item() if hasattr(c, "item") else c for c in pipeline.classes_]
    else:
        diff = float(np.abs(got.astype(np.float64) - expected).max())
        parity["max_abs_diff"] = diff
        ok = diff <= tolerance
    if not ok:
        return _refused(f"ONNX parity check failed: {parity}", parity)
    feeding = {"input_kinds": input_kinds, "normalize": normalize, "missing_string": MISSING_STRING}
    info = {"reason": "ONNX parity check passed", "parity": parity, **feeding}
    return onnx_bytes, info | {"classes": classes, "opset": OPSET}
