"""The monitoring report: one self-contained HTML page with a JSON twin.

The page is written for business analysts: a decision box first, then drift per feature,
reference-versus-current distributions, data quality and service usage. Plots are
matplotlib/seaborn PNGs embedded as base64, so the page needs no network access and no
JavaScript. Both files are written atomically (``amlkit.io``).
"""

from __future__ import annotations

import base64
import html
import io
import logging
import math
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from amlkit import kinds
from amlkit.io import write_json_atomic, write_text_atomic
from amlkit.monitoring.drift import (
    MEASURED_KINDS,
    category_labels,
    numeric_values,
)
from amlkit.monitoring.usage import is_continuous

logger = logging.getLogger(__name__)

PLOT_SAMPLE = 50_000  # rows drawn (seeded) per distribution plot
EXTRA_DISTRIBUTIONS = 3  # undrifted features plotted beside the drifted ones
MAX_BARS = 15  # categories (or distinct integers) shown as bars
SHORT_NAMES = {
    "two_sample_kolmogorov_smirnov_test": "KS p-value",
    "population_stability_index": "PSI",
    "pearsons_chi_squared_test": "chi² p-value",
    "normalized_wasserstein_distance": "normalized Wasserstein",
    "jensen_shannon_distance": "Jensen-Shannon",
    "null_value_rate": "null rate",
    "data_type_error_rate": "type-error rate",
    "out_of_bounds_rate": "out-of-bounds rate",
}
COLORS = {"reference": "#4c72b0", "current": "#dd8452", "ok": "#55a868", "bad": "#c44e52"}
CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:1100px;
color:#222;padding:0 1rem}h1{margin-bottom:.2rem}.meta{color:#666;margin-top:0}
.box{border-radius:8px;padding:1rem 1.4rem;margin:1rem 0;border:2px solid}
.ok{background:#eef7f0;border-color:#55a868}.alert{background:#fbeeee;border-color:#c44e52}
table{border-collapse:collapse;margin:.5rem 0 1.5rem;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.3rem .6rem;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}td.bad{background:#f6d5d5;font-weight:600}
img{max-width:100%;height:auto;display:block;margin:.5rem 0 1.5rem}
.grid{display:flex;flex-wrap:wrap;gap:0 1rem}.grid img{width:48%;min-width:320px}
.cards{display:flex;gap:1rem;flex-wrap:wrap}.card{background:#f7f7f7;border-radius:6px;
padding:.6rem 1rem;min-width:8rem}.card b{display:block;font-size:1.4rem}
"""


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    FigureCanvasAgg(fig)
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="plot" src="data:image/png;base64,{data}">'


def _drift_chart(drift: pd.DataFrame) -> str:
    rows = drift[drift["metric"].astype(bool) & drift["value"].notna()].sort_values("value")
    fig = Figure(figsize=(9, max(2.0, 0.32 * len(rows) + 1)))
    ax = fig.subplots()
    colors = [COLORS["bad"] if d else COLORS["ok"] for d in rows["drifted"]]
    ax.barh(rows["column"], rows["value"], color=colors)
    for threshold in sorted(set(rows["threshold"])):
        ax.axvline(threshold, color="#333", linestyle="--", linewidth=1)
    ax.set_xlabel("drift metric (normalized Wasserstein for numbers, Jensen-Shannon otherwise)")
    ax.set_title("Drift per feature; dashed line: threshold; red: drifted")
    return _png(fig)


def _sample(values: pd.Series, seed: int = 0) -> pd.Series:
    values = values.dropna()
    if len(values) > PLOT_SAMPLE:
        values = values.sample(PLOT_SAMPLE, random_state=seed)
    return values


def _number_labels(values: pd.Series, kind: str) -> pd.Series:
    numbers = pd.Series(numeric_values(values, kind)).dropna()
    return numbers.map(lambda v: f"{v:g}")


def _distribution(column: str, kind: str, reference: pd.DataFrame, current: pd.DataFrame) -> str:
    fig = Figure(figsize=(6, 3.2))
    ax = fig.subplots()
    discrete = kind == "integer" and reference[column].nunique() <= MAX_BARS
    if kind in MEASURED_KINDS and not discrete:
        ref = numeric_values(_sample(reference[column]), kind)
        cur = numeric_values(_sample(current[column]), kind)
        ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
        both = np.concatenate([ref, cur])
        edges = np.histogram_bin_edges(both, bins=40) if both.size else 10
        for name, values in (("reference", ref), ("current", cur)):
            ax.hist(values, bins=edges, density=True, alpha=0.55, label=name, color=COLORS[name])
        if kind == "datetime":
            ticks = ax.get_xticks()
            ax.set_xticks(ticks, [pd.Timestamp(t, unit="s").strftime("%Y-%m-%d") for t in ticks])
            ax.set_xlim(edges[0], edges[-1])
            ax.set_yticks([])
            fig.autofmt_xdate()
    else:
        labels = category_labels if kind in kinds.CATEGORY_KINDS else _number_labels
        ref = labels(reference[column], kind).value_counts(normalize=True)
        cur = labels(current[column], kind).value_counts(normalize=True)
        table = pd.DataFrame({"reference": ref, "current": cur}).fillna(0.0)
        if kind in kinds.CATEGORY_KINDS:
            table = table.sort_values("reference", ascending=False).head(MAX_BARS)
        else:
            table = table.loc[sorted(table.index, key=float)]
        table.plot.bar(ax=ax, color=[COLORS["reference"], COLORS["current"]], rot=30)
        ax.set_ylabel("share")
    ax.set_title(column)
    ax.legend()
    return _png(fig)


def _usage_charts(usage: Mapping[str, Any]) -> list[str]:
    import seaborn as sns  # imported here: only the usage plots need it

    frames = usage.get("frames", {})
    charts = []
    volume = frames.get("volume")
    if volume is not None and len(volume):
        fig = Figure(figsize=(9, 3))
        ax = fig.subplots()
        ax.plot(volume.index, volume["requests"], marker="o", color=COLORS["reference"])
        ax.bar(
            volume.index,
            volume["errors"],
            color=COLORS["bad"],
            label="errors",
            width=0.8 * (volume.index[1] - volume.index[0]) if len(volume) > 1 else 0.01,
        )
        ax.set_title(f"Requests per {usage.get('interval')} (red: errors)")
        fig.autofmt_xdate()
        charts.append(_png(fig))
    latency = frames.get("latency")
    if latency is not None and len(latency):
        fig = Figure(figsize=(9, 3))
        ax = fig.subplots()
        sns.histplot(x=latency, ax=ax, bins=40, color=COLORS["reference"])
        for name, value in usage["latency_ms"].items():
            if name != "mean" and value is not None:
                ax.axvline(value, color=COLORS["bad"], linestyle="--", linewidth=1)
                ax.annotate(name, (value, ax.get_ylim()[1] * 0.9), fontsize=8)
        ax.set_xlabel("latency (ms)")
        ax.set_title("Latency per request")
        charts.append(_png(fig))
    predictions = frames.get("predictions")
    if predictions is not None and len(predictions):
        fig = Figure(figsize=(6, 3))
        ax = fig.subplots()
        if is_continuous(predictions):
            sns.histplot(x=predictions.to_numpy(), ax=ax, bins=40, color=COLORS["current"])
        else:
            shares = predictions.astype(str).value_counts(normalize=True).sort_index()
            ax.bar(shares.index, shares.to_numpy(), color=COLORS["current"])
            ax.set_ylabel("share")
        ax.set_title("Predictions served")
        charts.append(_png(fig))
    return charts


def _table(
    frame: pd.DataFrame, columns: list[str] | None = None, flags: Mapping[str, str] | None = None
) -> str:
    """Render ``columns`` of ``frame``; a cell is marked bad where ``row[flags[column]]``."""
    flags = flags or {}
    columns = columns or list(frame.columns)
    head = "".join(f"<th>{html.escape(SHORT_NAMES.get(c, c))}</th>" for c in columns)
    body = []
    for _, row in frame.iterrows():
        cells = []
        for column in columns:
            value = SHORT_NAMES.get(row[column], row[column])
            text = f"{value:.4g}" if isinstance(value, float) and math.isfinite(value) else value
            text = "" if isinstance(value, float) and math.isnan(value) else text
            bad = column in flags and bool(row[flags[column]])
            cells.append(f"<td{' class=bad' if bad else ''}>{html.escape(str(text))}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items() if k != "frames"}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def summarize(
    drift: pd.DataFrame, quality: pd.DataFrame, decision: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Return the headline numbers of a report (also the top of its JSON summary).

    Args:
        drift: the result of ``drift.compute_drift`` (or ``prediction_drift``).
        quality: the result of ``quality.compute_quality``.
        decision: what the caller decided (e.g. ``{"retrain": true, "reason": ...}``).

    Returns:
        ``status`` (``alert`` or ``ok``), the drifted and quality-flagged columns, counts.
    """
    drifted = list(drift.loc[drift["drifted"], "column"]) if len(drift) else []
    flagged = list(quality.loc[quality["flagged"], "column"]) if len(quality) else []
    return {
        "status": "alert" if drifted or flagged else "ok",
        "features_compared": int(drift["metric"].astype(bool).sum()) if len(drift) else 0,
        "drifted_features": drifted,
        "quality_flagged_features": flagged,
        "decision": dict(decision) if decision else None,
    }


def write_report(
    path: str | os.PathLike[str],
    *,
    drift: pd.DataFrame,
    quality: pd.DataFrame,
    usage: Mapping[str, Any] | None = None,
    reference: pd.DataFrame | None = None,
    current: pd.DataFrame | None = None,
    decision: Mapping[str, Any] | None = None,
    title: str = "Model monitoring report",
    performance: Mapping[str, float] | None = None,
) -> tuple[Path, Path]:
    """Write the HTML report to ``path`` and its JSON summary beside it (``.json``).

    Args:
        path: the HTML file to write (folders are created).
        drift: the result of ``drift.compute_drift``.
        quality: the result of ``quality.compute_quality``.
        usage: the result of ``usage.usage_summary``, or None to leave usage out.
        reference: the reference rows, for the distribution plots (optional).
        current: the current rows, for the distribution plots (optional).
        decision: the caller's decision, shown in the summary box (free-form mapping).
        title: the page title.
        performance: ``quality.model_performance`` output when labels arrived.

    Returns:
        The paths of the HTML page and of the JSON summary.
    """
    html_path = Path(path)
    json_path = html_path.with_suffix(".json")
    summary = summarize(drift, quality, decision)
    created = datetime.now(UTC).isoformat(timespec="seconds")
    alert = summary["status"] == "alert"
    drifted, flagged = summary["drifted_features"], summary["quality_flagged_features"]
    box = [
        f"<h2>{'Attention needed' if alert else 'No drift or quality issue'}</h2><ul>",
        f"<li>{len(drifted)} of {summary['features_compared']} features drifted"
        f"{': ' + html.escape(', '.join(drifted)) if drifted else ''}</li>",
        f"<li>{len(flagged)} features with data-quality issues"
        f"{': ' + html.escape(', '.join(flagged)) if flagged else ''}</li>",
    ]
    for key, value in (decision or {}).items():
        box.append(f"<li><b>{html.escape(str(key))}</b>: {html.escape(str(value))}</li>")
    parts = [
        f"<h1>{html.escape(title)}</h1><p class=meta>generated {created}</p>",
        f'<div class="box {"alert" if alert else "ok"}">{"".join(box)}</ul></div>',
    ]
    if performance:
        parts.append("<h2>Model performance</h2>")
        parts.append(_table(pd.DataFrame([dict(performance)])))
    parts.append("<h2>Drift per feature</h2>")
    if len(drift) and drift["value"].notna().any():
        parts.append(_drift_chart(drift))
    shown = [
        "column",
        "kind",
        "metric",
        "value",
        "threshold",
        "drifted",
        "two_sample_kolmogorov_smirnov_test",
        "population_stability_index",
        "pearsons_chi_squared_test",
        "note",
    ]
    parts.append(_table(drift, shown, {"value": "drifted"}))
    if reference is not None and current is not None and len(drift):
        ranked = drift[drift["value"].notna()].sort_values("value", ascending=False)
        chosen = list(ranked.loc[ranked["drifted"], "column"])
        chosen += list(ranked.loc[~ranked["drifted"], "column"][:EXTRA_DISTRIBUTIONS])
        parts.append("<h2>Reference and current distributions</h2>")
        parts.append(
            f"<p>Drifted features, then the {EXTRA_DISTRIBUTIONS} closest to drifting; "
            f"up to {PLOT_SAMPLE:,} rows drawn per sample.</p>"
        )
        kinds = dict(zip(drift["column"], drift["kind"], strict=True))
        plots = [
            _distribution(column, kinds[column], reference, current)
            for column in chosen
            if column in reference.columns and column in current.columns
        ]
        parts.append(f"<div class=grid>{''.join(plots)}</div>")
    parts.append("<h2>Data quality</h2>")
    rates = ("null_value_rate", "data_type_error_rate", "out_of_bounds_rate")
    parts.append(
        _table(
            quality,
            ["column", "kind", "n_rows", "nulls", "type_errors", "out_of_bounds", *rates, "note"],
            {r: f"{r}_flagged" for r in rates},
        )
    )
    if usage is not None:
        lat = usage["latency_ms"]
        cards = [
            ("requests", f"{usage['requests']:,}"),
            ("rows scored", f"{usage['rows_scored']:,}"),
            ("error rate", f"{usage['error_rate']:.2%}"),
        ]
        cards += [(f"latency {k}", "n/a" if v is None else f"{v:.1f} ms") for k, v in lat.items()]
        parts.append(
            "<h2>Service usage</h2><div class=cards>"
            + "".join(
                f"<div class=card>{html.escape(k)}<b>{html.escape(v)}</b></div>" for k, v in cards
            )
            + "</div>"
        )
        if usage.get("start"):
            span = [pd.Timestamp(usage[k]).strftime("%Y-%m-%d %H:%M") for k in ("start", "end")]
            parts.append(f"<p>From {span[0]} to {span[1]} UTC.</p>")
        parts.extend(_usage_charts(usage))
    page = (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
        + "\n".join(parts)
        + "</body></html>\n"
    )
    record = {
        "title": title,
        "created": created,
        "summary": summary,
        "drift": drift.to_dict(orient="records"),
        "quality": quality.to_dict(orient="records"),
        "usage": usage,
        "performance": dict(performance) if performance else None,
        "html": html_path.name,
    }
    write_text_atomic(html_path, page)
    write_json_atomic(json_path, _jsonable(record))
    logger.info("monitoring report written: %s (%s)", html_path, summary["status"])
    return html_path, json_path
