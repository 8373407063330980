"""The champion gate: promote a new version only when it beats the current champion.

Both versions are scored with the same function on the same test data. A promotion sets the
MLflow registry alias ``champion`` and rewrites ``<name>/champion.json`` atomically; every
decision, promoted or not, is appended to ``<name>/decisions.jsonl`` and logged to the
candidate's MLflow run.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from mlflow import MlflowClient

from amlkit import io
from amlkit.registry import tracking
from amlkit.registry.store import (
    CHAMPION_ALIAS,
    CHAMPION_FILE,
    ModelVersion,
    _plain,
    _utc_now,
    get_version,
    model_dir,
    read_champion,
)

logger = logging.getLogger(__name__)

DECISIONS_FILE = "decisions.jsonl"


@dataclass(frozen=True)
class PromotionDecision:
    """The outcome of :func:`promote_if_better`, as written to ``decisions.jsonl``."""

    name: str
    promoted: bool
    candidate_version: int
    champion_version: int | None
    candidate_score: float
    champion_score: float | None
    metric: str
    greater_is_better: bool
    margin: float
    reason: str
    decided_at: str

    def to_dict(self) -> dict[str, Any]:
        """Return the decision as a plain dict."""
        return asdict(self)


def _append_decision(name: str, decision: PromotionDecision) -> None:
    line = io.canonical_json(decision.to_dict()) + "\n"
    with open(model_dir(name) / DECISIONS_FILE, "a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def promote_if_better(
    candidate: ModelVersion,
    *,
    metric: str,
    greater_is_better: bool,
    margin: float,
    score: Callable[[ModelVersion], float],
) -> PromotionDecision:
    """Promote ``candidate`` to champion when it beats the current one by more than ``margin``.

    Both the candidate and the current champion are scored with the same ``score`` function
    (the caller evaluates them on the same data). The first version is always promoted.

    Args:
        candidate: the new version.
        metric: the metric's name, for the record.
        greater_is_better: True for accuracy-like metrics, False for errors.
        margin: how much better (in metric units, >= 0) the candidate must be.
        score: returns the metric of a version.

    Returns:
        The decision, also appended to ``decisions.jsonl`` and logged to the candidate's run.
    """
    if margin < 0 or not math.isfinite(margin):
        raise ValueError(f"margin must be a finite number >= 0, got {margin!r}.")
    current = read_champion(candidate.name)
    champion = get_version(candidate.name, int(current["version"])) if current else None
    cand_score = float(score(candidate))
    champ_score = float(score(champion)) if champion is not None else None
    if not math.isfinite(cand_score):
        promoted, reason = False, f"candidate {metric} is {cand_score}, not a finite number"
    elif champion is None:
        promoted, reason = True, "no champion yet: the first model is promoted"
    elif champion.version == candidate.version:
        promoted, reason = False, "the candidate is already the champion"
    else:
        gain = cand_score - champ_score if greater_is_better else champ_score - cand_score
        promoted = not math.isfinite(champ_score) or gain > margin
        word = "beats" if promoted else "does not beat"
        reason = (
            f"candidate {metric}={cand_score:.6g} {word} champion {champ_score:.6g} "
            f"by more than margin {margin:g} (gain {gain:.6g})"
        )
    decision = PromotionDecision(
        name=candidate.name,
        promoted=promoted,
        candidate_version=candidate.version,
        champion_version=champion.version if champion else None,
        candidate_score=cand_score,
        champion_score=champ_score,
        metric=metric,
        greater_is_better=greater_is_better,
        margin=float(margin),
        reason=reason,
        decided_at=_utc_now(),
    )
    if promoted:
        tracking.ensure_tracking()
        MlflowClient().set_registered_model_alias(
            candidate.name, CHAMPION_ALIAS, candidate.metadata["mlflow_model_version"]
        )
        record = {
            "name": candidate.name,
            "version": candidate.version,
            "mlflow_model_version": candidate.metadata["mlflow_model_version"],
            "metric": metric,
            "score": cand_score,
            "previous": decision.champion_version,
            "decided_at": decision.decided_at,
        }
        io.write_json_atomic(model_dir(candidate.name) / CHAMPION_FILE, _plain(record))
    _append_decision(candidate.name, decision)
    logger.info("champion gate for %s: %s", candidate.name, reason)
    run_id = candidate.metadata.get("mlflow_run_id")
    if run_id:
        _log_decision(run_id, decision)
    return decision


def _log_decision(run_id: str, decision: PromotionDecision) -> None:
    client = MlflowClient()
    stamp = decision.decided_at.replace(":", "").replace("-", "")
    path = f"champion_gate/decision-v{decision.candidate_version}-{stamp}.json"
    client.log_dict(run_id, _plain(decision.to_dict()), path)
    client.set_tag(run_id, "champion_gate.promoted", str(decision.promoted).lower())
    client.set_tag(run_id, "champion_gate.reason", decision.reason[:5000])
