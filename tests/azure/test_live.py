"""The live paths need a workspace and credentials; without them they skip and say why."""

from __future__ import annotations

import pytest

from amlkit.config import AzureConfig

WORKSPACE = AzureConfig.load().workspace_configured
needs_workspace = pytest.mark.skipif(
    not WORKSPACE,
    reason="needs a live Azure ML workspace and credentials: config/azure_config.json names "
    "none, and this machine cannot reach Azure",
)


def test_connect_refuses_without_a_workspace_and_says_what_to_fill():
    from amlkit.azure import live

    with pytest.raises(live.Skipped, match="fill subscription_id, resource_group and workspace"):
        live.connect(AzureConfig())


@pytest.mark.azure
@needs_workspace
def test_training_pipeline_completes_on_the_workspace(tmp_path):
    from amlkit.azure import live
    from amlkit.azure.plan import write_plan

    write_plan(tmp_path / "plan")
    job = live.submit(tmp_path / "plan", "training-pipeline", wait=True)
    assert job["status"] == "Completed", job


@pytest.mark.azure
@needs_workspace
def test_champion_is_read_from_the_workspace_registry():
    from amlkit.azure import live

    found = live.champion("penguins-classification")
    assert found["champion_version"] is not None
