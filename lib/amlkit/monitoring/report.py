"""The monitoring report: a self-contained HTML page (no network, no JavaScript), a JSON twin.

The page's sections live in the jinja2 templates under ``templates/`` (``report.html`` one
block per section, ``macros.html`` tables, figures and cards), autoescaped; this module
prepares what they show: formatted table cells with flags, headline cards, figures.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from amlkit.io import plain, write_json_atomic, write_text_atomic
from amlkit.monitoring import figures
from amlkit.monitoring.figures import SHORT_NAMES

logger = logging.getLogger(__name__)

EXTRA_DISTRIBUTIONS = 3  # undrifted features plotted beside the drifted ones
DRIFT_COLUMNS = ["column", "kind", "metric", "value", "threshold", "drifted"]
DRIFT_COLUMNS += ["two_sample_kolmogorov_smirnov_test", "population_stability_index"]
DRIFT_COLUMNS += ["pearsons_chi_squared_test", "note"]
RATES = ("null_value_rate", "data_type_error_rate", "out_of_bounds_rate")
QUALITY_COLUMNS = ["column", "kind", "n_rows", "nulls", "type_errors", "out_of_bounds"]
QUALITY_COLUMNS += [*RATES, "note"]


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
        "header": [SHORT_NAMES.get(c, c) for c in columns],
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


def summarize(
    drift: pd.DataFrame, quality: pd.DataFrame, decision: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Return the headline numbers: ``status`` (alert or ok), drifted and flagged columns."""
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
    """Write the HTML report to ``path`` and its JSON summary beside it (``.json``), atomically.

    ``usage`` None leaves usage out; ``reference`` and ``current`` rows enable the
    distribution plots; ``decision`` is a free-form mapping shown in the summary box.

    Returns:
        The paths of the HTML page and of the JSON summary.
    """
    html_path = Path(path)
    json_path = html_path.with_suffix(".json")
    summary = summarize(drift, quality, decision)
    head: dict[str, Any] = {"title": title}
    head |= {"created": datetime.now(UTC).isoformat(timespec="seconds"), "summary": summary}
    distributions = None
    if reference is not None and current is not None and len(drift):
        distributions = _distributions(drift, reference, current)
    template = _templates().get_template("report.html")
    page = template.render(
        **head,
        performance=_table(pd.DataFrame([dict(performance)])) if performance else None,
        drift_chart=figures.drift_chart(drift) if drift["value"].notna().any() else None,
        drift_table=_table(drift, DRIFT_COLUMNS, {"value": "drifted"}),
        distributions=distributions,
        quality_table=_table(quality, QUALITY_COLUMNS, {r: f"{r}_flagged" for r in RATES}),
        usage=_usage_section(usage) if usage is not None else None,
    )
    record = head | {
        "drift": drift.to_dict(orient="records"),
        "quality": quality.to_dict(orient="records"),
        "usage": {k: v for k, v in usage.items() if k != "frames"} if usage else usage,
        "performance": dict(performance) if performance else None,
        "html": html_path.name,
    }
    write_text_atomic(html_path, page)
    write_json_atomic(json_path, plain(record))
    logger.info("monitoring report written: %s (%s)", html_path, summary["status"])
    return html_path, json_path
