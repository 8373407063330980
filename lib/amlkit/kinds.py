"""The project's vocabulary: the kinds of columns, the tasks, and the spellings of true/false.

Every stage speaks of a column by its kind, decided by the data set's schema (declared in
``config/data_config.json`` or inferred at ingestion): validation checks it, preprocessing
cleans by it, training picks the transformer for it, serving validates requests with it and
monitoring chooses the drift metric by it. This module is the one place that defines them.

============  ==========================================  ===================================
kind          values                                      used as
============  ==========================================  ===================================
numeric       numbers (float64 after ingestion)           feature: imputed, scaled
integer       whole numbers (float64, so gaps fit)        feature, treated like numeric
categorical   text labels (str), missing as NaN           feature: normalised, one-hot encoded
boolean       ``"true"``/``"false"`` after cleaning       feature, treated like categorical
datetime      ``datetime64[ns]``                          feature: calendar parts
text          ID-like or free text                        left out of the features
image         an N×H×W×C array (the Keras models)         the input of an image model
============  ==========================================  ===================================
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
IMAGE: Final = "image"

SCHEMA_KINDS: Final = (NUMERIC, INTEGER, CATEGORICAL, BOOLEAN, DATETIME, TEXT)
"""Kinds a data set's schema may declare."""
FEATURE_KINDS: Final = (NUMERIC, INTEGER, CATEGORICAL, BOOLEAN, DATETIME)
"""Kinds a tabular model takes as input (text columns are left out)."""
NUMERIC_KINDS: Final = (NUMERIC, INTEGER)
"""Kinds whose values are numbers."""
CATEGORY_KINDS: Final = (CATEGORICAL, BOOLEAN)
"""Kinds whose values are labels, compared as strings."""

CLASSIFICATION: Final = "classification"
REGRESSION: Final = "regression"
TASKS: Final = (CLASSIFICATION, REGRESSION)

TRUE_TOKENS: Final = frozenset({"true", "t", "yes", "y", "1"})
"""Spellings read as true (compared lower-cased, stripped)."""
FALSE_TOKENS: Final = frozenset({"false", "f", "no", "n", "0"})
"""Spellings read as false (compared lower-cased, stripped)."""
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
