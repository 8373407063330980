"""Monitor a deployed model: production rows against the training baseline, and when to retrain.

Rows come from the request log or a batch file; prediction drift compares with the training
target, as Azure ML does; the retraining rule is deployment_config.json's.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from amlkit import kinds, paths
from amlkit.config import DataConfig, MonitoringConfig
from amlkit.io import sha256_file, sha256_text, write_text_atomic
from amlkit.monitoring import drift as drift_mod
from amlkit.monitoring import quality, report
from amlkit.monitoring.usage import LOG_COLUMNS, usage_summary

logger = logging.getLogger(__name__)

LOG_FIELDS = (
    "request_id",
    "row",
    "time",
    "latency_ms",
    "status",
    "error",
    "prediction",
    "model_name",  # the model, version and deployment that answered (blue/green apart)
    "model_version",
    "deployment",
)


def request_log_dir(endpoint: str) -> Path:
    """Return the endpoint's request-log folder, ``.amlkit/endpoints/<endpoint>/logs``."""
    return paths.state_dir() / "endpoints" / endpoint / "logs"


def report_dir(endpoint: str) -> Path:
    """Return the endpoint's report folder, ``.amlkit/endpoints/<endpoint>/monitoring``."""
    return paths.state_dir() / "endpoints" / endpoint / "monitoring"


def read_request_log(
    folder: str | Path, *, since: Any = None, request_prefix: str | None = None
) -> pd.DataFrame:
    """Read a request-log folder into one frame, a row per logged record, sorted by time.

    Keeps records at or after ``since`` (UTC if naive) of requests whose id starts with
    ``request_prefix``. Columns: ``LOG_FIELDS`` (``time`` in UTC), then the input
    features; a failed request is one record with its ``error`` and no inputs.
    """
    from amlkit.serving.requestlog import read_log

    records = list(read_log(folder))
    inputs = pd.DataFrame([r.get("inputs") or {} for r in records])
    base = pd.DataFrame([{k: r.get(k) for k in LOG_FIELDS} for r in records], columns=LOG_FIELDS)
    frame = pd.concat([base, inputs.drop(columns=list(LOG_FIELDS), errors="ignore")], axis=1)
    frame["time"] = pd.to_datetime(frame["time"], utc=True, format="ISO8601")
    if since is not None:
        frame = frame[frame["time"] >= pd.to_datetime(since, utc=True)]
    if request_prefix:
        frame = frame[frame["request_id"].astype(str).str.startswith(request_prefix)]
    frame = frame.sort_values(["time", "request_id", "row"], kind="stable")
    return frame.reset_index(drop=True)


def requests_frame(log: pd.DataFrame) -> pd.DataFrame:
    """Collapse a read log to one row per request, ``usage.LOG_COLUMNS`` (``n_rows`` scored)."""
    if not len(log):
        return pd.DataFrame(columns=list(LOG_COLUMNS))
    scored = log.assign(scored=(log["status"] == 200).astype(int))
    first = {column: (column, "first") for column in ("time", "latency_ms", "status")}
    grouped = scored.groupby("request_id", sort=False).agg(**first, n_rows=("scored", "sum"))
    return grouped.reset_index().sort_values("time", kind="stable").reset_index(drop=True)


def read_production_file(path: str | Path) -> pd.DataFrame:
    """Read a batch of production rows from a CSV or Parquet file (ValueError otherwise)."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        return pd.read_csv(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path)
    raise ValueError(f"{path} is not a .csv or .parquet file; convert it or pass a DataFrame")


@dataclass
class RetrainingDecision:
    """The outcome of :func:`decide_retraining`: whether to retrain, why, and every check."""

    retrain: bool
    reasons: list[str]
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the decision as plain values."""
        return asdict(self)


def _round(value: Any) -> Any:
    return round(float(value), 4) if isinstance(value, float | np.floating) else value


def decide_retraining(
    drift: pd.DataFrame,
    quality_frame: pd.DataFrame,
    *,
    n_rows: int,
    config: MonitoringConfig,
    prediction_drift: pd.DataFrame | None = None,
    ranking: Sequence[str] | None = None,
) -> RetrainingDecision:
    """Apply the retraining rule (:class:`amlkit.config.RetrainingRule`) to one window.

    ``ranking`` lists the features, most important first, for the top-N check (None skips
    it). Each check of the decision has ``value``, ``limit`` and ``fired``.
    """

    def check(value: Any, limit: Any, fired: bool | None = None, **more: Any) -> dict[str, Any]:
        fired = value > limit if fired is None else fired
        return {"value": value, "limit": limit, "fired": fired, **more}

    checks: dict[str, dict[str, Any]] = {}
    compared = drift[drift["metric"].astype(bool) & drift["value"].notna()]
    mask = compared["drifted"].to_numpy(dtype=bool)
    rules = config.retraining
    if rules.require_significance:
        limits = config.thresholds.model_dump()
        ks, chi = "two_sample_kolmogorov_smirnov_test", "pearsons_chi_squared_test"
        p_value = compared[ks].where(compared[ks].notna(), compared[chi])
        mask &= p_value < compared[ks].notna().map({True: limits[ks], False: limits[chi]})
        mask = np.asarray(mask, dtype=bool)
    drifted = list(compared.loc[mask, "column"])
    share = len(drifted) / len(compared) if len(compared) else 0.0
    checks["drifted_share"] = check(share, rules.max_drifted_share, drifted=drifted)
    if ranking is not None:
        top = list(ranking)[: rules.top_n_features]
        hit = [c for c in top if c in drifted]
        limit = rules.max_drifted_top_features
        checks["drifted_top_features"] = check(len(hit), limit, top=top, drifted=hit)
    if rules.prediction_drift and prediction_drift is not None and len(prediction_drift):
        row = prediction_drift.iloc[0]
        fired = bool(prediction_drift["drifted"].any())
        value, limit, metric = row["value"], row["threshold"], row["metric"]
        checks["prediction_drift"] = check(value, limit, fired, metric=metric)
    for metric, limit in rules.max_quality_rates.model_dump().items():
        worst = quality_frame.sort_values(metric, ascending=False).head(1)
        value, column = (
            (float(worst[metric].iloc[0]), worst["column"].iloc[0]) if len(worst) else (0.0, None)
        )
        checks[metric] = check(value, limit, column=column)
    checks = {k: {n: _round(v) for n, v in c.items()} for k, c in checks.items()}
    reasons = [f"{name} {c['value']} > {c['limit']}" for name, c in checks.items() if c["fired"]]
    if not rules.enabled:
        return RetrainingDecision(False, ["retraining is disabled in the config"], checks)
    if n_rows < rules.min_rows:
        note = f"only {n_rows} rows, fewer than min_rows {rules.min_rows}: no decision"
        return RetrainingDecision(False, [note], checks)
    return RetrainingDecision(bool(reasons), reasons or ["no check fired"], checks)


@dataclass
class MonitoringResult:
    """Everything one monitoring window produced."""

    current: pd.DataFrame
    drift: pd.DataFrame
    prediction_drift: pd.DataFrame | None
    quality: pd.DataFrame
    performance: dict[str, float] | None
    usage: dict[str, Any] | None
    decision: RetrainingDecision

    def summary(self) -> dict[str, Any]:
        """Return the headline numbers (rounded; no times) for a notebook or a log line."""
        head = report.summarize(self.drift, self.quality, None)
        out = {"rows": len(self.current), "drifted_features": head["drifted_features"]}
        out["quality_flagged_features"] = head["quality_flagged_features"]
        out |= {"retrain": self.decision.retrain, "reasons": self.decision.reasons}
        if self.prediction_drift is not None and len(self.prediction_drift):
            out["prediction_drift"] = _round(self.prediction_drift["value"].iloc[0])
        if self.performance:
            out["performance"] = {k: _round(v) for k, v in self.performance.items()}
        if self.usage:
            out["requests"] = self.usage["requests"]
            out["error_rate"] = _round(self.usage["error_rate"])
        return out


def run_monitoring(
    current: pd.DataFrame,
    processed: Any,
    *,
    monitoring_config: MonitoringConfig | None = None,
    predictions: Any = None,
    labels: Any = None,
    requests: pd.DataFrame | None = None,
    ranking: Sequence[str] | None = None,
) -> MonitoringResult:
    """Compare production rows with the training baseline and decide about retraining.

    ``processed`` is the version the deployed model was trained on. ``predictions`` default
    to ``current["prediction"]``, ``labels`` (NaN where not arrived) to the target column,
    when present; ``requests`` (:func:`requests_frame`) give the usage summary.
    """
    cfg = monitoring_config or MonitoringConfig()
    manifest = processed.manifest
    feature_types, target, bins = manifest.feature_types, manifest.target, cfg.bins
    drift = drift_mod.compute_drift(processed.train, current, feature_types, cfg, bins)
    qual = quality.compute_quality(current, processed.profile, cfg)
    qual = qual[qual["column"].isin(list(feature_types))].reset_index(drop=True)
    if predictions is None and "prediction" in current.columns:
        predictions = current["prediction"]
    if labels is None and target in current.columns:
        labels = current[target]
    pred_drift = None
    if predictions is not None:
        kind = kinds.target_kind(manifest.task)
        reference = processed.train[target].rename("prediction")
        current_pred = pd.Series(np.asarray(predictions), name="prediction")
        pred_drift = drift_mod.prediction_drift(reference, current_pred, kind, cfg, bins)
    performance = None
    if labels is not None and predictions is not None and pd.Series(labels).notna().any():
        performance = quality.model_performance(labels, predictions, manifest.task)
    usage = usage_summary(requests, predictions) if requests is not None else None
    decision = decide_retraining(
        drift, qual, n_rows=len(current), config=cfg, prediction_drift=pred_drift, ranking=ranking
    )
    logger.info("monitoring: retrain=%s (%s)", decision.retrain, "; ".join(decision.reasons))
    return MonitoringResult(current, drift, pred_drift, qual, performance, usage, decision)


def write_monitoring_report(
    result: MonitoringResult,
    processed: Any,
    folder: str | Path,
    *,
    title: str = "Model monitoring report",
) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.json`` to ``folder``; append to ``history.jsonl``.

    Returns:
        The paths of the HTML page and of the JSON summary.
    """
    folder, done = Path(folder), result.decision
    decision: dict[str, Any] = {"retrain": done.retrain, "reasons": "; ".join(done.reasons)}
    if result.prediction_drift is not None and len(result.prediction_drift):
        row = result.prediction_drift.iloc[0]
        decision["prediction drift"] = (
            f"{row['metric']} {row['value']:.3f} (threshold {row['threshold']:g})"
        )
    html_path, json_path = report.write_report(
        folder / "report.html",
        drift=result.drift,
        quality=result.quality,
        usage=result.usage,
        reference=processed.train,
        current=result.current,
        decision=decision,
        title=title,
        performance=result.performance,
    )
    line = json.dumps({"report_sha256": sha256_file(json_path), **result.summary()}, default=str)
    history = folder / "history.jsonl"
    previous = history.read_text(encoding="utf-8") if history.is_file() else ""
    write_text_atomic(history, previous + line + "\n")
    return html_path, json_path


def write_retraining_source(
    dataset: str,
    labelled: pd.DataFrame,
    *,
    raw_version: str = "latest",
    data_config: DataConfig | None = None,
) -> Path:
    """Write ``raw_version`` of ``dataset`` plus the labelled production rows to a new CSV.

    Unlabelled rows are left out, a replayed ``source_row`` is kept once, and logged rows
    go in request-id order, so the file does not depend on arrival order. The file lands in
    ``data/external/`` under its content hash, ready for ``amlkit.data.ingest``.
    """
    from amlkit.data import ingest

    frame, raw = ingest.load_raw(dataset, raw_version, data_config)
    target = raw.target
    if target not in labelled.columns:
        raise ValueError(f"production rows lack the target {target!r}; attach the labels first")
    rows = labelled.dropna(subset=[target])
    if "request_id" in rows.columns and "row" in rows.columns:  # log order is arrival order
        rows = rows.sort_values(["request_id", "row"], kind="stable")
    if "source_row" in rows.columns:
        rows = rows.drop_duplicates("source_row")
    rows = rows[[c for c in frame.columns if c in rows.columns]].copy()
    for column, spec in raw.schema_.items():
        if spec.get("type") == "integer" and column in rows.columns:
            rows[column] = pd.to_numeric(rows[column]).round().astype("Int64")
    text = pd.concat([frame, rows], ignore_index=True).to_csv(index=False)
    path = paths.data_dir() / "external" / f"{dataset}-retraining-{sha256_text(text)[:12]}.csv"
    write_text_atomic(path, text)
    logger.info("retraining data: %d raw + %d production rows -> %s", len(frame), len(rows), path)
    return path
