"""The monitoring verdict in plain words: one sentence, then what was watched and what was done.

The sentence is made from the retraining rule's own checks (``monitor.decide_retraining``),
so its counts are the rule's counts: with ``require_significance`` a feature counts as
shifted only when its distance is above the threshold and its test is significant.
:func:`drift_note` says which features crossed the distance threshold without that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from amlkit.monitoring import served

QUALITY_PHRASES = {
    "null_value_rate": "are missing",
    "data_type_error_rate": "have the wrong type",
    "out_of_bounds_rate": "are outside the training range or categories",
}


@dataclass(frozen=True)
class Watched:
    """What a monitoring window watched, and the action taken on its verdict.

    Attributes:
        model: the registered model's name.
        version: its version.
        traffic: the endpoint's traffic split during the window, ``{deployment: percent}``.
        action: what was done, in words ("retrained; version 2 promoted; traffic moved to
            green"), or "none".
        baseline: the model's scores on the training test split (``performance_metrics.json``'s
            ``test``), the baseline of realized performance.
    """

    model: str
    version: int | str
    traffic: Mapping[str, int] = field(default_factory=dict)
    action: str = "none"
    baseline: Mapping[str, float] = field(default_factory=dict)


def _duration(seconds: float) -> str:
    parts, left = [], round(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if left >= size:
            parts.append(f"{left // size} {unit}")
            left %= size
    return " ".join(parts + ([f"{left} s"] if left or not parts else []))


def _share(value: float) -> str:
    return f"{value:.1%}" if 0 < value < 0.01 else f"{value:.0%}"


def _names(columns: Sequence[str]) -> str:
    return _join([f"'{c}'" for c in columns])


def _join(parts: Sequence[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _phrases(checks: Mapping[str, Mapping[str, Any]]) -> list[str]:
    fired = {name: c for name, c in checks.items() if c["fired"]}
    out = []
    if share := fired.get("drifted_share"):
        out.append(f"{len(share['drifted'])} of {share['compared']} inputs shifted significantly")
    if top := fired.get("drifted_top_features"):
        hit, n = top["drifted"], len(top["top"])
        if share:
            out[-1] += f", {len(hit)} of them among the {n} most important"
        else:
            out.append(f"{_names(hit)}, among the {n} most important inputs, shifted")
    if pred := fired.get("prediction_drift"):
        out.append(f"the mix of predictions changed ({pred['value']:.2f} > {pred['limit']:g})")
    if attribution := fired.get("attribution_drift"):
        out.append(
            "the ranking of what drives predictions changed "
            f"(NDCG {attribution['value']:.2f} < {attribution['limit']:g})"
        )
    for metric, verb in QUALITY_PHRASES.items():
        if check := fired.get(metric):
            more = len(check.get("columns", [])) - 1
            tail = f" ({more} more column{'s' * (more > 1)} over the limit)" if more > 0 else ""
            out.append(f"{_share(check['value'])} of '{check['column']}' values {verb}{tail}")
    return out


def sentence(
    checks: Mapping[str, Mapping[str, Any]],
    *,
    retrain: bool,
    n_rows: int,
    min_rows: int,
    enabled: bool = True,
) -> str:
    """Return the verdict as one sentence, from the rule's checks."""
    found = _phrases(checks)
    if not enabled:
        return "Retraining is disabled in the config; " + (
            f"the checks found that {_join(found)}." if found else "no check fired."
        )
    if n_rows < min_rows:
        return f"Too few rows to decide: {n_rows} in the window, the rule needs {min_rows}."
    if retrain:
        return f"Retraining recommended: {_join(found)}."
    return (
        "No action needed: no input shifted significantly; predictions and quality are in limits."
    )


def version_labels(keys: Sequence[tuple[str | None, str | None]]) -> list[str]:
    """Name each served (model name, version): ``"version 1"``, or with the model's name too.

    The name is left out when every version belongs to one model.
    """
    one_model = len({name for name, _ in keys}) == 1
    return [
        f"version {version}" if one_model and version is not None else served.label((name, version))
        for name, version in keys
    ]


def versions_sentence(parts: Sequence[tuple[str, int, bool, str]]) -> str:
    """Return the verdict of a window that several versions served.

    ``parts``: per version, largest first, its label, rows, whether its rule fired, and its
    own sentence.
    """
    due = [name for name, _, retrain, _ in parts if retrain]
    head = f"Retraining recommended for {_join(due)}" if due else "No action needed"
    rows = _join([f"{name} ({n:,} rows)" for name, n, _, _ in parts])
    each = " ".join(f"{name[0].upper()}{name[1:]}: {words}" for name, _, _, words in parts)
    return f"{head}; {len(parts)} versions served this window: {rows}. {each}"


def drift_note(checks: Mapping[str, Mapping[str, Any]], drift: pd.DataFrame) -> str:
    """Say what the rule counts as shifted, and which features it left out and why."""
    share = checks.get("drifted_share")
    if share is None:
        return ""
    counted = f"{len(share['drifted'])} of {share['compared']}"
    rule = "The rule counts a feature as shifted when its distance is above the threshold"
    if not share.get("require_significance"):
        return f"{rule}: {counted}."
    note = f"{rule} and its test is significant: {counted}."
    above = set(drift.loc[drift["drifted"].astype(bool), "column"])
    if left_out := sorted(above - set(share["drifted"])):
        one = len(left_out) == 1
        note += (
            f" {_names(left_out)} {'crosses' if one else 'cross'} the distance threshold without "
            f"a significant test, so the rule does not count {'it' if one else 'them'}."
        )
    return note


def facts(
    watched: Watched | None,
    window: Mapping[str, Any] | None,
    rows: int,
    reference_rows: int | None,
    versions: Sequence[Mapping[str, Any]] = (),
) -> list[tuple[str, str]]:
    """Return the lines under the verdict: model, deployments, window, rows, reference, action.

    ``versions``, when more than one served (``monitor.MonitoringResult.served``), adds a line
    with each version's rows and deployments.
    """
    out = []
    if watched is not None:
        split = ", ".join(f"{name} {share}%" for name, share in watched.traffic.items())
        several = "versions" if len(versions) > 1 else "version"
        out += [("model", f"{watched.model} {several} {watched.version}")]
        out += [("deployments (traffic)", split or "not recorded")]
    if len(versions) > 1:
        labels = version_labels([(v.get("model"), v.get("version")) for v in versions])
        lines = [
            f"{name}: {v['rows']:,} rows"
            + (f" on {', '.join(v['deployments'])}" * bool(v.get("deployments")))
            for name, v in zip(labels, versions, strict=True)
        ]
        out.append(("versions served", "; ".join(lines)))
    if window and window.get("start"):
        start, end = (pd.Timestamp(window[k]) for k in ("start", "end"))
        seconds = max((end - start).total_seconds(), 0)
        span = _duration(seconds)
        stamp = "%Y-%m-%d %H:%M:%S"
        out.append(("window", f"{start:{stamp}} to {end:{stamp}} UTC ({span})"))
    out.append(("rows in the window", f"{rows:,}"))
    if reference_rows is not None:
        out.append(("reference rows (training split)", f"{reference_rows:,}"))
    if watched is not None:
        out.append(("action taken", watched.action))
    return out
