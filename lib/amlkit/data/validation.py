"""Data contracts: schemas, structural checks and pandera validation with readable reports.

A schema maps each column to a kind (:mod:`amlkit.kinds`), nullability and optional bounds or
categories; it is declared in ``data_config.json`` or inferred at first ingestion and saved to
``config/schemas/<dataset>.json`` for review. Files are checked in two streaming passes: the
raw bytes (encoding, header, ragged rows), then chunks of rows with pandera.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors
from pydantic import TypeAdapter, ValidationError

from amlkit import kinds
from amlkit.config import ColumnSchema, Schema


class DataValidationError(ValueError):
    """Input data broke its contract; ``problems`` lists each finding in words."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source} failed validation; nothing was written:\n{lines}")


def _decoded_lines(path: Path, source: str) -> Iterator[str]:
    """Yield the text lines of ``path``; raise on bytes that are not UTF-8, saying where."""
    with open(path, "rb") as handle:
        offset = 3 if handle.read(3) == codecs.BOM_UTF8 else handle.seek(0)  # skip a BOM
        for line_no, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataValidationError(
                    source,
                    [
                        f"bytes that are not UTF-8 at byte {offset + exc.start} (line {line_no}): "
                        f"{raw[exc.start : exc.start + 4]!r}; re-save the file as UTF-8 "
                        "(for example `iconv -f latin1 -t utf-8`)"
                    ],
                ) from exc
            offset += len(raw)
            yield text


def check_structure(path: Path, source: str, *, delimiter: str = ",", max_shown: int = 5) -> None:
    """Stream a CSV/TSV once: encoding, empty file, header, duplicated names, ragged rows."""
    if path.stat().st_size == 0:
        raise DataValidationError(source, ["the file is empty (0 bytes); check the export"])
    reader = csv.reader(_decoded_lines(path, source), delimiter=delimiter)
    header = next(reader, None)
    if not header or all(not h.strip() for h in header):
        raise DataValidationError(source, ["the file has no header row; the first line is blank"])
    header = [h.strip() for h in header]
    problems = []
    seen: dict[str, int] = {}
    for i, name in enumerate(header):
        if name in seen:
            problems.append(
                f"duplicated column name {name!r} (columns {seen[name] + 1} and {i + 1}); "
                "rename one of them in the source"
            )
        seen.setdefault(name, i)
    if any(not h for h in header):
        problems.append("a column has an empty name in the header; name every column")
    ragged, rows = [], 0
    for row in reader:
        if not row:
            continue
        rows += 1
        if len(row) != len(header):
            ragged.append((rows, reader.line_num, len(row)))
    if ragged:
        shown = ", ".join(f"row {r} (line {ln}) has {n}" for r, ln, n in ragged[:max_shown])
        problems.append(
            f"{len(ragged)} ragged rows: the header has {len(header)} fields but {shown}; "
            "fix the delimiters or quoting in the source"
        )
    if rows == 0 and not problems:
        problems.append("the file has a header but no data rows")
    if problems:
        raise DataValidationError(source, problems)


def infer_kind(values: pd.Series, *, unique_ratio: float, min_unique: int) -> str:
    """Infer a column's kind from raw values (strings or typed)."""
    s = values.dropna()
    if s.empty:
        return "categorical"
    if pd.api.types.is_bool_dtype(s):
        return "boolean"
    if pd.api.types.is_datetime64_any_dtype(s):
        return "datetime"
    if pd.api.types.is_numeric_dtype(s):
        as_num = s.astype(float)
    else:
        text = s.astype(str).str.strip()
        if set(text.str.lower().unique()) <= kinds.BOOL_TOKENS and text.nunique() <= 2:
            return "boolean" if not text.str.fullmatch(r"[01]").all() else "integer"
        as_num = pd.to_numeric(text, errors="coerce")
        if as_num.notna().mean() < 0.9:
            stamp = pd.to_datetime(text, errors="coerce", format="ISO8601")
            date_like = text.str.contains(r"\d{4}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2}")
            if stamp.notna().mean() >= 0.9 and date_like.all():
                return "datetime"
            n_unique = text.nunique()
            if n_unique >= min_unique and n_unique / len(text) >= unique_ratio:
                return "text"
            return "categorical"
    whole = bool(np.all(np.isclose(as_num.dropna() % 1, 0)))
    return "integer" if whole else "numeric"


def infer_schema(
    frame: pd.DataFrame, *, unique_ratio: float = 0.5, min_unique: int = 50
) -> dict[str, dict]:
    """Infer a schema from a sample of raw rows (all columns nullable, for review)."""
    schema = {}
    for column in frame.columns:
        kind = infer_kind(frame[column], unique_ratio=unique_ratio, min_unique=min_unique)
        schema[str(column)] = {"type": kind, "nullable": True}
    return schema


def check_schema_shape(schema: Any, where: str) -> dict[str, dict[str, Any]]:
    """Validate a saved schema against :class:`amlkit.config.ColumnSchema`; return it plain."""
    try:
        typed = TypeAdapter(Schema).validate_python(schema)
    except ValidationError as exc:
        error = exc.errors()[0]
        column = ".".join(str(part) for part in error["loc"])
        raise DataValidationError(
            where,
            [
                f"schema entry {column!r}: {error['msg']} (got {error.get('input')!r}); the "
                f"keys are {', '.join(ColumnSchema.model_fields)}, the types "
                f"{', '.join(kinds.SCHEMA_KINDS)}"
            ],
        ) from None
    return {column: spec.model_dump(exclude_none=True) for column, spec in typed.items()}


def _is_bool_token(series: pd.Series) -> pd.Series:
    return series.isna() | series.astype(str).str.strip().str.lower().isin(kinds.BOOL_TOKENS)


def _whole(series: pd.Series) -> pd.Series:
    return series.isna() | (series % 1 == 0)


def build_pandera_schema(
    schema: dict[str, dict], *, target: str | None, task: str | None
) -> pa.DataFrameSchema:
    """Turn a project schema into a pandera DataFrameSchema (coercing from raw strings)."""
    columns = {}
    for name, spec in schema.items():
        kind, nullable = spec["type"], bool(spec.get("nullable", True))
        if name == target:
            nullable = True  # rows with a missing target are dropped (and counted) in 03
        checks = []
        if kind in kinds.NUMERIC_KINDS:
            dtype, coerce = "float64", True
            if kind == "integer":
                checks.append(pa.Check(_whole, error="whole numbers"))
            if "min" in spec:
                checks.append(pa.Check.ge(spec["min"]))
            if "max" in spec:
                checks.append(pa.Check.le(spec["max"]))
        elif kind == "datetime":
            dtype, coerce = "datetime64[ns]", True
        elif kind == "boolean":
            dtype, coerce = None, False
            checks.append(pa.Check(_is_bool_token, error="true/false values"))
        else:
            dtype, coerce = None, False
            if spec.get("categories"):
                checks.append(pa.Check.isin([str(c) for c in spec["categories"]]))
        columns[name] = pa.Column(
            dtype, checks=checks, nullable=nullable, coerce=coerce, required=True
        )
    return pa.DataFrameSchema(columns, strict=True, coerce=False)


def _describe_check(check: str, kind: str) -> tuple[str, str]:
    """Return (what the bad values are, what to do) for a pandera check name."""
    if check.startswith("coerce_dtype"):
        noun = {"numeric": "numbers", "integer": "numbers", "datetime": "dates/times"}.get(kind)
        return (
            f"values that are not {noun or kind}",
            "fix the source, or declare the column as categorical in data_config.json",
        )
    if check == "not_nullable":
        return "missing values", "fill them in the source or set nullable: true in the schema"
    if check.startswith("isin"):
        return "values outside the declared categories", "add them to the schema's categories"
    if check.startswith("greater_than") or check.startswith("less_than"):
        return f"values out of bounds ({check})", "fix the source or the schema's min/max"
    if check == "column_in_schema":
        return "a column that the schema does not have", "add it to the schema or drop it"
    if check == "column_in_dataframe":
        return "a column missing from the data", "add it to the source or remove it from the schema"
    return f"values failing the check {check!r}", "fix the source or the schema"


def report_failures(
    failures: pd.DataFrame, schema: dict[str, dict], *, max_shown: int = 5
) -> list[str]:
    """Turn pandera's failure cases into one sentence per (column, rule)."""
    problems = []
    for (column, check), group in failures.groupby(["column", "check"], sort=True, dropna=False):
        if check in ("column_in_schema", "column_in_dataframe"):
            what, fix = _describe_check(str(check), "unknown")
            problems.append(f"column {group['failure_case'].iloc[0]!r}: {what}; {fix}")
            continue
        kind = schema.get(str(column), {}).get("type", "unknown")
        what, fix = _describe_check(str(check), kind)
        rows = group.dropna(subset=["index"]).head(max_shown)
        shown = ", ".join(
            f"{v!r} on row {int(i)}"
            for v, i in zip(rows["failure_case"], rows["index"], strict=True)
        )
        problems.append(f"column {column!r} ({kind}): {len(group)} {what} (first: {shown}); {fix}")
    return problems


def validate_chunk(
    chunk: pd.DataFrame, pandera_schema: pa.DataFrameSchema
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Validate one chunk lazily: (coerced rows, None), or (the rows as given, failure cases)."""
    try:
        return pandera_schema.validate(chunk, lazy=True), None
    except SchemaErrors as exc:
        return chunk, exc.failure_cases


def check_target(target_values: pd.Series, *, target: str, task: str, source: str) -> None:
    """Check that the target can be learned: present values, two classes for classification."""
    present = target_values.dropna()
    if present.empty:
        raise DataValidationError(source, [f"target column {target!r} has no values at all"])
    if task == "classification":
        classes = present.astype(str).unique()
        if len(classes) < 2:
            raise DataValidationError(
                source,
                [
                    f"target column {target!r} has a single class ({classes[0]!r}); "
                    "classification needs at least two: check the filter that produced the file"
                ],
            )


def infer_task(target_values: pd.Series, kind: str) -> str:
    """Guess the task from the target: numeric with many distinct values is regression."""
    if kind in kinds.NUMERIC_KINDS:
        numeric = pd.to_numeric(target_values, errors="coerce").dropna()
        if kind == "numeric" or numeric.nunique() > 20:
            return "regression"
    return "classification"
