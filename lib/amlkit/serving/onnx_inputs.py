"""Feed a converted model: request values or a frame become the ONNX model's input tensors.

Numeric columns become ``(n, 1)`` float64 arrays (NaN for missing: the graph imputes).
String columns are normalised first, as the pipeline's ``CategoryNormalizer`` would
(:func:`amlkit.training.transformers.normalize_value`, the same function), because the
graph keeps that step as an ``Identity``; a missing string is fed as the ``missing_string``
marker that the graph's string imputer replaces (a string tensor cannot hold NaN).

Used by the service's runtime (the ONNX backend) and by the parity check at packaging.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from amlkit.training.transformers import normalize_value


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


class OnnxFeeder:
    """Turn validated values or a frame into the ONNX model's inputs.

    Args:
        input_kinds: ``{column: "double" | "string"}`` in the model's input order.
        normalize: ``{column: "category" | "boolean"}`` for normalised string columns.
        missing_string: what a missing string is fed as.
    """

    def __init__(
        self, input_kinds: dict[str, str], normalize: dict[str, str], missing_string: str
    ) -> None:
        self.input_kinds = dict(input_kinds)
        self.normalize = dict(normalize)
        self.missing = missing_string

    def _strings(self, col: str, vals: Any) -> np.ndarray:
        kind, missing = self.normalize.get(col), self.missing
        if kind is None:
            out = [missing if _missing(v) else str(v) for v in vals]
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
        feeds = {}
        for col, kind in self.input_kinds.items():
            if kind == "double":
                feeds[col] = np.array(values[col], dtype=np.float64).reshape(-1, 1)
            else:
                feeds[col] = self._strings(col, values[col])
        return feeds

    def from_frame(self, frame: Any) -> dict[str, np.ndarray]:
        """Return feeds from a pandas frame holding the feature columns."""
        feeds = {}
        for col, kind in self.input_kinds.items():
            series = frame[col]
            if kind == "double":
                feeds[col] = series.to_numpy(dtype=np.float64, na_value=np.nan).reshape(-1, 1)
            else:
                feeds[col] = self._strings(col, series.astype(object).tolist())
        return feeds
