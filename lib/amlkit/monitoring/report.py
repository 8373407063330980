"""The monitoring report: a self-contained HTML page (no network, no JavaScript), a JSON twin.

The page leads with the verdict (one sentence, then what was watched and what was done), then
trends, performance (realized and estimated), what drives the predictions (feature attribution
drift), drift, distributions, quality and usage. Its
sections live in the jinja2 templates under ``templates/`` (``report.html`` one block per
section, ``macros.html`` tables, figures and cards, ``index.html`` the list of reports),
autoescaped; this module prepares what they show: formatted table cells with flags, headline
cards, figures.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd

from amlkit.io import plain, write_json_atomic, write_text_atomic
from amlkit.monitoring import figures
from amlkit.monitoring.attribution import METRIC as ATTRIBUTION_METRIC
from amlkit.monitoring.attribution import AttributionDrift
from amlkit.monitoring.figures import SHORT_NAMES

logger = logging.getLogger(__name__)

EXTRA_DISTRIBUTIONS = 3  # undrifted features plotted beside the drifted ones
DRIFT_COLUMNS = ["column", "kind", "metric", "distance", "threshold", "drifted"]
DRIFT_COLUMNS += ["p_value", "significant", "counted", "population_stability_index", "note"]
RATES = ("null_value_rate", "data_type_error_rate", "out_of_bounds_rate")
QUALITY_COLUMNS = ["column", "kind", "n_rows", "nulls", "type_errors", "out_of_bounds"]
QUALITY_COLUMNS += [*RATES, "note"]
HEADERS = {  # table headers that differ from the column names
    "drifted": "above threshold",
    "p_value": "test p-value (KS or chi²)",
    "significant": "significant",
    "counted": "counted by the rule",
}


@functools.cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("amlkit.monitoring"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )


def _cell(value: Any) -> str:
    """Format one table value: floats to 4 significant digits, missing as blank."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.4g}"
    return str(SHORT_NAMES.get(value, value) if isinstance(value, str) else value)


def _table(
    frame: pd.DataFrame, columns: list[str] | None = None, flags: Mapping[str, str] | None = None
) -> dict[str, list[Any]]:
    """Return ``columns`` of ``frame`` as header and rows of (text, bad) cells.

    A cell is bad where the row's ``flags[column]`` is true.
    """
    flags, columns = flags or {}, columns or list(frame.columns)
    return {
        "header": [HEADERS.get(c, SHORT_NAMES.get(c, c)) for c in columns],
        "rows": [
            [(_cell(row[c]), c in flags and bool(row[flags[c]])) for c in columns]
            for row in frame.to_dict(orient="records")
        ],
    }


def _usage_section(usage: Mapping[str, Any]) -> dict[str, Any]:
    cards = [
        ("requests", f"{usage['requests']:,}"),
        ("rows scored", f"{usage['rows_scored']:,}"),
        ("error rate", f"{usage['error_rate']:.2%}"),
    ]
    for name, value in usage["latency_ms"].items():
        cards.append((f"latency {name}", "n/a" if value is None else f"{value:.1f} ms"))
    span = None
    if usage.get("start"):
        span = [pd.Timestamp(usage[k]).strftime("%Y-%m-%d %H:%M") for k in ("start", "end")]
    return {"cards": cards, "span": span, "charts": figures.usage_charts(usage)}


def _distributions(
    drift: pd.DataFrame, reference: pd.DataFrame, current: pd.DataFrame
) -> dict[str, Any]:
    ranked = drift[drift["value"].notna()].sort_values("value", ascending=False)
    drifted = ranked["drifted"].astype(bool)
    chosen = pd.concat([ranked[drifted], ranked[~drifted].head(EXTRA_DISTRIBUTIONS)])
    shown = chosen["column"].isin(reference.columns) & chosen["column"].isin(current.columns)
    images = [
        figures.distribution_chart(row, reference, current)
        for row in chosen[shown].to_dict("records")
    ]
    return {"images": images, "extra": EXTRA_DISTRIBUTIONS, "sample": f"{figures.PLOT_SAMPLE:,}"}


def _metric_name(name: str) -> str:
    return name.replace("_macro", " (macro)").replace("_weighted", " (weighted)").replace("_", " ")


def _performance_section(perf: Mapping[str, Any]) -> dict[str, Any]:
    """Tables, cards and figures of realized and estimated performance."""
    baseline, real, est = perf.get("baseline") or {}, perf.get("realized"), perf.get("estimated")
    out: dict[str, Any] = {"cards": [], "images": [], "per_class": None, "table": None, "n": None}
    if est and "mae" in est:  # a regression model's expected error
        low, high = est["mae_low"], est["mae_high"]
        out["cards"] += [("expected MAE", f"{est['mae']:.3f} ({low:.3f} to {high:.3f})")]
        out["cards"] += [("expected RMSE", f"{est['rmse']:.3f}")]
        if not est["reliable"]:
            out["cards"] += [("estimate unreliable", est["unreliable_reason"])]
    elif est:
        low = est.get("accuracy_low", est["accuracy"] - 1.96 * est["accuracy_std"])
        high = est.get("accuracy_high", est["accuracy"] + 1.96 * est["accuracy_std"])
        out["cards"] += [
            ("estimated accuracy", f"{est['accuracy']:.3f} ({low:.3f} to {high:.3f})"),
            ("estimated F1 (macro)", f"{est['f1_macro']:.3f}"),
        ]
        if not est.get("reliable", True):
            out["cards"] += [("estimate unreliable", est["unreliable_reason"])]
    if real:
        metrics = real["metrics"]
        rows = [
            {
                "metric": _metric_name(k),
                "training test": baseline.get(k),
                "production": v,
                "change": v - baseline[k] if k in baseline else None,
            }
            for k, v in metrics.items()
        ]
        out["table"], out["n"] = _table(pd.DataFrame(rows)), f"{real['n']:,}"
        if est and "mae" in est:
            out["cards"] += [("realized MAE", f"{metrics['mae']:.3f}")]
            out["cards"] += [("realized RMSE", f"{metrics['rmse']:.3f}")]
        elif est:
            out["cards"] += [("realized accuracy", f"{metrics['accuracy']:.3f}")]
            if not low <= metrics["accuracy"] <= high:
                outside = "the realized accuracy is outside the estimate's interval"
                out["cards"] += [("estimate missed", outside)]
            out["cards"] += [("realized F1 (macro)", f"{metrics['f1_macro']:.3f}")]
        if real.get("per_class"):
            frame = pd.DataFrame(real["per_class"]).T.rename_axis("class").reset_index()
            out["per_class"] = _table(frame)
        if frames := perf.get("frames"):
            truth, pred = frames["truth"], frames["pred"]
            chart = (
                figures.confusion_chart(truth, pred, real["labels"]) if "labels" in real else None
            )
            out["images"] = [chart or figures.residual_chart(truth, pred)]
    return out


ATTRIBUTION_TOP = 5  # features shown of each ranking


def _attribution_section(found: AttributionDrift) -> dict[str, Any]:
    """The two importance rankings side by side, the NDCG and what it means, in words."""
    shown = found.rankings(ATTRIBUTION_TOP)
    moved = shown["production feature"] != shown["training feature"]
    frame = shown.reset_index().assign(moved=moved.to_numpy())
    columns = ["rank", "training feature", "training importance"]
    columns += ["production feature", "production importance"]
    table = _table(frame, columns, {"production feature": "moved"})
    table["header"] = [
        "rank",
        "in training: feature",
        "importance",
        "in production: feature",
        "importance",
    ]
    return {
        "changed": found.drifted,
        "ndcg": f"{found.ndcg:.3f}" if math.isfinite(found.ndcg) else "n/a",
        "threshold": f"{found.threshold:g}",
        "metric": ATTRIBUTION_METRIC,
        "rows": (f"{found.reference_rows:,}", f"{found.production_rows:,}"),
        "table": table,
    }


def summarize(
    drift: pd.DataFrame, quality: pd.DataFrame, decision: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Return the headline numbers: ``status``, drifted and flagged columns.

    ``status`` is alert when retraining is recommended or, without a verdict, when a column
    drifted or was flagged.
    """
    drifted = list(drift.loc[drift["drifted"], "column"]) if len(drift) else []
    flagged = list(quality.loc[quality["flagged"], "column"]) if len(quality) else []
    alert = decision["retrain"] if decision and "retrain" in decision else drifted or flagged
    return {
        "status": "alert" if alert else "ok",
        "features_compared": int(drift["metric"].astype(bool).sum()) if len(drift) else 0,
        "drifted_features": drifted,
        "quality_flagged_features": flagged,
        "decision": dict(decision) if decision else None,
    }


def _drift_rows(drift: pd.DataFrame, checks: Mapping[str, Any]) -> pd.DataFrame:
    """Add the test's p-value, whether it is significant and whether the rule counts it."""
    share = checks.get("drifted_share") or {}
    ks, chi = "two_sample_kolmogorov_smirnov_test", "pearsons_chi_squared_test"
    out = drift.assign(
        distance=drift["value"], p_value=drift[ks].where(drift[ks].notna(), drift[chi])
    )
    out["significant"] = out["column"].isin(share.get("significant", []))
    out["counted"] = out["column"].isin(share.get("drifted", []))
    return out


def _window(
    drift: pd.DataFrame,
    quality: pd.DataFrame,
    reference: pd.DataFrame | None,
    current: pd.DataFrame | None,
    verdict: Mapping[str, Any],
    performance: Mapping[str, Any] | None,
    attribution: AttributionDrift | None = None,
) -> dict[str, Any]:
    """Return what the page shows of one comparison: rule, performance, attribution, drift."""
    checks = verdict.get("checks") or {}
    distributions = None
    if reference is not None and current is not None and len(drift):
        distributions = _distributions(drift, reference, current)
    rule = {k: {n: c.get(n) for n in ("value", "limit", "fired")} for k, c in checks.items()}
    limits = verdict.get("quality_limits") or {}
    quality_header = {
        r: f"{SHORT_NAMES[r]} (red above {limits[r][0]:g}; rule acts above {limits[r][1]:g})"
        for r in RATES
        if r in limits
    }
    quality_table = _table(quality, QUALITY_COLUMNS, {r: f"{r}_flagged" for r in RATES})
    quality_table["header"] = [
        quality_header.get(c, h)
        for c, h in zip(QUALITY_COLUMNS, quality_table["header"], strict=True)
    ]
    return {
        "rule": _table(pd.DataFrame(rule).T.rename_axis("check").reset_index()) if rule else None,
        "performance": _performance_section(performance) if performance else None,
        "attribution": _attribution_section(attribution) if attribution is not None else None,
        "drift_chart": figures.drift_chart(drift) if drift["value"].notna().any() else None,
        "drift_table": _table(_drift_rows(drift, checks), DRIFT_COLUMNS, {"distance": "drifted"}),
        "distributions": distributions,
        "quality_table": quality_table,
    }


def _record(
    drift: pd.DataFrame,
    quality: pd.DataFrame,
    performance: Mapping[str, Any] | None,
    attribution: AttributionDrift | None = None,
) -> dict[str, Any]:
    """Return the JSON twin's drift, quality, performance and attribution of one comparison."""
    return {
        "performance": {k: v for k, v in performance.items() if k != "frames"}
        if performance
        else None,
        "attribution": attribution.to_dict() if attribution is not None else None,
        "drift": drift.to_dict(orient="records"),
        "quality": quality.to_dict(orient="records"),
    }


def write_report(
    path: str | os.PathLike[str],
    *,
    drift: pd.DataFrame,
    quality: pd.DataFrame,
    usage: Mapping[str, Any] | None = None,
    reference: pd.DataFrame | None = None,
    current: pd.DataFrame | None = None,
    verdict: Mapping[str, Any] | None = None,
    performance: Mapping[str, Any] | None = None,
    trends: list[figures.Image] | None = None,
    title: str = "Model monitoring report",
    sections: Sequence[Mapping[str, Any]] | None = None,
    attribution: AttributionDrift | None = None,
) -> tuple[Path, Path]:
    """Write the HTML report to ``path`` and its JSON twin beside it (``.json``), atomically.

    ``usage`` None leaves usage out; ``reference`` and ``current`` rows enable the
    distribution plots. ``verdict``: ``sentence``, ``retrain``, ``facts`` (label, value
    pairs), ``note``, ``quality_limits`` and the rule's ``checks``; its other keys (model,
    version, window, action ...) go to the JSON twin as they are. ``performance``:
    ``baseline`` (training test metrics), ``realized`` and ``estimated``
    (:mod:`amlkit.monitoring.performance`), ``frames`` (``truth``, ``pred``) for the plots.
    ``attribution``: the feature attribution drift (:mod:`amlkit.monitoring.attribution`), or
    None to leave it out. ``trends``: :func:`amlkit.monitoring.trends.trend_charts`.
    ``sections``, when several
    model versions served, one per version, each with its ``heading`` and its own ``drift``,
    ``quality``, ``reference``, ``current``, ``verdict``, ``performance`` and ``attribution``
    (optional): the page shows
    them in place of the single comparison, and the twin lists them under ``sections``.

    Returns:
        The paths of the HTML page and of the JSON twin.
    """
    html_path = Path(path)
    json_path = html_path.with_suffix(".json")
    verdict = dict(verdict or {})
    summary = summarize(
        drift, quality, {k: verdict[k] for k in ("retrain", "sentence") if k in verdict}
    )
    created = datetime.now(UTC).isoformat(timespec="seconds")
    parts = [
        {
            "heading": section["heading"],
            "verdict": section["verdict"],
            **_window(
                section["drift"],
                section["quality"],
                section.get("reference"),
                section.get("current"),
                section["verdict"],
                section.get("performance"),
                section.get("attribution"),
            ),
        }
        for section in sections or []
    ]
    window = (
        _window(drift, quality, reference, current, verdict, performance, attribution)
        if not parts
        else {}
    )
    page = (
        _templates()
        .get_template("report.html")
        .render(
            title=title,
            created=created,
            summary=summary,
            verdict=verdict,
            trends=trends or [],
            sections=parts,
            usage=_usage_section(usage) if usage is not None else None,
            **{"rule": None, "attribution": None} | window,
        )
    )
    skip = ("facts", "note")
    record = {
        "title": title,
        "created": created,
        **{k: v for k, v in verdict.items() if k not in skip},
        "summary": summary,
        **_record(drift, quality, performance, attribution),
        "usage": {k: v for k, v in usage.items() if k != "frames"} if usage else usage,
        "html": html_path.name,
    }
    if sections:
        record["sections"] = [
            {
                "heading": section["heading"],
                **{k: v for k, v in section["verdict"].items() if k not in skip},
                **_record(
                    section["drift"],
                    section["quality"],
                    section.get("performance"),
                    section.get("attribution"),
                ),
            }
            for section in sections
        ]
    write_text_atomic(html_path, page)
    write_json_atomic(json_path, plain(record))
    logger.info("monitoring report written: %s (%s)", html_path, summary["status"])
    return html_path, json_path


def write_index(
    folder: str | os.PathLike[str], lines: list[Mapping[str, Any]], *, title: str
) -> Path:
    """Write ``index.html`` in ``folder``: every report of the history, newest first."""
    rows = [
        {
            "time": pd.Timestamp(line["window"]["end"]).strftime("%Y-%m-%d %H:%M:%S"),
            "model": f"{line.get('model')} v{line.get('version')}",
            "href": line.get("report"),
            "verdict": line.get("verdict", ""),
            "action": line.get("action", ""),
            "status": "alert" if line.get("retrain") else "ok",
        }
        for line in reversed(lines)
    ]
    created = datetime.now(UTC).isoformat(timespec="seconds")
    page = _templates().get_template("index.html").render(title=title, created=created, rows=rows)
    path = Path(folder) / "index.html"
    write_text_atomic(path, page)
    return path
