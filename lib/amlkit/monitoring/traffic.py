"""Simulated production traffic: replay held-out rows against a local endpoint, with drift.

The rows come from the processed validation and test splits (data the model never trained
on), so an undrifted replay looks like production on a good day. :class:`DriftSpec` bends
them the ways production data goes wrong: numbers shifted (in reference standard
deviations) or rescaled around the reference mean, new categories, more missing values.
Everything is seeded, so a replay and the monitoring decision it leads to are repeatable.

:func:`simulate_traffic` sends the rows as Azure ML ``input_data`` requests from a few
client threads, over keep-alive connections, each with an ``x-request-id`` header that the
scoring script writes to the request log: that id joins the labels (which arrive "later",
from the replayed rows) to the logged predictions. It talks to loopback only and stops
after ``max_seconds``.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from amlkit import kinds

logger = logging.getLogger(__name__)

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
SOURCE_COLUMN = "source_row"
NEW_CATEGORY = "unseen"


class Target(Protocol):
    """Anything with a scoring ``url`` and ``headers()``: a LocalEndpoint or a Router."""

    url: str

    def headers(self) -> dict[str, str]:
        """Return the headers of a scoring call."""


@dataclass(frozen=True)
class DriftSpec:
    """How to bend replayed rows; every mapping is ``{column: amount}``.

    Attributes:
        shift: add ``amount`` reference standard deviations to a numeric column.
        scale: multiply a numeric column's distance from the reference mean by ``amount``.
        new_category: share of a categorical column's rows set to ``new_label``.
        null_rate: share of a column's rows set to missing.
        new_label: the category that did not exist in training.
    """

    shift: Mapping[str, float] = field(default_factory=dict)
    scale: Mapping[str, float] = field(default_factory=dict)
    new_category: Mapping[str, float] = field(default_factory=dict)
    null_rate: Mapping[str, float] = field(default_factory=dict)
    new_label: str = NEW_CATEGORY

    @property
    def is_empty(self) -> bool:
        """True when the spec changes nothing."""
        return not any((self.shift, self.scale, self.new_category, self.null_rate))

    def to_dict(self) -> dict[str, Any]:
        """Return the spec as plain dicts (for a report or a notebook)."""
        return {
            "shift": dict(self.shift),
            "scale": dict(self.scale),
            "new_category": dict(self.new_category),
            "null_rate": dict(self.null_rate),
        }


@dataclass
class TrafficResult:
    """What :func:`simulate_traffic` sent and got back.

    Attributes:
        sent: one row per replayed row: ``request_id``, ``row`` (position in its request),
            the features, the label column when known, ``status`` and ``prediction``.
        requests: requests sent.
        errors: requests that failed (HTTP status >= 400 or a connection error).
        elapsed_s: wall-clock seconds.
        stopped_early: True when ``max_seconds`` ran out before every request was sent.
        error_samples: up to five error messages, for diagnosis.
    """

    sent: pd.DataFrame
    requests: int
    errors: int
    elapsed_s: float
    stopped_early: bool
    error_samples: list[str]

    def summary(self) -> dict[str, Any]:
        """Return the counts (no timings) for display."""
        return {
            "requests": self.requests,
            "rows": len(self.sent),
            "errors": self.errors,
            "stopped_early": self.stopped_early,
        }


def held_out_rows(processed: Any) -> pd.DataFrame:
    """Return the validation and test splits of a processed version, one frame.

    Args:
        processed: an ``amlkit.data.preprocess.Processed``.

    Returns:
        The rows (features and target) with a ``source_row`` column naming their origin
        (``validation:12``), so a replay can be traced and de-duplicated.
    """
    parts = []
    for name in ("validation", "test"):
        part = getattr(processed, name).copy()
        part[SOURCE_COLUMN] = [f"{name}:{i}" for i in range(len(part))]
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def sample_rows(rows: pd.DataFrame, n: int, *, seed: int) -> pd.DataFrame:
    """Draw ``n`` rows: seeded passes over shuffled ``rows``, each row once per pass."""
    if n < 0 or not len(rows):
        raise ValueError(f"cannot draw {n} rows from {len(rows)}; give n >= 0 and some rows")
    rng = np.random.default_rng(seed)
    passes = math.ceil(n / len(rows)) if n else 0
    order = np.concatenate([rng.permutation(len(rows)) for _ in range(passes)] or [[]])
    return rows.iloc[order[:n].astype(int)].reset_index(drop=True)


def default_drift(
    feature_types: Mapping[str, str], profile: Mapping[str, Any], intensity: float = 1.0
) -> DriftSpec:
    """Return a drift that touches a few features of any data set, scaled by ``intensity``.

    The first two numeric features shift by ``intensity`` standard deviations, the third
    is rescaled by ``1 + intensity / 2``; the first categorical feature gets ``0.2 *
    intensity`` new categories and the second ``0.2 * intensity`` extra missing values.
    ``intensity`` 0 gives an empty spec (a plain replay).

    Args:
        feature_types: ``{column: kind}`` from the processed manifest.
        profile: the baseline profile (kept for symmetry with callers; not needed here).
        intensity: how strong the drift is (0 = none).

    Returns:
        The spec.
    """
    del profile
    if intensity < 0:
        raise ValueError(f"drift intensity is {intensity}; use 0 (no drift) or more")
    if intensity == 0:
        return DriftSpec()
    numeric = [c for c, k in feature_types.items() if k in kinds.NUMERIC_KINDS]
    categorical = [c for c, k in feature_types.items() if k in kinds.CATEGORY_KINDS]
    share = min(0.2 * intensity, 0.9)
    return DriftSpec(
        shift={c: float(intensity) for c in numeric[:2]},
        scale={c: 1 + intensity / 2 for c in numeric[2:3]},
        new_category={c: share for c in categorical[:1]},
        null_rate={c: share for c in categorical[1:2] or numeric[3:4]},
    )


def _stats(column: str, values: pd.Series, profile: Mapping[str, Any]) -> tuple[float, float]:
    spec = profile.get("columns", profile).get(column, {})
    mean = spec.get("mean", float(values.mean()))
    std = spec.get("std", float(values.std()))
    return float(mean), float(std or 0.0)


def apply_drift(
    rows: pd.DataFrame, spec: DriftSpec, profile: Mapping[str, Any], *, seed: int
) -> pd.DataFrame:
    """Return a drifted copy of ``rows`` (the input is not changed).

    Args:
        rows: replayed rows.
        spec: what to change.
        profile: the baseline profile (reference mean and standard deviation per column).
        seed: seed of the random choices (which rows get new categories or nulls).

    Returns:
        The drifted rows, same index and columns.

    Raises:
        KeyError: a column of ``spec`` is not in ``rows``.
    """
    out = rows.copy()
    rng = np.random.default_rng(seed)
    named = {*spec.shift, *spec.scale, *spec.new_category, *spec.null_rate}
    missing = sorted(named - set(out.columns))
    if missing:
        raise KeyError(f"drift names columns {missing} that the rows lack: {list(out.columns)}")
    for column, amount in spec.shift.items():
        _, std = _stats(column, out[column], profile)
        out[column] = pd.to_numeric(out[column]) + amount * std
    for column, factor in spec.scale.items():
        mean, _ = _stats(column, out[column], profile)
        out[column] = mean + (pd.to_numeric(out[column]) - mean) * factor
    for column, share in spec.new_category.items():
        hit = rng.random(len(out)) < share
        out[column] = out[column].astype(object)
        out.loc[hit, column] = spec.new_label
    for column, share in spec.null_rate.items():
        hit = rng.random(len(out)) < share
        if out[column].dtype.kind == "f":
            out.loc[hit, column] = np.nan
        else:
            out[column] = out[column].astype(object)
            out.loc[hit, column] = None
    return out


def _check_loopback(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in LOOPBACK_HOSTS:
        raise ValueError(
            f"traffic goes to loopback only; {url!r} is not http://127.0.0.1:<port>/... "
            "Start the endpoint locally (amlkit.serving.server.start_server)."
        )
    return parts.hostname, parts.port or 80, parts.path or "/score"


def _json_value(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def request_body(frame: pd.DataFrame, columns: list[str]) -> bytes:
    """Return an Azure ML ``input_data`` body for ``columns`` of ``frame`` (NaN as null)."""
    data = [[_json_value(v) for v in row] for row in frame[columns].itertuples(index=False)]
    return json.dumps({"input_data": {"columns": columns, "data": data}}).encode()


def simulate_traffic(
    target: Target,
    rows: pd.DataFrame,
    *,
    feature_columns: list[str],
    batch_size: int = 1,
    concurrency: int = 2,
    max_seconds: float = 60.0,
    request_prefix: str = "sim",
    timeout_s: float = 10.0,
    until: threading.Event | None = None,
) -> TrafficResult:
    """Send ``rows`` to ``target`` in requests of ``batch_size`` rows from a few threads.

    Args:
        target: the endpoint or router (its ``url`` must be on loopback).
        rows: the rows to send, in order (features, and the label if known).
        feature_columns: the columns to send, in the model's order.
        batch_size: rows per request.
        concurrency: client threads, each with its own keep-alive connection.
        max_seconds: stop sending after this long (requests in flight finish).
        request_prefix: prefix of the ``x-request-id`` of each request (``<prefix>-<n>``).
        timeout_s: socket timeout per request.
        until: when given, cycle over ``rows`` again and again until this event is set
            (still bounded by ``max_seconds``): background traffic during a switch.

    Returns:
        The :class:`TrafficResult`.
    """
    if batch_size < 1 or concurrency < 1:
        raise ValueError(f"batch_size {batch_size} and concurrency {concurrency} must be >= 1")
    host, port, path = _check_loopback(target.url)
    headers = dict(target.headers())
    batches = [rows.iloc[i : i + batch_size] for i in range(0, len(rows), batch_size)]
    if not batches:
        raise ValueError("no rows to send; give at least one row")
    results: dict[int, tuple[int, Any]] = {}
    errors: list[str] = []
    counter = iter(range(10**9))
    lock = threading.Lock()
    deadline = time.monotonic() + max_seconds

    def more(i: int) -> bool:
        if time.monotonic() >= deadline:
            return False
        return i < len(batches) if until is None else not until.is_set()

    def worker() -> None:
        conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
        try:
            while True:
                with lock:
                    i = next(counter)
                if not more(i):
                    return
                body = request_body(batches[i % len(batches)], feature_columns)
                hdrs = {**headers, "x-request-id": f"{request_prefix}-{i}"}
                try:
                    conn.request("POST", path, body=body, headers=hdrs)
                    resp = conn.getresponse()
                    answer = json.loads(resp.read() or b"null")
                    results[i] = (resp.status, answer)
                    if resp.status >= 400:
                        with lock:
                            errors.append(f"{resp.status}: {answer}")
                except (OSError, http.client.HTTPException, ValueError) as exc:
                    conn.close()
                    conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
                    results[i] = (0, None)
                    with lock:
                        errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()

    started = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max_seconds + timeout_s + 5)
    elapsed = time.monotonic() - started
    frames = []
    for i in sorted(results):
        status, answer = results[i]
        part = batches[i % len(batches)].copy()
        part.insert(0, "row", range(len(part)))
        part.insert(0, "request_id", f"{request_prefix}-{i}")
        part["status"] = status
        preds = answer.get("predictions") if status == 200 and isinstance(answer, dict) else None
        part["prediction"] = preds if preds and len(preds) == len(part) else None
        frames.append(part)
    sent = pd.concat(frames, ignore_index=True) if frames else rows.iloc[:0].copy()
    sent_requests = len(results)
    result = TrafficResult(
        sent=sent,
        requests=sent_requests,
        errors=len(errors),
        elapsed_s=elapsed,
        stopped_early=until is None and sent_requests < len(batches),
        error_samples=errors[:5],
    )
    logger.info("traffic: %s in %.1fs", result.summary(), elapsed)
    return result
