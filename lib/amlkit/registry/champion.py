"""The champion gate: promote a new version only when it beats the current champion.

Decisions on one model take turns (a file lock). Every decision is appended to
``<name>/decisions.jsonl`` and logged to the candidate's run.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from mlflow import MlflowClient
from pydantic import ConfigDict

from amlkit import io
from amlkit.data.manifests import Record
from amlkit.registry import store

logger = logging.getLogger(__name__)

DECISIONS_FILE = "decisions.jsonl"


class PromotionDecision(Record):
    """The outcome of :func:`promote_if_better`: one line of ``decisions.jsonl``."""

    model_config = ConfigDict(frozen=True, extra="ignore", ser_json_inf_nan="constants")

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


def read_decisions(name: str) -> list[PromotionDecision]:
    """Return every decision of the gate for model ``name``, oldest first.

    A damaged line (torn by a failed write, or garbage) is skipped with a warning that
    names the file and the line.
    """
    path = store.model_dir(name) / DECISIONS_FILE
    if not path.is_file():
        return []
    return [decision for _, decision in io.read_lines(path, PromotionDecision.model_validate_json)]


def _append_decision(decision: PromotionDecision) -> None:
    """Append ``decision`` on a line of its own (after a torn one too) and fsync it."""
    appender = io.LineAppender(store.model_dir(decision.name) / DECISIONS_FILE, mode=0o644)
    try:
        appender.append(decision.model_dump_json().encode("utf-8") + b"\n")
        appender.sync()
    finally:
        appender.close()


def promote_if_better(
    candidate: store.ModelVersion,
    *,
    metric: str,
    greater_is_better: bool,
    margin: float,
    score: Callable[[store.ModelVersion], float],
) -> PromotionDecision:
    """Promote ``candidate`` when it beats the champion by more than ``margin`` (metric units).

    Both are scored by ``score`` (on the same data); the first version is always promoted.
    The champion is :func:`amlkit.registry.store.find_champion`'s: the registry's (the MLflow
    alias ``champion``, else the tag ``amlkit.champion``), else ``champion.json``; a damaged
    file is refused. Its folder is fetched from the registry when it is not here (a job's
    fresh output folder), so a job compares against the champion of the registry it
    registers in.
    """
    if margin < 0 or not math.isfinite(margin):
        raise ValueError(f"margin must be a finite number >= 0, got {margin!r}.")
    with io.locked(f"champion-{candidate.name}"):  # each decision sees the last one's champion
        # the registry's champion, fetched when not here (a missing file is not "no champion")
        champion = store.find_champion(candidate.name)
        cand_score = float(score(candidate))
        champ_score = float(score(champion)) if champion is not None else None
        if not math.isfinite(cand_score):
            promoted, reason = False, f"candidate {metric} is {cand_score}, not a finite number"
        elif champion is None or champ_score is None:
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
        fields = {"name": candidate.name, "promoted": promoted, "reason": reason, "metric": metric}
        fields |= {"candidate_version": candidate.version, "candidate_score": cand_score}
        fields |= {"champion_version": champion.version if champion else None}
        fields |= {"champion_score": champ_score, "greater_is_better": greater_is_better}
        decision = PromotionDecision(**fields, margin=float(margin), decided_at=store.utc_now())
        if promoted:
            store.set_champion(candidate, metric=metric, score=cand_score)
        _append_decision(decision)
    logger.info("champion gate for %s: %s", candidate.name, reason)
    run_id = candidate.metadata.mlflow_run_id
    if run_id:
        _log_decision(run_id, decision)
    return decision


def _log_decision(run_id: str, decision: PromotionDecision) -> None:
    client = MlflowClient()
    stamp = decision.decided_at.replace(":", "").replace("-", "")
    path = f"champion_gate/decision-v{decision.candidate_version}-{stamp}.json"
    client.log_dict(run_id, decision.model_dump(mode="json"), path)
    client.set_tag(run_id, "champion_gate.promoted", str(decision.promoted).lower())
    client.set_tag(run_id, "champion_gate.reason", decision.reason[:5000])
