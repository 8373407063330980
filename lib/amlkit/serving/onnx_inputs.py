"""Feed a converted model: request values or a frame become the ONNX model's inputs.

Numbers become ``(n, 1)`` float64 arrays (NaN: the graph imputes). Strings are normalised
first with :func:`~amlkit.kinds.normalize_value` (the graph keeps
CategoryNormalizer as an ``Identity``); a missing string is fed as a marker string.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from amlkit.kinds import normalize_value


def is_missing(value: Any) -> bool:
    """Return True for None and float NaN."""
    return value is None or (isinstance(value, float) and math.isnan(value))


class OnnxFeeder:
    """Turn validated values or a frame into the ONNX model's inputs (``serving.json``)."""

    def __init__(
        self, input_kinds: dict[str, str], normalize: dict[str, str], missing_string: str
    ) -> None:
        self.input_kinds = dict(input_kinds)
        self.normalize = dict(normalize)
        self.missing = missing_string

    def _feed(self, col: str, vals: Any) -> np.ndarray:
        if self.input_kinds[col] == "double":
            return np.asarray(vals, dtype=np.float64).reshape(-1, 1)
        kind, missing = self.normalize.get(col), self.missing
        if kind is None:
            out = [missing if is_missing(v) else str(v) for v in vals]
        else:
            boolean = kind == "boolean"
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
        return {
            col: self._feed(
                col,
                frame[col].to_numpy(dtype=np.float64, na_value=np.nan)
                if kind == "double"
                else frame[col].astype(object).tolist(),
            )
            for col, kind in self.input_kinds.items()
        }
