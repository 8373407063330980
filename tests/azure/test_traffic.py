"""Blue/green on a live endpoint: which deployment takes a new model, and the traffic after it.

These decide what `amlkit azure deploy --deployment idle` does in CD: the canary, the full
switch and a rollback each find the same deployment from the endpoint's traffic alone.
"""

from __future__ import annotations

import pytest

from amlkit.azure.rollout import idle_deployment, traffic_split


@pytest.mark.parametrize(
    ("traffic", "idle"),
    [
        (None, "blue"),  # no endpoint yet
        ({}, "blue"),
        ({"blue": 0}, "blue"),
        ({"blue": 100}, "green"),
        ({"blue": 100, "green": 0}, "green"),
        ({"blue": 90, "green": 10}, "green"),  # during green's canary
        ({"green": 100, "blue": 0}, "blue"),  # the next model goes back to blue
        ({"green": 90, "blue": 10}, "blue"),
    ],
)
def test_idle_deployment_is_the_one_serving_under_half_of_the_traffic(traffic, idle):
    assert idle_deployment(traffic) == idle


def test_canary_full_switch_and_rollback_find_the_same_deployment():
    live = {"blue": 100}
    new = idle_deployment(live)
    canary = traffic_split(live, new, 10)
    assert canary == {"green": 10, "blue": 90}
    assert idle_deployment(canary) == new  # the full switch, or a rollback, finds green again
    assert traffic_split(canary, new, 100) == {"green": 100, "blue": 0}


@pytest.mark.parametrize(
    ("current", "deployment", "share", "expected"),
    [
        ({}, "blue", 10, {"blue": 100}),  # a new endpoint: nothing to share with
        ({"blue": 100, "green": 0}, "blue", 10, {"blue": 100, "green": 0}),
        ({"blue": 100}, "green", 0, {"green": 0, "blue": 100}),
        ({"blue": 100}, "green", 100, {"green": 100, "blue": 0}),
    ],
)
def test_traffic_split_shares_only_with_a_deployment_that_serves(
    current, deployment, share, expected
):
    assert traffic_split(current, deployment, share) == expected


def test_traffic_split_refuses_a_share_that_is_not_a_percentage():
    with pytest.raises(ValueError, match="150 is not a percentage"):
        traffic_split({"blue": 100}, "green", 150)
