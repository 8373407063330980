"""Read collected production data: CSV, Parquet and JSON-lines files, one file or a folder of them.

A folder is read recursively, files in name order (the Azure ML data collector names its
folders ``<year>/<month>/<day>/<hour>``, so name order is time order). JSON-lines files are
either plain rows (one JSON object a line) or the records of the Azure ML data collector,
whose ``data`` field holds the rows a request carried; files under a ``model_outputs`` folder
hold the model's outputs for the rows under ``model_inputs``, and are joined to them on the
record's ``correlationid`` and the row's position. A single output column is named
``prediction``, the name the request log and :func:`amlkit.monitoring.monitor.run_monitoring`
use.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from amlkit.monitoring.monitor import read_production_file
from amlkit.monitoring.served import missing_inputs

logger = logging.getLogger(__name__)

SUFFIXES = (".csv", ".parquet", ".pq", ".jsonl")
OUTPUTS_FOLDER = "model_outputs"
KEYS = ["correlationid", "row"]


def _collector_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the rows of one data collector record (records, a column dict, or split form)."""
    data = record["data"]
    if isinstance(data, str):
        data = json.loads(data)
    if isinstance(data, dict) and "columns" in data and "data" in data:
        return [dict(zip(data["columns"], values, strict=True)) for values in data["data"]]
    if isinstance(data, dict):
        return pd.DataFrame(data).to_dict("records")
    return [row if isinstance(row, dict) else {"value": row} for row in data]


def read_jsonl(path: str | Path) -> pd.DataFrame:
    """Read a JSON-lines file of rows or of Azure ML data collector records.

    Raises:
        ValueError: a line is not a JSON object; the message names the file and the line.
    """
    rows: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path} line {number} is not JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path} line {number} is not a JSON object: {line[:80]!r}")
            if "data" in record and ("specversion" in record or "correlationid" in record):
                correlation = record.get("correlationid") or f"{path}:{number}"
                rows += [
                    {"correlationid": correlation, "row": i, **row}
                    for i, row in enumerate(_collector_rows(record))
                ]
            else:
                rows.append(record)
    return pd.DataFrame(rows)


def read_collected(path: str | Path) -> pd.DataFrame:
    """Read production rows from a file or a folder of CSV, Parquet or JSON-lines files.

    Args:
        path: one file, or a folder read recursively.

    Returns:
        The rows, inputs joined with the data collector's outputs where both were collected.

    Raises:
        FileNotFoundError: the path does not exist, or the folder holds no readable file.
        ValueError: a file has another format.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no production data at {path}")
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
    files = files if path.is_dir() else [path]
    if not files:
        raise FileNotFoundError(f"{path} holds no production data (no {', '.join(SUFFIXES)} files)")
    inputs: list[pd.DataFrame] = []
    outputs: list[pd.DataFrame] = []
    for file in files:
        frame = read_jsonl(file) if file.suffix.lower() == ".jsonl" else read_production_file(file)
        (outputs if OUTPUTS_FOLDER in file.parts else inputs).append(frame)
    if not inputs:
        raise FileNotFoundError(f"{path} holds model outputs but no model inputs")
    rows = pd.concat(inputs, ignore_index=True)
    if outputs and set(KEYS) <= set(rows.columns):
        out = pd.concat(outputs, ignore_index=True)
        names = [c for c in out.columns if c not in KEYS]
        if len(names) == 1 and "prediction" not in rows.columns:
            out = out.rename(columns={names[0]: "prediction"})
        rows = rows.merge(out, on=KEYS, how="left", suffixes=("", "_output"))
    logger.info("read %d production rows from %d file(s) under %s", len(rows), len(files), path)
    return rows.drop(columns=[c for c in KEYS if c in rows.columns])


def require_inputs(
    rows: pd.DataFrame, features: Sequence[str], *, source: str | Path, model: str
) -> None:
    """Check that the production rows carry every input the model expects, as a column.

    A column missing entirely is a schema error, not missing values: it says the file is not
    what the model was fed, and comparing it would report 100% nulls.

    Raises:
        ValueError: a column is missing; the message names it and what the model expects.
    """
    if missing := missing_inputs(rows, features):
        names = ", ".join(repr(c) for c in missing)
        plural = "s" if len(missing) > 1 else ""
        raise ValueError(
            f"production data {source} has no column{plural} {names}; {model} expects the "
            f"inputs {', '.join(features)}. Add the missing column{plural} (values may be "
            "empty), or pass the file of rows this model was sent"
        )
