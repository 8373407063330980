"""Parse and validate scoring requests against a model's feature columns.

Accepted JSON shapes (one parse, cheap checks, column-major output):

- ``{"input_data": {"columns": [...], "data": [[...]], "index": [...]}}`` (Azure ML / MLflow
  split form; ``"dataframe_split"`` is accepted as an alias),
- ``{"data": [[...]]}`` with values in the model's feature order,
- a list of records ``[{"column": value, ...}]`` (also under ``"dataframe_records"``),
- for image models ``{"images": [...]}`` (nested lists or base64 PNG strings).

Every problem raises :class:`RequestError` with an HTTP status (400, 413, 415, 422) and a
message that names the problem and the fix.
"""

from __future__ import annotations

import json
import math
import sys
from datetime import datetime
from typing import Any

from amlkit import kinds

MAX_PROBLEMS = 5
FLOAT_MAX = sys.float_info.max


class RequestError(Exception):
    """A request the service refuses, with the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def example_body(feature_columns: list[str]) -> str:
    """Return a short example request body for error messages."""
    cols = ", ".join(f'"{c}"' for c in feature_columns[:3])
    more = ", ..." if len(feature_columns) > 3 else ""
    return f'{{"input_data": {{"columns": [{cols}{more}], "data": [[...]]}}}}'


def parse_json(body: bytes, *, content_type: str | None, max_body_bytes: int) -> Any:
    """Decode a request body as JSON.

    Args:
        body: the raw body.
        content_type: the request's Content-Type header, if any.
        max_body_bytes: the largest body accepted.

    Returns:
        The parsed JSON value.

    Raises:
        RequestError: empty (400), too large (413), not JSON content (415), broken JSON (400).
    """
    if content_type and "json" not in content_type.lower():
        raise RequestError(
            415,
            f"Content-Type {content_type!r} is not supported; send the body as JSON with "
            "'Content-Type: application/json'.",
        )
    if len(body) > max_body_bytes:
        raise RequestError(
            413,
            f"request body is {len(body)} bytes, over the limit of {max_body_bytes}; "
            "split the rows over several requests or use batch scoring (amlkit.serving.batch).",
        )
    if not body.strip():
        raise RequestError(
            400, 'request body is empty; send JSON rows, for example [{"column": value}].'
        )
    try:
        return json.loads(body)
    except UnicodeDecodeError as exc:
        raise RequestError(
            400, f"request body is not UTF-8 text ({exc.reason}); send JSON."
        ) from None
    except json.JSONDecodeError as exc:
        raise RequestError(
            400,
            f"request body is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}; "
            "fix the JSON syntax.",
        ) from None
    except (ValueError, RecursionError) as exc:  # a 4,300+ digit number; nesting too deep
        raise RequestError(
            400, f"request body is not JSON rows ({str(exc)[:80]}); send JSON rows of values."
        ) from None


def _split_form(obj: Any, key: str, feature_columns: list[str]) -> tuple[list[str], list[Any]]:
    if not isinstance(obj, dict):
        raise RequestError(
            422, f'"{key}" must be an object with "columns" and "data"; got {type(obj).__name__}.'
        )
    unknown = set(obj) - {"columns", "data", "index"}
    if unknown:
        raise RequestError(
            422,
            f'"{key}" has unknown keys {sorted(unknown)}; allowed: "columns", "data", "index".',
        )
    columns = obj.get("columns", feature_columns)
    data = obj.get("data")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise RequestError(422, f'"{key}.columns" must be a list of column names (strings).')
    if not isinstance(data, list):
        raise RequestError(
            422, f'"{key}.data" must be a list of rows (lists); got {type(data).__name__}.'
        )
    index = obj.get("index")
    if index is not None and (not isinstance(index, list) or len(index) != len(data)):
        raise RequestError(
            422, f'"{key}.index" must be a list with one entry per row ({len(data)} rows).'
        )
    return columns, data


def _records(records: list[Any]) -> tuple[list[str], list[list[Any]]]:
    first = records[0]
    if not isinstance(first, dict):
        raise RequestError(
            422, f"a list body must hold records (objects); row 0 is {type(first).__name__}."
        )
    columns = list(first)
    rows = []
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise RequestError(422, f"row {i} is {type(rec).__name__}, expected an object.")
        if len(rec) != len(columns) or rec.keys() != first.keys():
            diff = sorted(set(columns) ^ set(rec))
            raise RequestError(
                422,
                f"row {i} has different columns from row 0 (differing: {diff}); "
                "send the same columns in every record.",
            )
        rows.append([rec[c] for c in columns])
    return columns, rows


def extract_rows(payload: Any, feature_columns: list[str]) -> tuple[list[str], list[Any]]:
    """Return ``(columns, rows)`` from any accepted request shape.

    Args:
        payload: the parsed JSON body.
        feature_columns: the model's features, in order (used by the ``{"data": ...}`` form).

    Returns:
        The column names the client sent and the rows (lists of values).

    Raises:
        RequestError: 422 when the shape is not one of the accepted forms.
    """
    if isinstance(payload, list):
        if not payload:
            raise RequestError(422, "the request holds no rows; send at least one record.")
        return _records(payload)
    if isinstance(payload, dict):
        for key in ("input_data", "dataframe_split"):
            if key in payload:
                inner = payload[key]
                if isinstance(inner, list) and inner and isinstance(inner[0], dict):
                    return _records(inner)
                return _split_form(inner, key, feature_columns)
        if "dataframe_records" in payload and isinstance(payload["dataframe_records"], list):
            if not payload["dataframe_records"]:
                raise RequestError(422, "the request holds no rows; send at least one record.")
            return _records(payload["dataframe_records"])
        if "data" in payload:
            data = payload["data"]
            if isinstance(data, list) and data and isinstance(data[0], dict):
                return _records(data)
            if not isinstance(data, list):
                raise RequestError(
                    422, f'"data" must be a list of rows; got {type(data).__name__}.'
                )
            return list(feature_columns), data
    raise RequestError(
        422,
        "unrecognised request shape; send "
        + example_body(feature_columns)
        + ', {"data": [[...]]} or a list of records [{"column": value}].',
    )


def _encodable(text: str) -> bool:
    try:  # a lone surrogate ("\ud800") parses, but no model can read it
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _cell_problem(col: str, kind: str, row: int, value: Any) -> str:
    want = {"datetime": "an ISO date string"}.get(
        kind, "a number" if kind in kinds.NUMERIC_KINDS else "a string"
    )
    got = f"{value!r} ({type(value).__name__})"
    return f"column {col!r} ({kind}) row {row}: got {got}, need {want} or null"


def validate_rows(
    columns: list[str],
    rows: list[Any],
    *,
    feature_columns: list[str],
    feature_types: dict[str, str],
    max_rows: int,
) -> dict[str, list[Any]]:
    """Check rows against the model's features and return them column by column.

    Numbers become floats (null and NaN become NaN), categorical values stay strings (null
    becomes None), booleans become "true"/"false", datetimes stay ISO strings.

    Args:
        columns: the columns the client sent.
        rows: the rows, each a list in ``columns`` order.
        feature_columns: the model's features, in order.
        feature_types: ``{column: kind}`` from the model metadata.
        max_rows: the most rows one request may hold.

    Returns:
        ``{feature: [values]}`` in the model's feature order.

    Raises:
        RequestError: 413 too many rows, 422 for missing/extra columns, ragged rows or bad values.
    """
    n = len(rows)
    if n == 0:
        raise RequestError(422, "the request holds no rows; send at least one row.")
    if n > max_rows:
        raise RequestError(
            413,
            f"the request holds {n} rows, over the limit of {max_rows}; split it into "
            "smaller requests or use batch scoring.",
        )
    if columns != feature_columns:
        missing = [c for c in feature_columns if c not in columns]
        extra = [c for c in columns if c not in feature_types]
        dupes = sorted({c for c in columns if columns.count(c) > 1})
        if missing or extra or dupes:
            parts = []
            if missing:
                parts.append(f"missing columns {missing}")
            if extra:
                parts.append(f"unknown columns {extra}")
            if dupes:
                parts.append(f"repeated columns {dupes}")
            raise RequestError(
                422,
                "; ".join(parts) + f". The model expects exactly these columns: {feature_columns}.",
            )
    width = len(columns)
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != width:
            got = len(row) if isinstance(row, list) else type(row).__name__
            raise RequestError(
                422, f"row {i} has {got} values; each row needs {width} values in column order."
            )
    problems: list[str] = []
    out: dict[str, list[Any]] = {}
    for col in feature_columns:
        j = columns.index(col)
        kind = feature_types.get(col, "numeric")
        values = [row[j] for row in rows]
        if kind in kinds.NUMERIC_KINDS:
            clean = []
            for i, v in enumerate(values):
                t = type(v)
                if t is float:
                    if math.isinf(v):
                        problems.append(_cell_problem(col, kind, i, v))
                    clean.append(v)
                elif t is int and abs(v) <= FLOAT_MAX:
                    clean.append(float(v))
                elif v is None:
                    clean.append(math.nan)
                else:
                    problems.append(_cell_problem(col, kind, i, v))
            values = clean
        elif kind in kinds.CATEGORY_KINDS:
            for i, v in enumerate(values):
                if v is None or (type(v) is str and (v.isascii() or _encodable(v))):
                    continue
                if kind == "boolean" and type(v) is bool:
                    values[i] = "true" if v else "false"
                else:
                    problems.append(_cell_problem(col, kind, i, v))
        elif kind == "datetime":
            for i, v in enumerate(values):
                if v is None:
                    continue
                try:
                    datetime.fromisoformat(v)
                except (TypeError, ValueError):
                    problems.append(_cell_problem(col, kind, i, v))
        if len(problems) >= MAX_PROBLEMS:
            break
        out[col] = values
    if problems:
        raise RequestError(
            422, "wrong value types: " + "; ".join(problems[:MAX_PROBLEMS]) + ". Fix the values."
        )
    return out


def parse_request(
    body: bytes,
    *,
    content_type: str | None,
    feature_columns: list[str],
    feature_types: dict[str, str],
    max_body_bytes: int,
    max_rows: int,
) -> tuple[dict[str, list[Any]], int]:
    """Parse, check and convert one tabular scoring request.

    Args:
        body: the raw request body.
        content_type: the Content-Type header, if any.
        feature_columns: the model's features, in order.
        feature_types: ``{column: kind}``.
        max_body_bytes: body size limit.
        max_rows: row limit.

    Returns:
        ``(columns, n_rows)``: the validated values column by column and the row count.

    Raises:
        RequestError: for every bad input, with its HTTP status.
    """
    payload = parse_json(body, content_type=content_type, max_body_bytes=max_body_bytes)
    columns, rows = extract_rows(payload, feature_columns)
    values = validate_rows(
        columns,
        rows,
        feature_columns=feature_columns,
        feature_types=feature_types,
        max_rows=max_rows,
    )
    return values, len(rows)


def parse_images(payload: Any, *, max_rows: int) -> list[Any]:
    """Return the images of an image request (``{"images": [...]}`` or ``input_data``).

    Raises:
        RequestError: 422 for a wrong shape, 413 for too many images.
    """
    images = None
    if isinstance(payload, dict):
        images = payload.get("images", payload.get("input_data", payload.get("data")))
    elif isinstance(payload, list):
        images = payload
    if not isinstance(images, list) or not images:
        raise RequestError(
            422,
            'send images as {"images": [...]} with nested lists of pixels or base64 PNG strings.',
        )
    if len(images) > max_rows:
        raise RequestError(
            413, f"the request holds {len(images)} images, over the limit of {max_rows}."
        )
    return images
