"""Blue/green on an online endpoint, once for every target: the workspace and the local twin.

:func:`deploy` and :func:`rollback` hold the rules; a :class:`Target` does the few things
they need (read the traffic, create a deployment from the plan's spec with a model, smoke-test
it, set the traffic, delete a deployment, point the monitoring schedule at one). Targets:
:class:`amlkit.azure.live.WorkspaceTarget` (an Azure ML managed online endpoint) and
:class:`amlkit.azure.twin_endpoint.TwinEndpoint` (a loopback router with one ``azmlinfsrv`` per
deployment).

The rules:

- A deploy names one exact model version (``NAME:VERSION``), never ``@latest``.
- The first deployment (nothing serves yet) takes 100% at once: a canary needs a live
  deployment beside it, so a canary share is ignored, and said so.
- ``idle`` is the deployment that already runs the model asked for, else the one serving under
  half of the traffic: the canary, the full switch and a rollback find the same one again,
  and a repeated step changes nothing.
- After a full switch the other deployment is deleted: managed online deployments cannot scale
  to zero instances, and two would be paid for. A rollback is possible until then (CD's
  canary and switch steps are where it is needed).
- A rollback needs a deployment to go back to; without one it changes nothing and says so.
- The monitoring schedule follows the deployment with the most traffic.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from amlkit import io
from amlkit.azure.endpoints import DEPLOYMENTS, model_reference

logger = logging.getLogger(__name__)

IDLE = "idle"


class SmokeTestFailed(RuntimeError):
    """A new deployment's smoke test failed; the traffic was left as it was."""


class Target(Protocol):
    """What blue/green needs of an online endpoint (the workspace's, or the local twin)."""

    endpoint: str

    def traffic(self) -> dict[str, int]:
        """Return the endpoint's split ``{deployment: percent}``; ``{}`` when there is none."""
        ...

    def deployed_model(self, name: str) -> str | None:
        """Return the ``NAME:VERSION`` deployment ``name`` runs; None when it does not exist."""
        ...

    def create_or_update(self, name: str, spec: Path, endpoint_spec: Path, model: str) -> None:
        """Create the endpoint if needed, then deployment ``name`` from ``spec`` with ``model``."""
        ...

    def smoke_test(self, name: str) -> dict[str, Any]:
        """Score the model's input example on ``name`` alone; SmokeTestFailed when it fails."""
        ...

    def set_traffic(self, split: dict[str, int]) -> None:
        """Set the endpoint's traffic split."""
        ...

    def delete(self, name: str) -> None:
        """Delete deployment ``name`` (it serves no traffic)."""
        ...

    def monitor(self, name: str) -> None:
        """Point the monitoring schedule at deployment ``name``."""
        ...


@dataclass
class Outcome:
    """What a deploy or rollback did.

    ``action``: ``first`` (the first deployment, 100%), ``canary`` (a share beside the live
    one), ``switch`` (all traffic moved, the other deleted), ``update`` (the only deployment
    got another model), ``unchanged`` (it already served the model), ``rollback``, or
    ``nothing_to_roll_back``.
    """

    action: str
    deployment: str
    model: str | None
    traffic: dict[str, int]
    previous_traffic: dict[str, int]
    retired: list[str] = field(default_factory=list)
    monitored: str | None = None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the outcome as plain JSON values."""
        return dataclasses.asdict(self)


def plan_specs(plan_dir: str | Path) -> dict[str, Path]:
    """Return the plan's online specs: ``{"endpoint": path, "blue": path, "green": path}``."""
    plan_dir = Path(plan_dir)
    found: dict[str, Path] = {}
    for entry in io.read_json(plan_dir / "plan.json"):
        if entry["kind"] == "online_endpoint":
            found["endpoint"] = plan_dir / entry["file"]
        elif entry["kind"] == "online_deployment":
            found[entry["name"].rpartition("/")[2]] = plan_dir / entry["file"]
    missing = [name for name in ("endpoint", *DEPLOYMENTS) if name not in found]
    if missing:
        raise ValueError(f"the plan in {plan_dir} has no online {missing}; write it again")
    return found


def idle_deployment(traffic: dict[str, int] | None) -> str:
    """Return the deployment serving under half of the traffic (blue on a new endpoint).

    During a canary (a share under 50 percent) the idle one is still the canary, so the full
    switch and a rollback find it again without being told.
    """
    shares = {name: int((traffic or {}).get(name, 0)) for name in DEPLOYMENTS}
    if not any(shares.values()):
        return DEPLOYMENTS[0]
    return min(DEPLOYMENTS, key=lambda name: shares[name])


def traffic_split(current: dict[str, int] | None, deployment: str, share: int) -> dict[str, int]:
    """Return the endpoint's traffic after giving ``deployment`` ``share`` percent.

    The other deployment gets the rest, but only when it serves traffic now: on a new endpoint
    (or one whose other deployment serves nothing) the deployment takes all of it, since there
    is nothing to share with.
    """
    if not 0 <= share <= 100:
        raise ValueError(f"traffic share {share} is not a percentage; give 0 to 100")
    split = {name: 0 for name in current or {}}
    others = [name for name, value in (current or {}).items() if name != deployment and value]
    if not others or share == 100:
        return {**split, deployment: 100}
    return {**split, deployment: share, others[0]: 100 - share}


def choose_deployment(target: Target, deployment: str, model: str | None) -> str:
    """Return the deployment to act on: ``deployment``, or for ``idle`` see the module's rules."""
    if deployment != IDLE:
        if deployment not in DEPLOYMENTS:
            raise ValueError(f"deployment {deployment!r} is not one of {[*DEPLOYMENTS, IDLE]}")
        return deployment
    if model is not None:
        for name in DEPLOYMENTS:
            if target.deployed_model(name) == model:
                return name
    return idle_deployment(target.traffic())


def _serving(traffic: dict[str, int]) -> str | None:
    live = {name: share for name, share in traffic.items() if share > 0}
    return max(live, key=lambda name: live[name]) if live else None


def deploy(
    target: Target,
    plan_dir: str | Path,
    *,
    model: str,
    deployment: str = IDLE,
    share: int | None = None,
    smoke_test: bool = True,
) -> Outcome:
    """Deploy ``model`` (``NAME:VERSION``) blue/green; see the module's rules.

    Args:
        target: the endpoint.
        plan_dir: a plan (``amlkit azure plan``) whose online specs are used.
        model: the exact packaged version.
        deployment: ``blue``, ``green`` or ``idle``.
        share: percent of traffic for the deployment; None: 100.
        smoke_test: score the model's input example on the deployment before traffic moves.

    Raises:
        ValueError: ``model`` is not ``NAME:VERSION``, or a share is not a percentage.
        SmokeTestFailed: the deployment answered wrongly; the traffic is as it was.
    """
    model_reference(model)  # exact, or ValueError before anything changes
    if share is not None and not 0 <= share <= 100:
        raise ValueError(f"traffic share {share} is not a percentage; give 0 to 100")
    specs = plan_specs(plan_dir)
    name = choose_deployment(target, deployment, model)
    current = target.traffic()
    others_live = [other for other, value in current.items() if other != name and value > 0]
    asked = 100 if share is None else share
    notes = []
    if not others_live and asked != 100:
        notes.append(
            f"{name} takes 100% at once: no deployment serves beside it, so a canary of "
            f"{asked}% has nothing to share with"
        )
        asked = 100
    existing = target.deployed_model(name)
    if existing != model:
        logger.info("deploying %s to %s/%s (it ran %s)", model, target.endpoint, name, existing)
        target.create_or_update(name, specs[name], specs["endpoint"], model)
    if smoke_test:
        target.smoke_test(name)
    split = traffic_split(current, name, asked)
    if {k: v for k, v in split.items() if v} != {k: v for k, v in current.items() if v}:
        target.set_traffic(split)
    retired = []
    if split[name] == 100:
        for other in DEPLOYMENTS:
            if other != name and target.deployed_model(other) is not None:
                target.delete(other)
                retired.append(other)
    split = target.traffic()
    monitored = _serving(split)
    if monitored is not None:
        target.monitor(monitored)
    if not others_live and not current.get(name):
        action = "first"
    elif others_live:
        action = "canary" if split.get(name, 0) < 100 else "switch"
    else:
        action = "unchanged" if existing == model else "update"
    if retired:
        notes.append(f"deleted {', '.join(retired)} (no traffic; one instance is paid for)")
    message = f"{action}: {name} runs {model}; traffic {split}" + "".join(f"; {n}" for n in notes)
    logger.info("%s: %s", target.endpoint, message)
    return Outcome(action, name, model, split, current, retired, monitored, message)


def rollback(target: Target, *, deployment: str = IDLE) -> Outcome:
    """Move all traffic off ``deployment`` (``idle``: the canary) back to the other one.

    The deployment rolled back is deleted. With no other deployment to go back to (a first
    deployment, or after a completed switch), nothing changes and ``nothing_to_roll_back``
    says so: redeploy an earlier version with :func:`deploy` instead.
    """
    name = choose_deployment(target, deployment, None)
    current = target.traffic()
    back = [
        other for other in DEPLOYMENTS if other != name and target.deployed_model(other) is not None
    ]
    if target.deployed_model(name) is None or not back:
        message = (
            f"nothing to roll back to on {target.endpoint}: "
            + (
                f"{name} does not exist"
                if target.deployed_model(name) is None
                else f"{name} is the only deployment"
            )
            + f"; traffic stays {current}. Deploy an earlier version with --model to go back."
        )
        logger.info(message)
        return Outcome("nothing_to_roll_back", name, None, current, current, message=message)
    target.set_traffic({back[0]: 100, name: 0})
    target.delete(name)
    split = target.traffic()
    target.monitor(back[0])
    message = f"rolled back {name}: traffic {split}; deleted {name}"
    return Outcome(
        "rollback",
        back[0],
        target.deployed_model(back[0]),
        split,
        current,
        [name],
        back[0],
        message,
    )
