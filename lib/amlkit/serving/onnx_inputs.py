"""Feed a converted model: request values or a frame become the ONNX model's inputs.

Numbers become ``(n, 1)`` float64 arrays (NaN: the graph imputes). Strings are normalised
first with :func:`~amlkit.kinds.normalize_value` (the graph keeps
CategoryNormalizer as an ``Identity``); a missing string is fed as a marker string. Dates
(input kind ``"datetime"``) become seconds since 1970-01-01 UTC as doubles, NaN when missing
or not a date pandas reads, as the model's DatetimeFeatures reads them; the graph computes
the calendar parts.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np

from amlkit.kinds import normalize_value

MISSING_STRING = "\u2400amlkit-missing\u2400"  # fed for a missing string
EPOCH = datetime(1970, 1, 1)
# pandas' datetime64[ns] range: a date outside it is NaT (missing) to DatetimeFeatures
FIRST_DATE, LAST_DATE = datetime(1677, 9, 22), datetime(2262, 4, 11)


def is_missing(value: Any) -> bool:
    """Return True for None and float NaN."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def epoch_seconds(value: Any) -> float:
    """Return a date as whole seconds since 1970-01-01 UTC, NaN when missing or not a date.

    ISO 8601 strings as pandas' ``to_datetime(format="ISO8601", utc=True)`` reads them (a time
    zone is converted to UTC; a naive time is taken as UTC), ``datetime`` objects too; week
    dates and dates outside pandas' range are NaN, as they are NaT there.
    """
    if isinstance(value, str):
        if "W" in value or "w" in value:  # ISO week dates: Python reads them, pandas does not
            return math.nan
        try:
            stamp = datetime.fromisoformat(value)
        except ValueError:
            return math.nan
    elif isinstance(value, datetime):
        stamp = value
    else:
        return math.nan
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(UTC).replace(tzinfo=None)
    if not FIRST_DATE <= stamp < LAST_DATE:
        return math.nan
    since = stamp - EPOCH
    return float(since.days * 86400 + since.seconds)  # whole seconds: exact in a double


class OnnxFeeder:
    """Turn validated values or a frame into the ONNX model's inputs (``serving.json``)."""

    def __init__(
        self, input_kinds: dict[str, str], normalize: dict[str, str], missing_string: str
    ) -> None:
        self.input_kinds = dict(input_kinds)
        self.normalize = dict(normalize)
        self.missing = missing_string

    def _feed(self, col: str, vals: Any) -> np.ndarray:
        kind = self.input_kinds[col]
        if kind == "double":
            return np.asarray(vals, dtype=np.float64).reshape(-1, 1)
        if kind == "datetime":
            return np.array([epoch_seconds(v) for v in vals], dtype=np.float64).reshape(-1, 1)
        norm_kind, missing = self.normalize.get(col), self.missing
        if norm_kind is None:
            out = [missing if is_missing(v) else str(v) for v in vals]
        else:
            boolean = norm_kind == "boolean"
            seen: dict[str, str] = {}

            def norm(v: Any) -> str:
                t = normalize_value(v, boolean)
                return t if isinstance(t, str) else missing

            # each distinct string normalised once: requests and files repeat categories
            out = [
                (seen[v] if v in seen else seen.setdefault(v, norm(v)))
                if type(v) is str
                else norm(v)
                for v in vals
            ]
        return np.array(out, dtype=object).reshape(-1, 1)

    def from_values(self, values: dict[str, list[Any]]) -> dict[str, np.ndarray]:
        """Return feeds from :func:`amlkit.serving.requests.validate_rows` output."""
        return {col: self._feed(col, values[col]) for col in self.input_kinds}

    def from_frame(self, frame: Any) -> dict[str, np.ndarray]:
        """Return feeds from a pandas frame holding the feature columns."""
        feeds = {}
        for col, kind in self.input_kinds.items():
            if kind == "double":
                feeds[col] = frame[col].to_numpy(dtype=np.float64, na_value=np.nan).reshape(-1, 1)
            elif kind == "datetime":
                feeds[col] = _frame_seconds(frame[col]).reshape(-1, 1)
            else:
                values = frame[col].astype(object).tolist()
                feeds[col] = self._feed(col, [None if v is not v else v for v in values])
        return feeds


def _frame_seconds(values: Any) -> np.ndarray:
    """Seconds since the epoch of a pandas column of dates (datetime64, or values to parse)."""
    import pandas as pd

    dtype = values.dtype
    if isinstance(dtype, pd.DatetimeTZDtype):
        stamps = values.dt.tz_convert("UTC").dt.tz_localize(None)
    elif pd.api.types.is_datetime64_any_dtype(dtype):
        stamps = values
    else:
        return np.array([epoch_seconds(v) for v in values.astype(object)], dtype=np.float64)
    nanos = stamps.astype("datetime64[ns]").to_numpy()
    seconds = nanos.astype(np.int64) // 1_000_000_000  # whole seconds, floored: exact
    out = seconds.astype(np.float64)
    out[np.isnat(nanos)] = np.nan
    return out
