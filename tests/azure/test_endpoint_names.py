"""Azure endpoint names are unique per adopter: a fixed name fails the second team in a region."""

from __future__ import annotations

import re

import pytest

from amlkit.azure.endpoints import azure_endpoint_names
from amlkit.config import AzureConfig, ConfigError, DeploymentConfig

AZURE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{2,31}$")


def _workspace(name: str) -> AzureConfig:
    return AzureConfig(subscription_id="sub", resource_group="rg", workspace_name=name)


def test_endpoint_names_differ_between_workspaces_and_follow_azures_rule():
    config = DeploymentConfig.from_dict({"endpoint_name": "amlkit-penguins"})
    first, second = (
        azure_endpoint_names(config, _workspace("a")),
        azure_endpoint_names(config, _workspace("b")),
    )
    assert first != second
    assert first[0].startswith("amlkit-penguins-") and first[1].startswith("amlkit-penguins-batch-")
    assert all(AZURE_NAME.match(name) for name in first + second)
    assert azure_endpoint_names(config, _workspace("a")) == first  # stable for one workspace


def test_endpoint_names_fit_in_32_characters():
    config = DeploymentConfig.from_dict({"endpoint_name": "a" * 32})
    online, _ = azure_endpoint_names(config, _workspace("a"))
    assert len(online) <= 32 and AZURE_NAME.match(online)


def test_configured_azure_endpoint_names_win():
    config = DeploymentConfig.from_dict(
        {
            "endpoint_name": "amlkit-penguins",
            "azure_endpoint_name": "team-a-penguins",
            "batch": {"azure_endpoint_name": "team-a-batch"},
        }
    )
    assert azure_endpoint_names(config, _workspace("a")) == ("team-a-penguins", "team-a-batch")


@pytest.mark.parametrize("name", ["1penguins", "pen_guins", "x" * 33])
def test_an_azure_endpoint_name_against_azures_rule_is_refused(name):
    with pytest.raises(ConfigError, match="azure_endpoint_name"):
        DeploymentConfig.from_dict(
            {"endpoint_name": "amlkit-penguins", "azure_endpoint_name": name}
        )


def test_the_plan_names_the_endpoints_as_on_azure(project, tmp_path):
    import yaml

    from amlkit.azure.plan import write_plan

    online, batch = azure_endpoint_names(DeploymentConfig.load(), AzureConfig.load())
    entries = {e.name for e in write_plan(tmp_path / "plan")}
    assert {f"{online}/blue", f"{online}/green", f"{batch}/champion"} <= entries
    monitor = yaml.safe_load((tmp_path / "plan" / "monitoring" / "schedule.yml").read_text())
    target = monitor["create_monitor"]["monitoring_target"]["endpoint_deployment_id"]
    assert target == f"azureml:{online}:blue"


def test_the_azure_endpoints_are_named_after_the_model_deployed(repo):
    """A deploy of a cars model goes to the cars endpoint, not to the default data set's."""
    from amlkit.azure.endpoints import served_config
    from amlkit.config import DataConfig
    from amlkit.serving.packaged_model import PackagedVersion

    data_config = DataConfig.load(repo / "config")
    local = DeploymentConfig.load(repo / "config")
    cars = PackagedVersion("cars-regression-packaged", 3, "cars-regression", 2, "onnx")
    assert served_config(local, data_config, cars).endpoint_name == "amlkit-cars"
    online, batch = azure_endpoint_names(served_config(local, data_config, cars), _workspace("a"))
    assert online.startswith("amlkit-cars-") and batch.startswith("amlkit-cars-batch-")
    default = data_config.default_dataset
    assert served_config(local, data_config).endpoint_name == local.endpoint_for(
        default, data_config=data_config
    )
    # a model of no declared data set's default name: the default data set names it
    other = PackagedVersion("mine-packaged", 1, "mine", 1, "onnx")
    assert served_config(local, data_config, other).endpoint_name == local.endpoint_for(
        default, data_config=data_config
    )
