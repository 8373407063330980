"""skl2onnx converters for the steps of notebook 04's preprocessing (public extension points).

- CategoryNormalizer: registered as a new model, converted to an ``Identity``; the runtime
  feeds strings already normalised (:mod:`.onnx_inputs`).
- SimpleImputer, MissingIndicator: skl2onnx's ``Imputer`` has no double kernel in
  onnxruntime, no indicator and refuses NaN string imputers; these use standard ops.
- HistGradientBoosting: skl2onnx 1.20 passes onnx missing-value flags mixing ``False`` and
  numpy ints, which onnx refuses; its converter runs with a container passing plain ints.

The last two apply to one ``convert_sklearn`` call only (:func:`overrides`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from onnx import TensorProto
from skl2onnx import get_model_alias, update_registered_converter
from skl2onnx.common.data_types import DoubleTensorType, StringTensorType
from skl2onnx.operator_converters.common import concatenate_variables
from sklearn.impute import MissingIndicator, SimpleImputer

from amlkit.serving.onnx_inputs import is_missing
from amlkit.training.transformers import CategoryNormalizer

MISSING_STRING = "\u2400amlkit-missing\u2400"  # fed for a missing string
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
    """Register the CategoryNormalizer converter with skl2onnx (idempotent)."""
    update_registered_converter(
        CategoryNormalizer,
        "AmlkitCategoryNormalizer",
        _normalizer_shape,
        _normalizer_convert,
        parser=_normalizer_parser,
    )


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


def _int_tree_flags(convert: Callable[..., None]) -> Callable[..., None]:
    def run(scope: Any, operator: Any, container: Any) -> None:
        convert(scope, operator, _IntTreeFlags(container))

    return run


def overrides() -> dict[str, dict[type, Callable[..., None]]]:
    """Return the ``convert_sklearn`` keyword arguments that use these converters."""
    from skl2onnx.operator_converters.random_forest import (
        convert_sklearn_random_forest_classifier,
        convert_sklearn_random_forest_regressor_converter,
    )
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    hgb = {
        HistGradientBoostingClassifier: convert_sklearn_random_forest_classifier,
        HistGradientBoostingRegressor: convert_sklearn_random_forest_regressor_converter,
    }
    imputers = dict.fromkeys((SimpleImputer, MissingIndicator), _imputer_convert)
    return {
        "custom_conversion_functions": imputers | {k: _int_tree_flags(f) for k, f in hgb.items()},
        "custom_shape_calculators": dict.fromkeys(
            (SimpleImputer, MissingIndicator), _imputer_shape
        ),
    }
