"""skl2onnx converters for the steps of notebook 04's preprocessing (public extension points).

- CategoryNormalizer: registered as a new model, converted to an ``Identity``; the runtime
  feeds strings already normalised (:mod:`.onnx_inputs`).
- DatetimeFeatures: registered as a new model; the runtime feeds each date as seconds since
  1970-01-01 UTC (a double, NaN when missing) and the graph computes the calendar parts with
  exact integer arithmetic on doubles, filling gaps with the fitted medians.
- OneHotEncoder, OrdinalEncoder: a lookup table per column, read off the fitted encoder
  itself (every category, the missing value and an unknown one put through ``transform``),
  so infrequent categories, ``drop``, ``unknown_value`` and ``encoded_missing_value`` answer
  as scikit-learn does; the missing value is the marker string the runtime feeds.
- SimpleImputer, MissingIndicator: skl2onnx's ``Imputer`` has no double kernel in
  onnxruntime, no indicator and refuses NaN string imputers; these use standard ops.
- HistGradientBoosting: skl2onnx 1.20 passes onnx missing-value flags mixing ``False`` and
  numpy ints, which onnx refuses; its converter runs with a container passing plain ints.

The last two apply to one ``convert_sklearn`` call only (:func:`overrides`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from onnx import TensorProto, numpy_helper
from skl2onnx import get_model_alias, update_registered_converter
from skl2onnx.common.data_types import DoubleTensorType, StringTensorType
from skl2onnx.operator_converters.common import concatenate_variables
from sklearn.impute import MissingIndicator, SimpleImputer
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, OrdinalEncoder

from amlkit.serving.onnx_inputs import MISSING_STRING, is_missing
from amlkit.training.transformers import DATETIME_PARTS, CategoryNormalizer, DatetimeFeatures

UNKNOWN_PROBE = "\u2400amlkit-unknown\u2400"  # a category no encoder has seen
TREE_FLAGS = "nodes_missing_value_tracks_true"


def _normalizer_shape(operator: Any) -> None:
    for var in operator.inputs:
        if not isinstance(var.type, StringTensorType):
            raise TypeError(
                f"CategoryNormalizer takes string inputs in ONNX, got {type(var.type).__name__}"
            )
    n = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = StringTensorType([n, operator.raw_operator.n_features_in_])


def _normalizer_parser(
    scope: Any, model: Any, inputs: list[Any], custom_parsers: Any = None
) -> Any:
    operator = scope.declare_local_operator(get_model_alias(type(model)), model)
    operator.inputs = inputs
    operator.outputs.append(scope.declare_local_variable("normalized", StringTensorType()))
    return operator.outputs


def _normalizer_convert(scope: Any, operator: Any, container: Any) -> None:
    x = concatenate_variables(scope, operator.inputs, container)
    out, name = operator.outputs[0].full_name, scope.get_unique_operator_name("CategoryNormalizer")
    container.add_node("Identity", [x], [out], name=name)


def register() -> None:
    """Register the CategoryNormalizer and DatetimeFeatures converters (idempotent)."""
    update_registered_converter(
        CategoryNormalizer,
        "AmlkitCategoryNormalizer",
        _normalizer_shape,
        _normalizer_convert,
        parser=_normalizer_parser,
    )
    update_registered_converter(
        DatetimeFeatures,
        "AmlkitDatetimeFeatures",
        _datetime_shape,
        _datetime_convert,
        parser=_datetime_parser,
    )


# --- DatetimeFeatures: seconds since the epoch -> calendar parts ---


def _datetime_parser(scope: Any, model: Any, inputs: list[Any], custom_parsers: Any = None) -> Any:
    operator = scope.declare_local_operator(get_model_alias(type(model)), model)
    operator.inputs = inputs
    operator.outputs.append(scope.declare_local_variable("calendar_parts", DoubleTensorType()))
    return operator.outputs


def _datetime_shape(operator: Any) -> None:
    for var in operator.inputs:
        if not isinstance(var.type, DoubleTensorType):
            raise TypeError(
                "DatetimeFeatures takes dates as seconds since the epoch (doubles) in ONNX, "
                f"got {type(var.type).__name__}; declare the column with kind 'datetime'"
            )
    step = operator.raw_operator
    n = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = DoubleTensorType([n, step.n_features_in_ * len(step.parts)])


class _Graph:
    """Add nodes to a skl2onnx container with fresh names; constants as double initializers."""

    def __init__(self, scope: Any, container: Any) -> None:
        self.scope, self.container = scope, container

    def const(self, values: Any, dtype: int = TensorProto.DOUBLE) -> str:
        array = np.asarray(values)
        name = self.scope.get_unique_variable_name("const")
        self.container.add_initializer(name, dtype, list(array.shape), array.ravel().tolist())
        return name

    def op(self, op_type: str, *inputs: str, **attrs: Any) -> str:
        out = self.scope.get_unique_variable_name(op_type.lower())
        name = self.scope.get_unique_operator_name(op_type)
        self.container.add_node(op_type, list(inputs), [out], name=name, **attrs)
        return out

    def columns(self, inputs: Any) -> Iterator[tuple[Any, str]]:
        """Yield ``(input variable, one column of it)`` for each column of each input."""
        for var in inputs:
            width = var.get_second_dimension()
            for j in range(width if isinstance(width, int) else 1):
                x = var.full_name
                if width != 1:
                    x = self.op("Gather", x, self.const([j], TensorProto.INT64), axis=1)
                yield var, x

    def floordiv(self, a: str, b: float) -> str:
        """floor(a / b) for integral doubles below 2**53 (exact: a/b is never within an ulp)."""
        return self.op("Floor", self.op("Div", a, self.const(float(b))))


def calendar_parts(g: _Graph, seconds: str) -> dict[str, str]:
    """Nodes computing each of :data:`DATETIME_PARTS` (doubles) from seconds since the epoch.

    Howard Hinnant's ``civil_from_days``; Monday is day 0, as in pandas.
    """
    days = g.floordiv(seconds, 86400.0)
    z = g.op("Add", days, g.const(719468.0))
    era = g.floordiv(z, 146097.0)
    doe = g.op("Sub", z, g.op("Mul", era, g.const(146097.0)))  # [0, 146096]
    yoe_num = g.op(
        "Sub",
        g.op("Add", g.op("Sub", doe, g.floordiv(doe, 1460.0)), g.floordiv(doe, 36524.0)),
        g.floordiv(doe, 146096.0),
    )
    yoe = g.floordiv(yoe_num, 365.0)  # [0, 399]
    doy_mar = g.op(  # day of the year counted from March 1st, [0, 365]
        "Sub",
        doe,
        g.op(
            "Sub",
            g.op("Add", g.op("Mul", yoe, g.const(365.0)), g.floordiv(yoe, 4.0)),
            g.floordiv(yoe, 100.0),
        ),
    )
    mp = g.floordiv(g.op("Add", g.op("Mul", doy_mar, g.const(5.0)), g.const(2.0)), 153.0)
    day = g.op(
        "Add",
        g.op(
            "Sub",
            doy_mar,
            g.floordiv(g.op("Add", g.op("Mul", mp, g.const(153.0)), g.const(2.0)), 5.0),
        ),
        g.const(1.0),
    )
    before_march = g.op("Less", mp, g.const(10.0))  # March..December are mp 0..9
    month = g.op(
        "Where", before_march, g.op("Add", mp, g.const(3.0)), g.op("Sub", mp, g.const(9.0))
    )
    january_february = g.op("LessOrEqual", month, g.const(2.0))
    shift = g.op("Cast", january_february, to=TensorProto.DOUBLE)
    year = g.op("Add", g.op("Add", yoe, g.op("Mul", era, g.const(400.0))), shift)

    def divisible(value: str, by: float) -> str:
        return g.op(
            "Equal",
            g.op("Sub", value, g.op("Mul", g.floordiv(value, by), g.const(by))),
            g.const(0.0),
        )

    leap = g.op(
        "Or",
        g.op("And", divisible(year, 4.0), g.op("Not", divisible(year, 100.0))),
        divisible(year, 400.0),
    )
    cumulative = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334]
    month_index = g.op("Cast", g.op("Sub", month, g.const(1.0)), to=TensorProto.INT64)
    before = g.op("Gather", g.const([float(c) for c in cumulative]), month_index, axis=0)
    late_leap = g.op("And", leap, g.op("Greater", month, g.const(2.0)))
    dayofyear = g.op(
        "Add", g.op("Add", before, day), g.op("Cast", late_leap, to=TensorProto.DOUBLE)
    )
    seven = 7.0
    weekday_base = g.op("Add", days, g.const(3.0))  # 1970-01-01 was a Thursday (3)
    dayofweek = g.op(
        "Sub", weekday_base, g.op("Mul", g.floordiv(weekday_base, seven), g.const(seven))
    )
    return {
        "year": year,
        "month": month,
        "day": day,
        "dayofweek": dayofweek,
        "dayofyear": dayofyear,
    }


def _datetime_convert(scope: Any, operator: Any, container: Any) -> None:
    step = operator.raw_operator
    g = _Graph(scope, container)
    unknown = [p for p in step.parts if p not in DATETIME_PARTS]
    if unknown:
        raise NotImplementedError(f"DatetimeFeatures parts {unknown} have no ONNX converter")
    columns: list[str] = []
    gaps: list[str] = []
    for _, x in g.columns(operator.inputs):
        missing = g.op("IsNaN", x)
        safe = g.op("Where", missing, g.const([[0.0]]), x)  # computed, then replaced
        parts = calendar_parts(g, safe)
        columns.extend(parts[p] for p in step.parts)
        gaps.extend([missing] * len(step.parts))
    stacked = g.op("Concat", *columns, axis=1)
    mask = g.op("Concat", *gaps, axis=1)
    fill = g.const(np.asarray(step.fill_values_, dtype=np.float64).reshape(1, -1))
    out = operator.outputs[0].full_name
    container.add_node(
        "Where", [mask, fill, stacked], [out], name=scope.get_unique_operator_name("FillDates")
    )


# --- OneHotEncoder and OrdinalEncoder: lookup tables read off the fitted encoder ---


def _block_widths(step: Any) -> list[int]:
    if isinstance(step, OneHotEncoder):
        return [int(w) for w in step._n_features_outs]
    return [1] * len(step.categories_)


def _dense(x: Any) -> np.ndarray:
    return np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float64)


def encoder_table(step: Any, column: int) -> tuple[list[Any], np.ndarray]:
    """Return ``(keys, table)`` of input column ``column`` of a fitted encoder.

    ``table`` has one row per key, then one for a value never seen, then one for a missing
    value: the encoder's own output block for that column on each. A key that is itself a
    missing value (scikit-learn's NaN category) is left out: the missing row stands for it.
    """
    import warnings

    cats = list(step.categories_[column])
    keys = [c for c in cats if not is_missing(c)]
    anchors = [next((c for c in cs if not is_missing(c)), cs[0]) for cs in step.categories_]
    text = _is_text(cats)
    probes = [*keys, UNKNOWN_PROBE if text else _free_number(keys), np.nan]
    rows = np.empty((len(probes), len(anchors)), dtype=object)
    rows[:] = anchors
    rows[:, column] = probes
    widths = _block_widths(step)
    start = sum(widths[:column])
    table = np.zeros((len(probes), widths[column]), dtype=np.float64)
    numeric = all(not _is_text(list(cs)) for cs in step.categories_)
    for i in range(len(probes)):
        row = rows[i : i + 1].astype(np.float64) if numeric else rows[i : i + 1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                out = _dense(step.transform(row))
            except ValueError:  # handle_unknown="error": the pipeline itself raises there
                out = np.full((1, sum(widths)), np.nan)
        table[i] = out[0, start : start + widths[column]]
    return keys, table


def _is_text(cats: list[Any]) -> bool:
    return any(isinstance(c, str) for c in cats)


def _free_number(keys: list[Any]) -> float:
    used = {float(k) for k in keys}
    candidate = -987654321.5
    while candidate in used:
        candidate -= 1.0
    return candidate


def _encoder_shape(operator: Any) -> None:
    step = operator.raw_operator
    n = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = DoubleTensorType([n, sum(_block_widths(step))])


def _encoder_convert(scope: Any, operator: Any, container: Any) -> None:
    step = operator.raw_operator
    g = _Graph(scope, container)
    blocks = []
    for column, (var, x) in enumerate(g.columns(operator.inputs)):
        keys, table = encoder_table(step, column)
        unknown, missing = len(keys), len(keys) + 1
        if isinstance(var.type, StringTensorType):
            if not all(isinstance(k, str) for k in keys):
                raise NotImplementedError(
                    f"{type(step).__name__} column {column} mixes strings and numbers "
                    "in its categories; the ONNX path takes one or the other"
                )
            index = g.op(
                "LabelEncoder",
                x,
                keys_strings=[*keys, MISSING_STRING],
                values_int64s=[*range(len(keys)), missing],
                default_int64=unknown,
                op_domain="ai.onnx.ml",
                op_version=2,
            )
        else:
            # one-hot match against each key, then 0.5 for "none": ArgMax picks the match
            hits = g.op("Equal", x, g.const(np.asarray(keys, dtype=np.float64).reshape(1, -1)))
            scores = g.op("Cast", hits, to=TensorProto.DOUBLE)
            n_rows = g.op("Shape", x, end=1)
            half = g.op(
                "Expand",
                g.const([[0.5]]),
                g.op("Concat", n_rows, g.const([1], TensorProto.INT64), axis=0),
            )
            index = g.op("ArgMax", g.op("Concat", scores, half, axis=1), axis=1, keepdims=1)
            missing_index = g.op(
                "Expand", g.const([[missing]], TensorProto.INT64), g.op("Shape", index)
            )
            index = g.op("Where", g.op("IsNaN", x), missing_index, index)
        flat = g.op("Reshape", index, g.const([-1], TensorProto.INT64))
        blocks.append(g.op("Gather", g.const(table), flat, axis=0))
    out = operator.outputs[0].full_name
    name = scope.get_unique_operator_name("Encoded")
    if len(blocks) == 1:
        container.add_node("Identity", blocks, [out], name=name)
    else:
        container.add_node("Concat", blocks, [out], axis=1, name=name)


def fill_plan(step: Any) -> tuple[list[Any], list[int], list[int]]:
    """Return ``(fill, keep, indicator)`` of a fitted ``SimpleImputer`` or ``MissingIndicator``.

    Fill value per input column, columns kept, and those followed by a 0/1 "was missing" column;
    NotImplementedError for a case the ONNX path does not take.
    """
    if not is_missing(step.missing_values):
        raise NotImplementedError(
            f"{type(step).__name__} with missing_values={step.missing_values!r}: the ONNX "
            "path takes NaN as the missing value only"
        )
    if isinstance(step, MissingIndicator):
        return [0.0] * step.n_features_in_, [], [int(i) for i in step.features_]
    stats = np.asarray(step.statistics_)
    empty = [is_missing(s) for s in stats.tolist()]
    indicator = [] if step.indicator_ is None else [int(i) for i in step.indicator_.features_]
    if stats.dtype.kind in "fiu":
        fill: list[Any] = np.where(empty, 0.0, stats.astype(np.float64)).tolist()
    elif any(empty) or indicator:
        raise NotImplementedError(
            "a string SimpleImputer with a column empty in training or a missing-value "
            "indicator: the ONNX path does not take it"
        )
    else:
        fill = [str(s) for s in stats.tolist()]
    return fill, [i for i, e in enumerate(empty) if step.keep_empty_features or not e], indicator


def _imputer_shape(operator: Any) -> None:
    kinds = {type(var.type) for var in operator.inputs}
    if kinds not in ({DoubleTensorType}, {StringTensorType}):
        raise TypeError(
            f"{type(operator.raw_operator).__name__} takes all-double or all-string inputs in "
            f"ONNX, got {sorted(k.__name__ for k in kinds)}; feed numbers as doubles"
        )
    _, keep, indicator = fill_plan(operator.raw_operator)
    out = DoubleTensorType if kinds == {DoubleTensorType} or not keep else StringTensorType
    n = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = out([n, len(keep) + len(indicator)])


def _imputer_convert(scope: Any, operator: Any, container: Any) -> None:
    fill, keep, indicator = fill_plan(operator.raw_operator)
    strings = isinstance(operator.inputs[0].type, StringTensorType)
    x = concatenate_variables(scope, operator.inputs, container)
    name = scope.get_unique_variable_name
    mask, values, filled = name("missing_mask"), name("fill_values"), name("filled")
    if strings:
        found = name("missing_found")
        container.add_node(
            "LabelEncoder",
            [x],
            [found],
            keys_strings=[MISSING_STRING],
            values_int64s=[1],
            default_int64=0,
            op_domain="ai.onnx.ml",
            op_version=2,
            name=name("label_encoder"),
        )
        container.add_node("Cast", [found], [mask], to=TensorProto.BOOL, name=name("cast"))
        container.add_initializer(values, TensorProto.STRING, [len(fill)], fill)
    else:
        container.add_node("IsNaN", [x], [mask], name=name("isnan"))
        container.add_initializer(values, TensorProto.DOUBLE, [len(fill)], fill)
    parts = []
    if keep:
        container.add_node("Where", [mask, values, x], [filled], name=name("where"))
        if len(keep) == len(fill):
            parts.append(filled)
        else:
            idx, kept = name("keep_idx"), name("kept")
            container.add_initializer(idx, TensorProto.INT64, [len(keep)], keep)
            container.add_node("Gather", [filled, idx], [kept], axis=1, name=name("gather"))
            parts.append(kept)
    if indicator:
        idx, picked, flags = name("ind_idx"), name("ind_mask"), name("ind_flags")
        container.add_initializer(idx, TensorProto.INT64, [len(indicator)], indicator)
        container.add_node("Gather", [mask, idx], [picked], axis=1, name=name("gather"))
        container.add_node("Cast", [picked], [flags], to=TensorProto.DOUBLE, name=name("cast"))
        parts.append(flags)
    out = operator.outputs[0].full_name
    if len(parts) == 1:
        container.add_node("Identity", parts, [out], name=name("identity"))
    else:
        container.add_node("Concat", parts, [out], axis=1, name=name("concat"))


DOUBLE_TREE_ATTRIBUTES = ("nodes_values", "target_weights", "class_weights", "base_values")
EXACT_DOUBLE_TREES = "AmlkitDoubleInputs_"  # node-name prefix: trees that compare float64 inputs


class _TreeContainer:
    """A view of a skl2onnx container for tree converters: flags as ints, nodes tagged.

    skl2onnx 1.20 passes onnx missing-value flags mixing ``False`` and numpy ints, which onnx
    refuses. ``tag`` prefixes the tree nodes' names: HistGradientBoosting compares float64
    inputs with its thresholds, the other ensembles ``float32(x)`` (see :mod:`.onnx`).
    """

    def __init__(self, container: Any, tag: str, model: Any = None) -> None:
        self._container, self._tag, self._model = container, tag, model

    def __getattr__(self, name: str) -> Any:
        return getattr(self._container, name)

    def add_node(self, op_type: str, *args: Any, **attrs: Any) -> Any:
        if TREE_FLAGS in attrs:
            attrs[TREE_FLAGS] = [int(flag) for flag in attrs[TREE_FLAGS]]
        if op_type.startswith("TreeEnsemble"):
            if self._tag:
                attrs["name"] = self._tag + str(attrs.get("name", op_type))
            for key in DOUBLE_TREE_ATTRIBUTES:  # ai.onnx.ml 3: thresholds and leaves as doubles
                if key in attrs:
                    values = np.asarray(attrs.pop(key), dtype=np.float64).ravel()
                    attrs[f"{key}_as_tensor"] = numpy_helper.from_array(values)
            attrs["op_version"] = 3
            if "nodes_treeids" in attrs:  # skl2onnx leaves a forest's flags at 0
                flags = _missing_go_left(
                    self._model, attrs["nodes_treeids"], attrs["nodes_nodeids"]
                )
                if flags is not None:
                    attrs[TREE_FLAGS] = flags
        return self._container.add_node(op_type, *args, **attrs)


def _missing_go_left(model: Any, tree_ids: Any, node_ids: Any) -> list[int] | None:
    """Where a forest sends a missing value at each node (1: the "true", left branch).

    scikit-learn's forests send NaN to ``missing_go_to_left`` (learnt, or the larger child when
    training had no gaps); None for other models, or when the ids cannot be matched.
    """
    trees = getattr(model, "estimators_", None)
    if trees is None or not isinstance(trees, list):
        return None
    try:
        return [
            int(trees[int(t)].tree_.missing_go_to_left[int(n)])
            for t, n in zip(tree_ids, node_ids, strict=True)
        ]
    except (AttributeError, IndexError):
        return None


def _double_trees(convert: Callable[..., None], tag: str = "") -> Callable[..., None]:
    """Run a skl2onnx tree converter with double thresholds and leaf values (ai.onnx.ml 3)."""

    def run(scope: Any, operator: Any, container: Any) -> None:
        tree_container = _TreeContainer(container, tag, operator.raw_operator)
        convert(scope, operator, tree_container, op_version=3)

    return run


# --- FunctionTransformer of a NumPy function ONNX has ---

FUNCTIONS: dict[Any, tuple[str, ...]] = {  # numpy function: ONNX ops applied in turn
    np.log: ("Log",),
    np.log1p: ("Add1", "Log"),
    np.exp: ("Exp",),
    np.expm1: ("Exp", "Sub1"),
    np.sqrt: ("Sqrt",),
    np.abs: ("Abs",),
    np.absolute: ("Abs",),
}


def function_ops(step: Any) -> tuple[str, ...]:
    """Return the ONNX ops of a FunctionTransformer; NotImplementedError naming what is not."""
    if step.func is None:
        return ()
    ops = FUNCTIONS.get(step.func)
    name = getattr(step.func, "__name__", repr(step.func))
    if ops is None or step.kw_args:
        known = sorted({f"numpy.{f.__name__}" for f in FUNCTIONS})
        raise NotImplementedError(
            f"func={name!r}{' with kw_args' if step.kw_args else ''} has no ONNX form; the "
            f"ONNX path takes func=None or one of {known} without kw_args"
        )
    return ops


def _function_shape(operator: Any) -> None:
    function_ops(operator.raw_operator)
    kinds = {type(var.type) for var in operator.inputs}
    if kinds != {DoubleTensorType}:
        raise TypeError("FunctionTransformer takes numbers (doubles) in the ONNX path")
    n = operator.inputs[0].get_first_dimension()
    widths = [var.get_second_dimension() for var in operator.inputs]
    total = sum(widths) if all(isinstance(w, int) for w in widths) else None
    operator.outputs[0].type = DoubleTensorType([n, total])


def _function_convert(scope: Any, operator: Any, container: Any) -> None:
    g = _Graph(scope, container)
    x = concatenate_variables(scope, operator.inputs, container)
    for op in function_ops(operator.raw_operator):
        if op == "Add1":
            x = g.op("Add", x, g.const(1.0))
        elif op == "Sub1":
            x = g.op("Sub", x, g.const(1.0))
        else:
            x = g.op(op, x)
    out = operator.outputs[0].full_name
    container.add_node("Identity", [x], [out], name=scope.get_unique_operator_name("Function"))


def overrides() -> dict[str, dict[type, Callable[..., None]]]:
    """Return the ``convert_sklearn`` keyword arguments that use these converters."""
    from skl2onnx.operator_converters.gradient_boosting import (
        convert_sklearn_gradient_boosting_classifier,
        convert_sklearn_gradient_boosting_regressor,
    )
    from skl2onnx.operator_converters.random_forest import (
        convert_sklearn_random_forest_classifier,
        convert_sklearn_random_forest_regressor_converter,
    )
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        ExtraTreesRegressor,
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )

    forest_clf, forest_reg = (
        convert_sklearn_random_forest_classifier,
        convert_sklearn_random_forest_regressor_converter,
    )
    trees = {
        RandomForestClassifier: _double_trees(forest_clf),
        ExtraTreesClassifier: _double_trees(forest_clf),
        RandomForestRegressor: _double_trees(forest_reg),
        ExtraTreesRegressor: _double_trees(forest_reg),
        GradientBoostingClassifier: _double_trees(convert_sklearn_gradient_boosting_classifier),
        GradientBoostingRegressor: _double_trees(convert_sklearn_gradient_boosting_regressor),
        HistGradientBoostingClassifier: _double_trees(forest_clf, EXACT_DOUBLE_TREES),
        HistGradientBoostingRegressor: _double_trees(forest_reg, EXACT_DOUBLE_TREES),
    }
    imputers = dict.fromkeys((SimpleImputer, MissingIndicator), _imputer_convert)
    encoders = dict.fromkeys((OneHotEncoder, OrdinalEncoder), _encoder_convert)
    functions = {FunctionTransformer: _function_convert}
    return {
        "custom_conversion_functions": imputers | encoders | trees | functions,
        "custom_shape_calculators": dict.fromkeys((SimpleImputer, MissingIndicator), _imputer_shape)
        | dict.fromkeys((OneHotEncoder, OrdinalEncoder), _encoder_shape)
        | {FunctionTransformer: _function_shape},
    }
