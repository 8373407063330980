"""skl2onnx converters for the steps of :func:`amlkit.training.transformers.build_preprocessor`.

skl2onnx knows scikit-learn's own classes, not amlkit's, and its numeric ``SimpleImputer``
becomes the ``ai.onnx.ml`` ``Imputer`` node, which has no double kernel in onnxruntime and
no missing-value indicator. This module adds what the real pipelines need:

- :class:`amlkit.training.transformers.CategoryNormalizer` converts to an ``Identity``:
  the values are
  normalised the same way before the ONNX call (:func:`normalize_category`, applied by the
  service's runtime), so the graph only sees clean strings.
- Numeric ``SimpleImputer`` (``missing_values`` NaN, with or without ``add_indicator``) and
  ``MissingIndicator`` are swapped, in a copy of the pipeline, for :class:`NanImputer`, whose
  converter uses standard double ops: ``IsNaN``, ``Where`` for the fill values, ``Gather``
  for the indicator columns (and for columns dropped because they were empty in training),
  ``Cast`` and ``Concat``.

:func:`register` installs the converters once; :mod:`amlkit.serving.onnx` calls it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from amlkit.training.transformers import normalize_value

_REGISTERED: list[bool] = []


def normalize_category(value: Any, boolean: bool) -> str | None:
    """Normalise one categorical value as ``CategoryNormalizer`` does; None when missing.

    Args:
        value: a request or file value (string, number, bool or missing).
        boolean: the column is a true/false flag (``boolean`` kind).

    Returns:
        The clean string (stripped; ``3.0`` -> ``"3"``; booleans ``"true"``/``"false"``),
        or None for a missing value.
    """
    text = normalize_value(value, boolean)
    return text if isinstance(text, str) else None


class NanImputer(TransformerMixin, BaseEstimator):
    """Fill NaN with per-column values and append NaN indicators: the ONNX form of a step.

    Made by :func:`from_step` from a fitted ``SimpleImputer`` or ``MissingIndicator``; it
    reproduces that step's ``transform`` on float input (used to test the swap).

    Args:
        fill: the fill value per input column (ignored where ``keep`` is False).
        keep: which input columns stay in the output (empty ones are dropped, as
            ``SimpleImputer`` does); all False for a bare indicator.
        indicator: input column indices that get a 0/1 "was missing" column, in order.
    """

    def __init__(self, *, fill: Any = (), keep: Any = (), indicator: Any = ()) -> None:
        self.fill = fill
        self.keep = keep
        self.indicator = indicator

    def fit(self, X: Any, y: Any = None) -> NanImputer:
        """Record the input width (the values come from the step it replaces).

        Args:
            X: the input columns.
            y: ignored.

        Returns:
            self.
        """
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Return the filled kept columns followed by the indicator columns."""
        x = np.asarray(X, dtype=np.float64)
        mask = np.isnan(x)
        filled = np.where(mask, np.asarray(self.fill, dtype=np.float64), x)
        parts = [filled[:, np.asarray(self.keep, dtype=bool)]]
        if len(self.indicator):
            parts.append(mask[:, list(self.indicator)].astype(np.float64))
        return np.hstack(parts)

    @classmethod
    def from_step(cls, step: Any) -> NanImputer | None:
        """Return the replacement of a fitted numeric imputer or indicator, else None.

        Args:
            step: a fitted ``SimpleImputer`` or ``MissingIndicator``.

        Returns:
            The equivalent :class:`NanImputer` (fitted), or None when ``step`` is not a
            NaN-based numeric imputer/indicator (string imputers are left to skl2onnx).
        """
        from sklearn.impute import MissingIndicator, SimpleImputer

        if not _is_nan(getattr(step, "missing_values", None)):
            return None
        if isinstance(step, SimpleImputer):
            stats = np.asarray(step.statistics_)
            if stats.dtype.kind not in "fiu":
                return None
            stats = stats.astype(np.float64)
            keep = np.ones(len(stats), dtype=bool) if step.keep_empty_features else ~np.isnan(stats)
            fill = np.where(np.isnan(stats), 0.0, stats)
            found = step.indicator_.features_ if step.indicator_ is not None else []
        elif isinstance(step, MissingIndicator):
            n = step.n_features_in_
            fill, keep, found = np.zeros(n), np.zeros(n, dtype=bool), step.features_
        else:
            return None
        out = cls(fill=fill.tolist(), keep=keep.tolist(), indicator=[int(i) for i in found])
        out.n_features_in_ = len(fill)
        return out


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _nan_imputer_shape(operator: Any) -> None:
    from skl2onnx.common.data_types import DoubleTensorType

    op = operator.raw_operator
    for var in operator.inputs:
        if not isinstance(var.type, DoubleTensorType):
            raise TypeError(
                f"NanImputer takes double inputs, got {type(var.type).__name__} for "
                f"{var.onnx_name}; feed numeric columns as doubles"
            )
    width = int(sum(op.keep)) + len(op.indicator)
    n = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = DoubleTensorType([n, width])


def _nan_imputer_convert(scope: Any, operator: Any, container: Any) -> None:
    from onnx import TensorProto
    from skl2onnx.operator_converters.common import concatenate_variables

    op = operator.raw_operator
    x = concatenate_variables(scope, operator.inputs, container)
    name = scope.get_unique_variable_name
    mask, fill, filled = name("nan_mask"), name("nan_fill"), name("nan_filled")
    container.add_node("IsNaN", [x], [mask], name=scope.get_unique_operator_name("IsNaN"))
    container.add_initializer(fill, TensorProto.DOUBLE, [len(op.fill)], list(op.fill))
    container.add_node("Where", [mask, fill, x], [filled], name=name("where"))
    parts = []
    keep = [i for i, k in enumerate(op.keep) if k]
    if len(keep) == len(op.keep):
        parts.append(filled)
    elif keep:
        idx, kept = name("keep_idx"), name("kept")
        container.add_initializer(idx, TensorProto.INT64, [len(keep)], keep)
        container.add_node("Gather", [filled, idx], [kept], axis=1, name=name("gather"))
        parts.append(kept)
    if len(op.indicator):
        idx, picked, flags = name("ind_idx"), name("ind_mask"), name("ind_flags")
        container.add_initializer(idx, TensorProto.INT64, [len(op.indicator)], list(op.indicator))
        container.add_node("Gather", [mask, idx], [picked], axis=1, name=name("gather"))
        container.add_node("Cast", [picked], [flags], to=TensorProto.DOUBLE, name=name("cast"))
        parts.append(flags)
    out = operator.outputs[0].full_name
    if len(parts) == 1:
        container.add_node("Identity", parts, [out], name=name("identity"))
    else:
        container.add_node("Concat", parts, [out], axis=1, name=name("concat"))


def _normalizer_shape(operator: Any) -> None:
    from skl2onnx.common.data_types import StringTensorType

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
    """Declare a string output (skl2onnx would guess float for an unknown transformer)."""
    from skl2onnx import get_model_alias
    from skl2onnx.common.data_types import StringTensorType

    operator = scope.declare_local_operator(get_model_alias(type(model)), model)
    operator.inputs = inputs
    operator.outputs.append(scope.declare_local_variable("normalized", StringTensorType()))
    return operator.outputs


def _normalizer_convert(scope: Any, operator: Any, container: Any) -> None:
    from skl2onnx.operator_converters.common import concatenate_variables

    x = concatenate_variables(scope, operator.inputs, container)
    container.add_node(
        "Identity",
        [x],
        [operator.outputs[0].full_name],
        name=scope.get_unique_operator_name("CategoryNormalizer"),
    )


@contextmanager
def int_missing_flags() -> Iterator[None]:
    """Work around skl2onnx 1.20 HistGradientBoosting conversion under protobuf 5+.

    skl2onnx fills ``nodes_missing_value_tracks_true`` with ``False`` for leaves and numpy
    integers for branches; onnx's ``make_attribute`` then refuses the list ("Expected an
    int, got a boolean"). While converting, the flag is passed on as a plain int.
    """
    from skl2onnx.common import tree_ensemble

    original = tree_ensemble.add_node

    def add_node(*args: Any, nodes_missing_value_tracks_true: Any = 0, **kwargs: Any) -> Any:
        flag = int(nodes_missing_value_tracks_true)
        return original(*args, nodes_missing_value_tracks_true=flag, **kwargs)

    tree_ensemble.add_node = add_node
    try:
        yield
    finally:
        tree_ensemble.add_node = original


def register() -> None:
    """Register the converters with skl2onnx (once per process)."""
    if _REGISTERED:
        return
    from skl2onnx import update_registered_converter

    from amlkit.training.transformers import CategoryNormalizer

    update_registered_converter(
        CategoryNormalizer,
        "AmlkitCategoryNormalizer",
        _normalizer_shape,
        _normalizer_convert,
        parser=_normalizer_parser,
    )
    update_registered_converter(
        NanImputer, "AmlkitNanImputer", _nan_imputer_shape, _nan_imputer_convert
    )
    _REGISTERED.append(True)
