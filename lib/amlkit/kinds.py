"""The project's vocabulary: column kinds, tasks, and the spellings of true/false.

Every stage treats a column by its schema kind: numeric, integer (float64, so gaps fit),
categorical (str), boolean (``"true"``/``"false"``), datetime, text (left out of features).
"""

from __future__ import annotations

from typing import Final

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
