"""The scikit-learn transformers that travel inside every trained model.

04's ``ColumnTransformer`` uses them, so the service imports this module to unpickle models
and the ONNX path converts them (:mod:`amlkit.serving.onnx_converters`). They accept what a
request carries: datetimes as ISO strings, categories as numbers or booleans.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from amlkit import kinds

DATETIME_PARTS = ("year", "month", "day", "dayofweek", "dayofyear")


def _as_frame(X: Any, columns: Sequence[str] | np.ndarray | None = None) -> pd.DataFrame:
    """Return ``X`` as a DataFrame (arrays get ``columns`` or ``x0, x1, ...``)."""
    if isinstance(X, pd.DataFrame):
        return X
    array = np.asarray(X, dtype=object)
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    names = list(columns) if columns is not None else [f"x{i}" for i in range(array.shape[1])]
    return pd.DataFrame(array, columns=names)


def _fitted_frame(transformer: Any, X: Any) -> pd.DataFrame:
    """Return ``X`` as a frame with the fitted columns; refuse another number of columns."""
    check_is_fitted(transformer, "n_features_in_")
    expected = transformer.feature_names_in_
    frame = _as_frame(X, expected)
    if frame.shape[1] != len(expected):
        raise ValueError(
            f"{type(transformer).__name__} was fitted on {len(expected)} columns "
            f"{list(expected)} but got {frame.shape[1]} columns {list(frame.columns)}; pass "
            "the same columns as in fit."
        )
    return frame


class DatetimeFeatures(TransformerMixin, BaseEstimator):
    """Turn datetime columns into calendar parts ``<column>_<part>`` (:data:`DATETIME_PARTS`).

    Input may be ``datetime64``, ``datetime`` objects or ISO 8601 strings (time zones become
    UTC); missing or unparsable values get, per output column, the median seen in ``fit``.
    """

    def __init__(self, *, parts: Sequence[str] = DATETIME_PARTS) -> None:
        self.parts = parts

    @staticmethod
    def _parse(values: pd.Series) -> pd.Series:
        if isinstance(values.dtype, pd.DatetimeTZDtype):
            return values.dt.tz_convert("UTC").dt.tz_localize(None)
        if pd.api.types.is_datetime64_any_dtype(values.dtype):
            return values.astype("datetime64[ns]")
        parsed = pd.to_datetime(values, errors="coerce", utc=True, format="ISO8601")
        return parsed.dt.tz_localize(None)

    def _extract(self, frame: pd.DataFrame) -> np.ndarray:
        out = np.empty((len(frame), len(frame.columns) * len(self.parts)), dtype=np.float64)
        j = 0
        for column in frame.columns:
            stamps = self._parse(frame[column])
            for part in self.parts:
                values = getattr(stamps.dt, "day_of_week" if part == "dayofweek" else part)
                out[:, j] = values.to_numpy(dtype=np.float64, na_value=np.nan)
                j += 1
        return out

    def fit(self, X: Any, y: Any = None) -> DatetimeFeatures:
        """Learn the column names and the per-part medians used to fill missing dates.

        Raises:
            ValueError: ``parts`` is empty or unknown, or a column has values that are not dates.
        """
        unknown = [p for p in self.parts if p not in DATETIME_PARTS]
        if not self.parts or unknown:
            raise ValueError(
                f"DatetimeFeatures parts must be a non-empty subset of {DATETIME_PARTS}; "
                f"got {list(self.parts)!r}."
            )
        frame = _as_frame(X)
        for column in frame.columns:
            raw = frame[column]
            bad = raw.notna() & self._parse(raw).isna()
            if bad.any():
                first = raw[bad].iloc[0]
                raise ValueError(
                    f"datetime column '{column}' has {int(bad.sum())} values that are not "
                    f"dates (first: {first!r}); use ISO 8601 strings or datetime64 values, or "
                    "declare the column with another kind."
                )
        self.feature_names_in_ = np.asarray([str(c) for c in frame.columns], dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        parts = self._extract(frame)
        with np.errstate(all="ignore"):
            medians = np.nanmedian(parts, axis=0) if len(parts) else np.full(parts.shape[1], 0.0)
        self.fill_values_ = np.where(np.isnan(medians), 0.0, np.round(medians))
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Return the calendar parts, shape ``(n_rows, n_columns * len(parts))``, gaps filled."""
        out = self._extract(_fitted_frame(self, X))
        missing = np.isnan(out)
        if missing.any():
            out[missing] = np.broadcast_to(self.fill_values_, out.shape)[missing]
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Return ``<column>_<part>`` for every input column and part."""
        check_is_fitted(self, "fill_values_")
        columns = self.feature_names_in_ if input_features is None else input_features
        return np.asarray([f"{c}_{p}" for c in columns for p in self.parts], dtype=object)


def normalize_value(value: Any, boolean: bool) -> Any:
    """Return ``value`` as a clean string, or NaN when missing."""
    if value is None or (isinstance(value, float | np.floating) and np.isnan(value)):
        return np.nan
    if value is pd.NA or value is pd.NaT:
        return np.nan
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float | np.floating) and float(value).is_integer():
        value = int(value)
    text = str(value).strip()
    if boolean:
        low = text.lower()
        if low in kinds.TRUE_TOKENS:
            return "true"
        if low in kinds.FALSE_TOKENS:
            return "false"
    return text


class CategoryNormalizer(TransformerMixin, BaseEstimator):
    """Cast categorical values to strings (:func:`normalize_value`) so training and requests agree.

    ``3.0``, ``3`` and ``"3"`` give ``"3"``, booleans ``"true"``/``"false"``, missing stays NaN;
    with ``boolean=True``, ``yes``/``1``/``no``/``0``... also become ``"true"``/``"false"``.
    """

    def __init__(self, *, boolean: bool = False) -> None:
        self.boolean = boolean

    def fit(self, X: Any, y: Any = None) -> CategoryNormalizer:
        """Record the input columns."""
        if not isinstance(self.boolean, bool):
            raise ValueError(
                f"CategoryNormalizer boolean must be True or False, got {self.boolean!r}"
            )
        frame = _as_frame(X)
        self.feature_names_in_ = np.asarray([str(c) for c in frame.columns], dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Return the values as an object array of strings, missing values as NaN."""
        frame = _fitted_frame(self, X)
        out = np.empty(frame.shape, dtype=object)
        for j, column in enumerate(frame.columns):
            values = frame[column]
            if pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"):
                # Fast path (the processed-data case): strings and missing values only.
                text = values.astype(object).str.strip()
                if self.boolean:
                    low = text.str.lower()
                    text = text.mask(low.isin(kinds.TRUE_TOKENS), "true")
                    text = text.mask(low.isin(kinds.FALSE_TOKENS), "false")
                out[:, j] = text.where(values.notna(), np.nan).to_numpy(dtype=object)
            else:
                out[:, j] = [normalize_value(v, self.boolean) for v in values.astype(object)]
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Return the input column names unchanged."""
        check_is_fitted(self, "n_features_in_")
        columns = self.feature_names_in_ if input_features is None else input_features
        return np.asarray(list(columns), dtype=object)
