"""The project's vocabulary: column kinds, tasks, and the spellings of true/false.

Every stage treats a column by its schema kind: numeric, integer (float64, so gaps fit),
categorical (str), boolean (``"true"``/``"false"``), datetime, text (left out of features).
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any, Final

NUMERIC: Final = "numeric"
INTEGER: Final = "integer"
CATEGORICAL: Final = "categorical"
BOOLEAN: Final = "boolean"
DATETIME: Final = "datetime"
TEXT: Final = "text"

SCHEMA_KINDS: Final = (NUMERIC, INTEGER, CATEGORICAL, BOOLEAN, DATETIME, TEXT)
FEATURE_KINDS: Final = (NUMERIC, INTEGER, CATEGORICAL, BOOLEAN, DATETIME)
NUMERIC_KINDS: Final = (NUMERIC, INTEGER)
CATEGORY_KINDS: Final = (CATEGORICAL, BOOLEAN)  # labels, compared as strings

CLASSIFICATION: Final = "classification"
REGRESSION: Final = "regression"
TASKS: Final = (CLASSIFICATION, REGRESSION)

# Spellings read as true and false (compared lower-cased, stripped).
TRUE_TOKENS: Final = frozenset({"true", "t", "yes", "y", "1"})
FALSE_TOKENS: Final = frozenset({"false", "f", "no", "n", "0"})
BOOL_TOKENS: Final = TRUE_TOKENS | FALSE_TOKENS


def target_kind(task: str) -> str:
    """Return the kind of a task's target: categorical for classification, else numeric."""
    return CATEGORICAL if task == CLASSIFICATION else NUMERIC


def normalize_value(value: Any, boolean: bool) -> Any:
    """Return a categorical value as a clean string, or NaN when it is missing.

    Training (the pipeline's ``CategoryNormalizer``, preprocessing) and serving (the ONNX
    feeder) spell labels through this one function. It needs neither numpy nor pandas, so an
    ONNX service's environment holds neither scikit-learn nor pandas: numpy scalars are
    numbers' subclasses, and pandas' missing markers are recognised by their type's name.

    Args:
        value: the raw value (str, number, bool, None, NaN, ``pd.NA``, ``pd.NaT``).
        boolean: the column is boolean: map the true/false spellings to ``"true"``/``"false"``.
    """
    if value is None or type(value).__name__ in ("NAType", "NaTType"):
        return math.nan
    if type(value).__name__ in ("bool", "bool_"):  # Python's and numpy's (bool_ before numpy 2)
        return "true" if value else "false"
    if isinstance(value, Real) and not isinstance(value, Integral):
        if math.isnan(value):
            return math.nan
        if float(value).is_integer():
            value = int(float(value))
    text = str(value).strip()
    if boolean:
        low = text.lower()
        if low in TRUE_TOKENS:
            return "true"
        if low in FALSE_TOKENS:
            return "false"
    return text
