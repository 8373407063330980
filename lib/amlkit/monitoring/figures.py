"""The monitoring report's figures: PNG data URIs with alt texts that give their numbers.

Drawn on ``Figure`` objects with the Agg canvas: no pyplot state, safe in threads.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from amlkit import kinds
from amlkit.data.values import category_labels, numeric_values
from amlkit.monitoring.drift import MEASURED_KINDS
from amlkit.monitoring.usage import is_continuous

PLOT_SAMPLE = 50_000  # rows drawn (seeded) per distribution plot
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


class Image(NamedTuple):
    """An embedded figure: a ``data:image/png`` URI and the alt text saying what it shows."""

    src: str
    alt: str


def to_image(fig: Figure, alt: str) -> Image:
    """Render ``fig`` as a PNG data URI (100 dpi, cropped to its content)."""
    buffer = io.BytesIO()
    FigureCanvasAgg(fig)
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return Image("data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode(), alt)


def drift_chart(drift: pd.DataFrame) -> Image:
    """Draw the drift metric per compared feature as bars, red above the dashed threshold."""
    rows = drift[drift["metric"].astype(bool) & drift["value"].notna()].sort_values("value")
    fig = Figure(figsize=(9, max(2.0, 0.32 * len(rows) + 1)))
    ax = fig.subplots()
    drifted = rows["drifted"].astype(bool)
    ax.barh(rows["column"], rows["value"], color=[COLORS["bad" if d else "ok"] for d in drifted])
    for threshold in sorted(set(rows["threshold"])):
        ax.axvline(threshold, color="#333", linestyle="--", linewidth=1)
    ax.set_title("Drift per feature; dashed line: threshold; red: drifted")
    ax.set_xlabel("drift metric (normalized Wasserstein for numbers, Jensen-Shannon otherwise)")
    names = list(rows.loc[drifted, "column"][::-1])
    alt = f"Drift per feature: {len(names)} of {len(rows)} above the threshold"
    return to_image(fig, alt + (f" ({', '.join(names)})" if names else ""))


def _sample(values: pd.Series, seed: int = 0) -> pd.Series:
    values = values.dropna()
    return values.sample(PLOT_SAMPLE, random_state=seed) if len(values) > PLOT_SAMPLE else values


def _number_labels(values: pd.Series, kind: str) -> pd.Series:
    return pd.Series(numeric_values(values, kind)).dropna().map(lambda v: f"{v:g}")


def distribution_chart(
    row: Mapping[str, Any], reference: pd.DataFrame, current: pd.DataFrame
) -> Image:
    """Draw one feature's reference and current distributions (``row``: its drift result).

    Histograms of up to ``PLOT_SAMPLE`` seeded rows each; bars of the share per value for
    categories and integers with few distinct values.
    """
    column, kind = row["column"], row["kind"]
    fig = Figure(figsize=(6, 3.2))
    ax = fig.subplots()
    discrete = kind == "integer" and reference[column].nunique() <= MAX_BARS
    if kind in MEASURED_KINDS and not discrete:
        shape = "histograms"
        ref = numeric_values(_sample(reference[column]), kind)
        cur = numeric_values(_sample(current[column]), kind)
        ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
        both = np.concatenate([ref, cur])
        edges = np.histogram_bin_edges(both, bins=40) if both.size else np.linspace(0, 1, 11)
        for name, values in (("reference", ref), ("current", cur)):
            # stepfilled: one polygon per sample instead of 40 bars, about a third faster
            color = COLORS[name]
            ax.hist(
                values,
                list(edges),
                density=True,
                label=name,
                histtype="stepfilled",
                alpha=0.55,
                color=color,
            )
        if kind == "datetime":
            ticks = ax.get_xticks()
            ax.set_xticks(ticks, [pd.Timestamp(t, unit="s").strftime("%Y-%m-%d") for t in ticks])
            ax.set(xlim=(edges[0], edges[-1]), yticks=[])
            fig.autofmt_xdate()
    else:
        shape = "bars of the share per value"
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
    side = "above" if row["drifted"] else "below"
    alt = (
        f"{column}, reference against current ({shape}): "
        f"{SHORT_NAMES.get(row['metric'], row['metric'])} {row['value']:.3g}, "
        f"{side} the threshold {row['threshold']:g}"
    )
    return to_image(fig, alt)


def _volume_chart(volume: pd.DataFrame, interval: str) -> Image:
    fig = Figure(figsize=(9, 3))
    ax = fig.subplots()
    ax.plot(volume.index, volume["requests"], marker="o", color=COLORS["reference"])
    width = 0.8 * (volume.index[1] - volume.index[0]) if len(volume) > 1 else 0.01
    ax.bar(volume.index, volume["errors"], color=COLORS["bad"], label="errors", width=width)
    ax.set_title(f"Requests per {interval} (red: errors)")
    fig.autofmt_xdate()
    requests, errors = int(volume["requests"].sum()), int(volume["errors"].sum())
    return to_image(fig, f"Requests per {interval}: {requests:,} requests, {errors:,} failed")


def _latency_chart(latency: np.ndarray, quantiles: Mapping[str, float | None]) -> Image:
    fig = Figure(figsize=(9, 3))
    ax = fig.subplots()
    ax.hist(latency, bins=40, histtype="stepfilled", color=COLORS["reference"])
    marks = {k: v for k, v in quantiles.items() if k != "mean" and v is not None}
    top = ax.get_ylim()[1]
    for i, (name, value) in enumerate(marks.items()):  # staggered, so the labels never overlap
        ax.axvline(value, color=COLORS["bad"], linestyle="--", linewidth=1)
        ax.annotate(
            name,
            (value, top * (0.92 - 0.12 * i)),
            fontsize=8,
            xytext=(3, 0),
            textcoords="offset points",
            bbox={"fc": "white", "ec": "none", "alpha": 0.8},
        )
    ax.set(xlabel="latency (ms)", ylabel="requests", title="Latency per request")
    text = ", ".join(f"{k} {v:.1f} ms" for k, v in marks.items())
    return to_image(fig, f"Latency per request, histogram: {text}")


def _predictions_chart(predictions: pd.Series) -> Image:
    fig = Figure(figsize=(6, 3))
    ax = fig.subplots()
    if is_continuous(predictions):
        ax.hist(predictions.to_numpy(), bins=40, histtype="stepfilled", color=COLORS["current"])
        low, mid, high = predictions.quantile([0, 0.5, 1])
        alt = f"histogram from {low:.4g} to {high:.4g}, median {mid:.4g}"
    else:
        shares = predictions.astype(str).value_counts(normalize=True).sort_index()
        ax.bar(shares.index, shares.to_numpy(), color=COLORS["current"])
        ax.set_ylabel("share")
        top = shares.sort_values(ascending=False).head(MAX_BARS)
        alt = "share per class: " + ", ".join(f"{k} {v:.0%}" for k, v in top.items())
    ax.set_title("Predictions served")
    return to_image(fig, f"Predictions served, {alt}")


def confusion_chart(truth: Any, pred: Any, labels: list[str]) -> Image:
    """Draw the confusion matrix of the labelled rows (counts; rows: true, columns: predicted)."""
    from sklearn.metrics import confusion_matrix

    matrix = confusion_matrix(np.asarray(truth, str), np.asarray(pred, str), labels=labels)
    fig = Figure(figsize=(4.8, 4))
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=30)
    ax.set_yticks(range(len(labels)), labels)
    for (i, j), count in np.ndenumerate(matrix):
        dark = count > matrix.max() / 2
        ax.text(j, i, str(count), ha="center", va="center", color="white" if dark else "black")
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix (labelled rows)")
    wrong = matrix * (1 - np.eye(len(labels), dtype=int))
    alt = f"Confusion matrix of {matrix.sum():,} labelled rows: {np.trace(matrix):,} correct"
    if wrong.any():
        i, j = np.unravel_index(wrong.argmax(), wrong.shape)
        alt += f"; most frequent mistake: {labels[i]} predicted as {labels[j]} ({wrong[i, j]} rows)"
    return to_image(fig, alt)


def residual_chart(truth: Any, pred: Any) -> Image:
    """Draw regression residuals (true - predicted) against the prediction."""
    t, p = np.asarray(truth, dtype=float), np.asarray(pred, dtype=float)
    residuals = t - p
    fig = Figure(figsize=(6, 3.2))
    ax = fig.subplots()
    ax.scatter(p, residuals, s=10, alpha=0.6, color=COLORS["current"])
    ax.axhline(0, color="#333", linewidth=1)
    ax.set(
        xlabel="predicted", ylabel="residual (true - predicted)", title="Residuals (labelled rows)"
    )
    alt = (
        f"Residuals of {len(t):,} labelled rows against the prediction: mean "
        f"{residuals.mean():.3g}, largest absolute {np.abs(residuals).max():.3g}"
    )
    return to_image(fig, alt)


def usage_charts(usage: Mapping[str, Any]) -> list[Image]:
    """Draw requests and errors over time, latency, and predictions served (those logged)."""
    frames, charts = usage.get("frames", {}), []
    if (volume := frames.get("volume")) is not None and len(volume):
        charts.append(_volume_chart(volume, usage["interval"]))
    if (latency := frames.get("latency")) is not None and len(latency):
        charts.append(_latency_chart(latency, usage["latency_ms"]))
    if (predictions := frames.get("predictions")) is not None and len(predictions):
        charts.append(_predictions_chart(predictions))
    return charts
