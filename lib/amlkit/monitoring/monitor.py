"""Monitor a deployed model: production rows against the training baseline, and when to retrain.

Rows come from the request log or a batch file; prediction drift compares with the training
target, as Azure ML does; the retraining rule is deployment_config.json's, and its verdict is
a sentence (:mod:`amlkit.monitoring.verdict`). Given the model, performance is estimated
before labels arrive (:mod:`amlkit.monitoring.performance`) and the ranking of feature importance
is compared with training's (:mod:`amlkit.monitoring.attribution`). Reports go to
``.amlkit/endpoints/<endpoint>/monitoring/``: a page per window under ``reports/``,
``history.jsonl`` (the trends) and ``index.html`` (every report, newest first).
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from amlkit import kinds, paths
from amlkit.config import DataConfig, MonitoringConfig
from amlkit.io import sha256_text, write_text_atomic
from amlkit.monitoring import attribution as attribution_mod
from amlkit.monitoring import drift as drift_mod
from amlkit.monitoring import expected_error, probabilities, quality, report, trends, verdict
from amlkit.monitoring import performance as perf_mod
from amlkit.monitoring import served as served_mod
from amlkit.monitoring.usage import LOG_COLUMNS, usage_summary
from amlkit.names import check_name

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
    "log_line",  # the request's line in the log: tells apart requests that reuse an id
)


def request_log_dir(endpoint: str) -> Path:
    """Return the endpoint's request-log folder, ``.amlkit/endpoints/<endpoint>/logs``."""
    return paths.state_dir() / "endpoints" / check_name("endpoint", endpoint) / "logs"


def report_dir(endpoint: str) -> Path:
    """Return the endpoint's report folder, ``.amlkit/endpoints/<endpoint>/monitoring``."""
    return paths.state_dir() / "endpoints" / check_name("endpoint", endpoint) / "monitoring"


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
    """Collapse a read log to one row per request, ``usage.LOG_COLUMNS`` (``n_rows`` scored).

    Requests are told apart by their ``log_line``, so clients reusing an id count once per
    request; a frame without it (not read from a request log) goes by ``request_id``.
    """
    if not len(log):
        return pd.DataFrame(columns=list(LOG_COLUMNS))
    key = "log_line" if "log_line" in log.columns and log["log_line"].notna().all() else None
    scored = log.assign(scored=(log["status"] == 200).astype(int))
    first = {c: (c, "first") for c in ("request_id", "time", "latency_ms", "status")}
    grouped = scored.groupby(key or "request_id", sort=False).agg(**first, n_rows=("scored", "sum"))
    frame = grouped.reset_index(drop=True)[list(LOG_COLUMNS)]
    return frame.sort_values("time", kind="stable").reset_index(drop=True)


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
    verdict: str = ""

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
    attribution: attribution_mod.AttributionDrift | None = None,
) -> RetrainingDecision:
    """Apply the retraining rule (:class:`amlkit.config.RetrainingRule`) to one window.

    ``ranking`` lists the features, most important first, for the top-N check (None skips
    it); ``attribution`` (None skips it) gives the feature attribution drift check, which
    fires when its NDCG is below the threshold. Each check of the decision has ``value``,
    ``limit`` and ``fired``.
    """

    def check(value: Any, limit: Any, fired: bool | None = None, **more: Any) -> dict[str, Any]:
        fired = value > limit if fired is None else fired
        return {"value": value, "limit": limit, "fired": fired, **more}

    checks: dict[str, dict[str, Any]] = {}
    compared = drift[drift["metric"].astype(bool) & drift["value"].notna()]
    mask = compared["drifted"].to_numpy(dtype=bool)
    rules = config.retraining
    limits = config.thresholds.model_dump()
    ks, chi = "two_sample_kolmogorov_smirnov_test", "pearsons_chi_squared_test"
    p_value = compared[ks].where(compared[ks].notna(), compared[chi])
    limit = compared[ks].notna().map({True: limits[ks], False: limits[chi]})
    significant = np.asarray(p_value < limit, dtype=bool)
    if rules.require_significance:
        mask &= significant
    drifted = list(compared.loc[mask, "column"])
    share = len(drifted) / len(compared) if len(compared) else 0.0
    checks["drifted_share"] = check(
        share,
        rules.max_drifted_share,
        drifted=drifted,
        compared=len(compared),
        significant=list(compared.loc[significant, "column"]),
        require_significance=rules.require_significance,
    )
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
    # -- feature attribution drift: the importance ranking against training's (NDCG) --
    if rules.attribution_drift and attribution is not None and np.isfinite(attribution.ndcg):
        checks["attribution_drift"] = check(
            attribution.ndcg,
            attribution.threshold,
            attribution.drifted,
            metric=attribution_mod.METRIC,
            below=True,
            top=list(attribution.reference.index[:3]),
            production_top=list(attribution.production.index[:3]),
        )
    # -- end of feature attribution drift --
    for metric, limit in rules.max_quality_rates.model_dump().items():
        worst = quality_frame.sort_values(metric, ascending=False).head(1)
        value, column = (
            (float(worst[metric].iloc[0]), worst["column"].iloc[0]) if len(worst) else (0.0, None)
        )
        columns = list(quality_frame.loc[quality_frame[metric] > limit, "column"])
        checks[metric] = check(value, limit, column=column, columns=columns, flag_at=limits[metric])
    checks = {k: {n: _round(v) for n, v in c.items()} for k, c in checks.items()}
    reasons = [
        f"{name} {c['value']} {'<' if c.get('below') else '>'} {c['limit']}"
        for name, c in checks.items()
        if c["fired"]
    ]
    retrain = bool(reasons) and rules.enabled and n_rows >= rules.min_rows
    words = verdict.sentence(
        checks, retrain=retrain, n_rows=n_rows, min_rows=rules.min_rows, enabled=rules.enabled
    )
    if not rules.enabled:
        reasons = ["retraining is disabled in the config"]
    elif n_rows < rules.min_rows:
        reasons = [f"only {n_rows} rows, fewer than min_rows {rules.min_rows}: no decision"]
    return RetrainingDecision(retrain, reasons or ["no check fired"], checks, words)


@dataclass
class MonitoringResult:
    """Everything one monitoring window produced.

    ``performance`` holds ``task``, ``realized`` and ``estimated``
    (:mod:`amlkit.monitoring.performance`, None when not known) and, under ``frames``,
    the labelled rows' ``truth`` and ``pred``. ``served`` has one entry per model version
    that answered rows (``model``, ``version``, ``rows``, ``deployments``, ``training_data``,
    ``reference_rows``). When several versions served, ``sections`` holds each version's own
    result, compared with its own reference; ``drift``, ``quality``, ``prediction_drift`` and
    ``performance`` are then those of the version that answered the most rows, and
    ``decision`` is the window's: retrain when the rule fired for any version.
    ``attribution`` is the feature attribution drift, when the model was given.
    """

    current: pd.DataFrame
    drift: pd.DataFrame
    prediction_drift: pd.DataFrame | None
    quality: pd.DataFrame
    performance: dict[str, Any]
    usage: dict[str, Any] | None
    decision: RetrainingDecision
    served: list[dict[str, Any]] = field(default_factory=list)
    sections: list[MonitoringResult] = field(default_factory=list)
    reference: served_mod.Reference | None = None
    attribution: attribution_mod.AttributionDrift | None = None

    def window(self) -> dict[str, str]:
        """Return the window's ``start`` and ``end`` (request times, else now), ISO 8601."""
        times = self.current["time"].dropna() if "time" in self.current else pd.Series()
        if len(times):
            times = pd.to_datetime(times, utc=True)
            return {"start": times.min().isoformat(), "end": times.max().isoformat()}
        now = datetime.now(UTC).isoformat(timespec="seconds")
        return {"start": now, "end": now}

    def summary(self) -> dict[str, Any]:
        """Return the headline numbers (rounded; no times) for a notebook or a log line.

        ``served`` names each version that answered and its rows; with several, ``versions``
        holds each one's summary and the feature lists gather every version's.
        """
        parts = self.sections or [self]
        heads = [report.summarize(p.drift, p.quality, None) for p in parts]

        def gathered(lists: list[list[str]]) -> list[str]:
            return list(dict.fromkeys(c for names in lists for c in names))

        out = {
            "verdict": self.decision.verdict,
            "rows": len(self.current),
            "served": [
                {k: s[k] for k in ("model", "version", "rows", "training_data")}
                for s in self.served
            ],
            "shifted_significantly": gathered(
                [p.decision.checks["drifted_share"]["drifted"] for p in parts]
            ),
            "above_distance_threshold": gathered([h["drifted_features"] for h in heads]),
            "quality_flagged_features": gathered([h["quality_flagged_features"] for h in heads]),
            "retrain": self.decision.retrain,
            "reasons": self.decision.reasons,
        }
        if self.sections:
            out["versions"] = {
                served_mod.label(_key(s.served[0])): s.summary() for s in self.sections
            }
            return out | _usage_summary(self.usage)
        if self.prediction_drift is not None and len(self.prediction_drift):
            out["prediction_drift"] = _round(self.prediction_drift["value"].iloc[0])
        if self.attribution is not None:
            out["attribution_ndcg"] = _round(self.attribution.ndcg)
        for kind in ("realized", "estimated"):
            if found := self.performance.get(kind):
                values = found.get("metrics", found)
                out[kind] = {k: _round(v) for k, v in values.items() if k in SUMMARY_METRICS}
        return out | _usage_summary(self.usage)


def _usage_summary(usage: dict[str, Any] | None) -> dict[str, Any]:
    if not usage:
        return {}
    return {"requests": usage["requests"], "error_rate": _round(usage["error_rate"])}


def _key(entry: dict[str, Any]) -> served_mod.Key:
    return served_mod.version_key(entry.get("model"), entry.get("version"))


SUMMARY_METRICS = ("accuracy", "f1_macro", "mae", "rmse", "r2")


def _performance(
    current: pd.DataFrame, processed: Any, predictions: Any, labels: Any, model: Any
) -> dict[str, Any]:
    manifest = processed.manifest
    out: dict[str, Any] = {"task": manifest.task, "realized": None, "estimated": None}
    if labels is not None and predictions is not None:
        truth, pred = pd.Series(np.asarray(labels)), pd.Series(np.asarray(predictions))
        out["realized"] = perf_mod.realized(truth, pred, manifest.task)
        keep = (truth.notna() & pred.notna()).to_numpy()
        out["frames"] = {"truth": truth[keep].to_numpy(), "pred": pred[keep].to_numpy()}
    if model is not None and manifest.task == "classification":  # Keras: probabilities too
        model = probabilities.as_classifier(model, processed.train[manifest.target])
    if model is not None and manifest.task == "classification" and hasattr(model, "predict_proba"):
        features, test = list(manifest.feature_types), processed.test
        reference = model.predict_proba(test[features])
        calibration = perf_mod.calibrate(
            reference,
            test[manifest.target],
            model.classes_,
            features=test[features],
            feature_types=manifest.feature_types,
            predict_proba=model.predict_proba,
        )
        served = current[current["prediction"].notna()] if "prediction" in current else current
        out["estimated"] = perf_mod.estimate(
            calibration, model.predict_proba(served[features]), features=served[features]
        )
    if model is not None and manifest.task == "regression" and hasattr(model, "predict"):
        out["estimated"] = _expected_error(current, processed, model)
    return out


def _expected_error(current: pd.DataFrame, processed: Any, model: Any) -> dict[str, Any] | None:
    """Expected MAE and RMSE of a regression model's served rows, fitted on the test split."""
    manifest = processed.manifest
    features, test = list(manifest.feature_types), processed.test
    errors = expected_error.fit(
        test[features], test[manifest.target], model.predict(test[features]), manifest.feature_types
    )
    served = current[current["prediction"].notna()] if "prediction" in current else current
    return errors.estimate(served[features], model.predict(served[features]))


def _attribution(
    current: pd.DataFrame, processed: Any, predictions: Any, model: Any, cfg: MonitoringConfig
) -> attribution_mod.AttributionDrift | None:
    """Feature attribution drift of the window, or None without a model that predicts."""
    manifest = processed.manifest
    if model is None or not hasattr(model, "predict") or not len(current):
        return None
    try:
        return attribution_mod.attribution_drift(
            model,
            processed.train,
            current,
            features=list(manifest.feature_types),
            target=manifest.target,
            task=manifest.task,
            predictions=None if predictions is None else np.asarray(predictions, dtype=object),
            threshold=cfg.thresholds.normalized_discounted_cumulative_gain,
        )
    except Exception as exc:  # the other signals stand without it
        logger.warning("feature attribution drift left out: %s", exc)
        return None


def run_monitoring(
    current: pd.DataFrame,
    processed: Any,
    *,
    monitoring_config: MonitoringConfig | None = None,
    predictions: Any = None,
    labels: Any = None,
    requests: pd.DataFrame | None = None,
    ranking: Sequence[str] | None = None,
    model: Any = None,
) -> MonitoringResult:
    """Compare production rows with the training baseline and decide about retraining.

    ``processed`` is the version the deployed model was trained on. ``predictions`` default
    to ``current["prediction"]``, ``labels`` (NaN where not arrived) to the target column,
    when present; ``requests`` (:func:`requests_frame`) give the usage summary. ``model``, a
    classifier with ``predict_proba``, gives the estimate of accuracy and F1 before labels
    arrive, calibrated on the processed test split (its features too: the estimate's shift
    correction and its ``reliable`` flag, see :func:`amlkit.monitoring.performance.estimate`);
    a Keras classifier gives it through its probabilities
    (:func:`amlkit.monitoring.probabilities.as_classifier`); a regression model gives the
    expected MAE and RMSE (:mod:`amlkit.monitoring.expected_error`), its error model fitted
    on the same split; and the feature attribution drift
    (:mod:`amlkit.monitoring.attribution`: the importance ranking on the training split
    against the one on these rows, the predictions as their labels).
    """
    cfg = monitoring_config or MonitoringConfig()
    manifest = processed.manifest
    feature_types, target, bins = manifest.feature_types, manifest.target, cfg.bins
    limits = cfg.thresholds.model_dump()
    drift = drift_mod.compute_drift(processed.train, current, feature_types, limits, bins)
    qual = quality.compute_quality(current, processed.profile, limits)
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
        pred_drift = drift_mod.prediction_drift(reference, current_pred, kind, limits, bins)
    performance = _performance(current, processed, predictions, labels, model)
    usage = usage_summary(requests, predictions) if requests is not None else None
    attribution = _attribution(current, processed, predictions, model, cfg)
    decision = decide_retraining(
        drift,
        qual,
        n_rows=len(current),
        config=cfg,
        prediction_drift=pred_drift,
        ranking=ranking,
        attribution=attribution,
    )
    logger.info("monitoring: retrain=%s (%s)", decision.retrain, "; ".join(decision.reasons))
    keys = list(served_mod.served_versions(current))
    if len(keys) > 1:
        logger.warning(
            "the rows were answered by %s but are all compared with one reference; "
            "run_monitoring_by_version compares each version with its own",
            ", ".join(served_mod.label(k) for k in keys),
        )
    entries = [_served_entry(k, current, processed) for k in keys[:1]] if len(keys) == 1 else []
    result = MonitoringResult(current, drift, pred_drift, qual, performance, usage, decision)
    result.served, result.attribution = entries, attribution
    return result


def _served_entry(key: served_mod.Key, rows: pd.DataFrame, processed: Any) -> dict[str, Any]:
    """Describe one served version: who, how many rows, where, and what it is compared with."""
    manifest = processed.manifest
    return {
        "model": key[0],
        "version": key[1],
        "rows": len(rows),
        "deployments": served_mod.deployments(rows),
        "training_data": {"dataset": manifest.dataset, "version": manifest.version},
        "reference_rows": len(processed.train),
    }


def run_monitoring_by_version(
    current: pd.DataFrame,
    references: Mapping[served_mod.Key, served_mod.Reference],
    *,
    monitoring_config: MonitoringConfig | None = None,
    requests: pd.DataFrame | None = None,
    ranking: Sequence[str] | None = None,
) -> MonitoringResult:
    """Compare each model version's rows with that version's own reference.

    ``references`` maps each (model name, version) key that the rows name
    (:func:`amlkit.monitoring.served.served_versions`; :data:`~amlkit.monitoring.served.UNLOGGED`
    for rows that name none) to its :class:`~amlkit.monitoring.served.Reference`. With one
    version the result is :func:`run_monitoring`'s; with several, it has one section per
    version (largest first), and its verdict says which versions served, with their rows.

    Raises:
        ValueError: a version that answered rows has no reference; the message names it.
    """
    groups = served_mod.served_versions(current)
    if not groups:  # no rows: the one reference given, if one
        groups = dict.fromkeys(list(references)[:1], np.arange(len(current)))
    if missing := [key for key in groups if key not in references]:
        named = ", ".join(f"{served_mod.label(k)} ({len(groups[k])} rows)" for k in missing)
        raise ValueError(
            f"no reference data for {named}, which answered rows of this window; give a "
            "reference (the processed data it was trained on) for every version that served"
        )
    parts = []
    for key, index in sorted(groups.items(), key=lambda pair: -len(pair[1])):
        ref, rows = references[key], current.iloc[index]
        part = run_monitoring(
            rows,
            ref.processed,
            monitoring_config=monitoring_config,
            requests=requests if len(groups) == 1 else None,
            ranking=ranking,
            model=ref.model,
        )
        part.served, part.reference = [_served_entry(key, rows, ref.processed)], ref
        parts.append(part)
    if len(parts) == 1:
        return parts[0]
    main = parts[0]
    predictions = current["prediction"] if "prediction" in current.columns else None
    usage = usage_summary(requests, predictions) if requests is not None else None
    decision = _window_decision(parts)
    logger.info("monitoring: retrain=%s (%s)", decision.retrain, "; ".join(decision.reasons))
    return MonitoringResult(
        current,
        main.drift,
        main.prediction_drift,
        main.quality,
        main.performance,
        usage,
        decision,
        served=[part.served[0] for part in parts],
        sections=parts,
        reference=main.reference,
        attribution=main.attribution,
    )


def _window_decision(parts: list[MonitoringResult]) -> RetrainingDecision:
    """Combine the versions' decisions: retrain when any fired; the verdict names them all."""
    labels = verdict.version_labels([_key(p.served[0]) for p in parts])
    pairs = list(zip(labels, parts, strict=True))
    reasons = [f"{name}: {reason}" for name, p in pairs for reason in p.decision.reasons]
    words = verdict.versions_sentence(
        [(name, len(p.current), p.decision.retrain, p.decision.verdict) for name, p in pairs]
    )
    return RetrainingDecision(any(p.decision.retrain for p in parts), reasons, {}, words)


def write_monitoring_report(
    result: MonitoringResult,
    processed: Any,
    folder: str | Path,
    *,
    watched: verdict.Watched | None = None,
    title: str = "Model monitoring report",
) -> tuple[Path, Path]:
    """Write one window's report and JSON twin under ``folder/reports/``; update the history.

    The window is appended to ``folder/history.jsonl`` (the trends) and ``folder/index.html``
    is rewritten. ``watched``: the model, the traffic split, the action taken and the
    training test scores.

    Returns:
        The paths of the HTML page and of the JSON twin.
    """
    folder = Path(folder)
    name = f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
    metric = "accuracy" if processed.manifest.task == "classification" else "mae"
    line = trends.history_line(result, watched, metric) | {"report": f"reports/{name}.html"}
    history = folder / "history.jsonl"
    lines = [*trends.read_history(history), line]
    threshold = result.drift["threshold"].dropna()
    charts = trends.trend_charts(
        lines,
        threshold=float(threshold.max()) if len(threshold) else 0.1,
        metric=metric,
        baseline=line["performance"]["baseline"],
    )
    several = bool(result.sections)
    reference_rows = None if several else len(processed.train)
    page = {
        **{k: line[k] for k in ("model", "version", "traffic", "action", "window", "rows")},
        "reference_rows": reference_rows,
        "served": result.served,
        **_verdict_page(result),
        "facts": verdict.facts(
            watched, line["window"], len(result.current), reference_rows, result.served
        ),
    }
    baseline = watched.baseline if watched else {}
    sections = [
        _section(part, part.reference.processed if part.reference else processed, baseline)
        for part in result.sections
    ]
    html_path, json_path = report.write_report(
        folder / "reports" / f"{name}.html",
        drift=result.drift,
        quality=result.quality,
        usage=result.usage,
        reference=processed.train,
        current=result.current,
        verdict=page,
        performance={**result.performance, "baseline": baseline},
        trends=charts,
        title=title,
        sections=sections,
        attribution=None if several else result.attribution,
    )
    previous = history.read_text(encoding="utf-8") if history.is_file() else ""
    write_text_atomic(history, previous + json.dumps(line, default=str) + "\n")
    report.write_index(folder, [*lines], title=f"Monitoring reports: {folder.parent.name}")
    return html_path, json_path


def _verdict_page(result: MonitoringResult) -> dict[str, Any]:
    """Return the verdict of one comparison as the report shows it: sentence, checks, notes."""
    checks = result.decision.checks
    return {
        "sentence": result.decision.verdict,
        "retrain": result.decision.retrain,
        "reasons": result.decision.reasons,
        "checks": checks,
        "note": verdict.drift_note(checks, result.drift),
        "quality_limits": {
            m: (checks[m]["flag_at"], checks[m]["limit"])
            for m in quality.QUALITY_METRICS
            if m in checks
        },
    }


def _section(
    part: MonitoringResult, processed: Any, baseline: Mapping[str, float]
) -> dict[str, Any]:
    """Return one served version's section of a report: its rows against its own reference."""
    entry = part.served[0]
    key = _key(entry)
    data = entry["training_data"]
    facts = verdict.facts(None, part.window(), len(part.current), len(processed.train))
    facts.insert(0, ("compared with", f"training data {data['dataset']} {data['version']}"))
    if entry["deployments"]:
        facts.insert(0, ("deployments", ", ".join(entry["deployments"])))
    own = part.reference.baseline if part.reference and part.reference.baseline else baseline
    return {
        "heading": f"{served_mod.label(key)}: {len(part.current):,} rows",
        "drift": part.drift,
        "quality": part.quality,
        "reference": processed.train,
        "current": part.current,
        "verdict": {
            "model": key[0],
            "version": key[1],
            "rows": len(part.current),
            "training_data": data,
            "reference_rows": len(processed.train),
            **_verdict_page(part),
            "facts": facts,
        },
        "performance": {**part.performance, "baseline": own},
        "attribution": part.attribution,
    }


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
