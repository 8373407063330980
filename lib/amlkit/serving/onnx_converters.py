"""skl2onnx converters for the amlkit steps of notebook 04's preprocessing.

Everything goes through skl2onnx's public extension points; nothing of skl2onnx is patched.

- :class:`~amlkit.training.transformers.CategoryNormalizer` is amlkit's own class, so it is
  registered the documented way for a new model (``update_registered_converter`` with a
  shape calculator, a converter and a parser that declares a string output, where skl2onnx
  would guess float). It converts to an ``Identity``: the runtime feeds strings already
  normalised the same way (:mod:`amlkit.serving.onnx_inputs`).
- ``SimpleImputer`` and ``MissingIndicator``: skl2onnx turns a numeric imputer into the
  ``ai.onnx.ml`` ``Imputer``, which has no double kernel in onnxruntime and no missing-value
  indicator, and refuses a string imputer whose missing value is NaN. The converter here
  uses standard ops: ``IsNaN`` (numbers) or a ``LabelEncoder`` match on the missing-string
  marker (strings) for the mask, ``Where`` for the fill values, ``Gather`` for the indicator
  columns and for columns dropped because they were empty in training, ``Cast``, ``Concat``.
- ``HistGradientBoosting*``: skl2onnx 1.20 hands onnx a list of missing-value flags that
  mixes ``False`` (leaves) with numpy integers (branches), which onnx refuses ("Expected an
  int, got a boolean"). skl2onnx's own converter runs with a container that passes the
  flags as plain ints.

The last two replace skl2onnx's converters of scikit-learn classes for one conversion only
(``convert_sklearn``'s ``custom_conversion_functions`` and ``custom_shape_calculators``,
see :func:`overrides`), so other conversions in the same process are not affected.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from onnx import TensorProto
from skl2onnx import get_model_alias, update_registered_converter
from skl2onnx.common.data_types import DoubleTensorType, StringTensorType
from skl2onnx.operator_converters.common import concatenate_variables
from sklearn.impute import MissingIndicator, SimpleImputer

from amlkit.training.transformers import CategoryNormalizer

MISSING_STRING = "\u2400amlkit-missing\u2400"
"""What the runtime feeds for a missing string (a string tensor cannot hold NaN)."""
TREE_FLAGS = "nodes_missing_value_tracks_true"


# --- CategoryNormalizer ---


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
    container.add_node(
        "Identity",
        [x],
        [operator.outputs[0].full_name],
        name=scope.get_unique_operator_name("CategoryNormalizer"),
    )


def register() -> None:
    """Register the CategoryNormalizer converter with skl2onnx (idempotent)."""
    update_registered_converter(
        CategoryNormalizer,
        "AmlkitCategoryNormalizer",
        _normalizer_shape,
        _normalizer_convert,
        parser=_normalizer_parser,
    )


# --- SimpleImputer and MissingIndicator ---


def _is_nan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def fill_plan(step: Any) -> tuple[list[Any], list[int], list[int]]:
    """Return what a fitted imputer or indicator does, column by column.

    Args:
        step: a fitted ``SimpleImputer`` (NaN as its missing value) or ``MissingIndicator``.

    Returns:
        ``(fill, keep, indicator)``: the fill value per input column, the input columns kept
        in the output (``SimpleImputer`` drops columns that were empty in training), and the
        input columns that get a 0/1 "was missing" column after them, in order.

    Raises:
        NotImplementedError: a case the ONNX path does not take (names it); the service
            then serves the pickled pipeline.
    """
    if not _is_nan(step.missing_values):
        raise NotImplementedError(
            f"{type(step).__name__} with missing_values={step.missing_values!r}: the ONNX "
            "path takes NaN as the missing value only"
        )
    if isinstance(step, MissingIndicator):
        n = step.n_features_in_
        return [0.0] * n, [], [int(i) for i in step.features_]
    stats = np.asarray(step.statistics_)
    empty = [_is_nan(s) for s in stats.tolist()]
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
    keep = (
        list(range(len(fill)))
        if step.keep_empty_features
        else [i for i, e in enumerate(empty) if not e]
    )
    return fill, keep, indicator


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


# --- HistGradientBoosting ---


class _IntTreeFlags:
    """A view of a skl2onnx container whose ``add_node`` passes the tree flags as ints."""

    def __init__(self, container: Any) -> None:
        self._container = container

    def __getattr__(self, name: str) -> Any:
        return getattr(self._container, name)

    def add_node(self, *args: Any, **attrs: Any) -> Any:
        if TREE_FLAGS in attrs:
            attrs[TREE_FLAGS] = [int(flag) for flag in attrs[TREE_FLAGS]]
        return self._container.add_node(*args, **attrs)


def _with_int_tree_flags(convert: Callable[..., None]) -> Callable[..., None]:
    def run(scope: Any, operator: Any, container: Any) -> None:
        convert(scope, operator, _IntTreeFlags(container))

    return run


def overrides() -> dict[str, dict[type, Callable[..., None]]]:
    """Return the ``convert_sklearn`` keyword arguments that use these converters.

    Returns:
        ``{"custom_conversion_functions": ..., "custom_shape_calculators": ...}`` for
        ``SimpleImputer``, ``MissingIndicator`` and the HistGradientBoosting estimators.
    """
    from skl2onnx.operator_converters.random_forest import (
        convert_sklearn_random_forest_classifier,
        convert_sklearn_random_forest_regressor_converter,
    )
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    return {
        "custom_conversion_functions": {
            SimpleImputer: _imputer_convert,
            MissingIndicator: _imputer_convert,
            HistGradientBoostingClassifier: _with_int_tree_flags(
                convert_sklearn_random_forest_classifier
            ),
            HistGradientBoostingRegressor: _with_int_tree_flags(
                convert_sklearn_random_forest_regressor_converter
            ),
        },
        "custom_shape_calculators": {
            SimpleImputer: _imputer_shape,
            MissingIndicator: _imputer_shape,
        },
    }
