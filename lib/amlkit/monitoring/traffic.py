"""Simulated production traffic: held-out rows, optionally drifted, replayed to a local endpoint.

All is seeded, so a replay and its monitoring decision repeat. Each ``x-request-id`` lands
in the request log and joins the labels, which arrive "later", to the predictions.
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
    """How to bend replayed rows, each ``{column: amount}``.

    ``shift`` adds reference stds; ``scale`` multiplies the distance from the reference mean;
    ``new_category`` and ``null_rate`` are shares of rows set to ``new_label`` or missing.
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
        """Return the four mappings as plain dicts."""
        names = ("shift", "scale", "new_category", "null_rate")
        return {name: dict(getattr(self, name)) for name in names}


@dataclass
class TrafficResult:
    """What :func:`simulate_traffic` sent, a row per row with status and prediction; failures."""

    sent: pd.DataFrame
    requests: int
    errors: int
    elapsed_s: float
    stopped_early: bool
    error_samples: list[str]

    def summary(self) -> dict[str, Any]:
        """Return the counts (no timings) for display."""
        counts = {"requests": self.requests, "rows": len(self.sent), "errors": self.errors}
        return counts | {"stopped_early": self.stopped_early}


def held_out_rows(processed: Any) -> pd.DataFrame:
    """Return the validation and test splits of a ``Processed`` as one frame.

    A ``source_row`` column (``validation:12``) lets a replay be traced and de-duplicated.
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
    passes = [rng.permutation(len(rows)) for _ in range(math.ceil(n / len(rows)))]
    order = np.concatenate([np.empty(0, dtype=np.int64), *passes])
    return rows.iloc[order[:n]].reset_index(drop=True)


def default_drift(
    feature_types: Mapping[str, str], profile: Mapping[str, Any], intensity: float = 1.0
) -> DriftSpec:
    """Return a drift that touches a few features of any data set; ``intensity`` 0 is none.

    The first two numeric features shift by ``intensity`` standard deviations, the third is
    rescaled by ``1 + intensity / 2``; the first categorical feature gets ``0.2 * intensity``
    new categories, the second as many missing values. ``profile`` is not used.
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
    """Return a drifted copy of ``rows``, with reference mean and std from ``profile``.

    KeyError when ``spec`` names a column that ``rows`` lack.
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
    """Send ``rows`` to ``target`` (loopback only) in Azure ML ``input_data`` requests.

    ``concurrency`` threads, each on a keep-alive connection, send ``batch_size`` rows a
    request as ``x-request-id: <request_prefix>-<n>`` until ``max_seconds``; with ``until``
    they cycle over ``rows`` until the event is set (background traffic during a switch).
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
    early = until is None and len(results) < len(batches)
    result = TrafficResult(sent, len(results), len(errors), elapsed, early, errors[:5])
    logger.info("traffic: %s in %.1fs", result.summary(), elapsed)
    return result
