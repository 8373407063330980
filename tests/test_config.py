import json
import shutil

import pytest

from amlkit import config


def test_committed_configs_are_valid(repo):
    loaded = config.load_all(repo / "config")
    assert set(loaded) == set(config.CONFIG_FILES)
    assert loaded["data_config"]["default_dataset"] in loaded["data_config"]["datasets"]


def test_blank_azure_config_means_local(repo):
    azure = config.load_config("azure_config", repo / "config")
    assert config.azure_workspace_configured(azure) is False


def test_partly_filled_azure_config_is_refused():
    with pytest.raises(config.ConfigError, match="resource_group, workspace_name blank"):
        config.azure_workspace_configured(
            {"subscription_id": "x", "resource_group": "", "workspace_name": ""}
        )


def _write(tmp_path, name, obj, repo):
    folder = tmp_path / "config"
    if not folder.exists():
        shutil.copytree(repo / "config", folder)
    (folder / f"{name}.json").write_text(json.dumps(obj))
    return folder


def test_missing_file_names_the_file(tmp_path):
    folder = tmp_path / "config"
    folder.mkdir()
    with pytest.raises(config.ConfigError, match=r"config/model_config.json is missing"):
        config.load_config("model_config", folder)


def test_broken_json_names_line_and_column(tmp_path):
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "data_config.json").write_text('{"default_dataset": "x",\n  oops}')
    with pytest.raises(config.ConfigError, match=r"not valid JSON: .* line 2"):
        config.load_config("data_config", folder)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c.update(colour="red"), r"unknown key 'colour'; expected one of"),
        (lambda c: c["split"].update(random_state="42"), r"'split.random_state' must be integer"),
        (lambda c: c["split"].pop("test_size"), r"missing key 'split.test_size'"),
        (lambda c: c["split"].update(stratify=1), r"'split.stratify' must be true/false"),
        (lambda c: c["ingestion"].update(chunk_rows=True), r"'ingestion.chunk_rows' must be"),
        (
            lambda c: c["datasets"]["penguins"].update(task="clustering"),
            r"'datasets.penguins.task' must be one of classification, regression",
        ),
        (
            lambda c: c["datasets"]["penguins"].update(traget="species"),
            r"unknown key 'datasets.penguins.traget'",
        ),
    ],
)
def test_wrong_data_config_names_file_key_and_expectation(tmp_path, edit, message, repo):
    cfg = json.loads((repo / "config" / "data_config.json").read_text())
    edit(cfg)
    folder = _write(tmp_path, "data_config", cfg, repo)
    with pytest.raises(config.ConfigError, match=r"config/data_config.json") as err:
        config.load_config("data_config", folder)
    assert err.match(message)


def test_wrong_type_in_deployment_config(tmp_path, repo):
    cfg = json.loads((repo / "config" / "deployment_config.json").read_text())
    cfg["instance_count"] = "two"
    folder = _write(tmp_path, "deployment_config", cfg, repo)
    with pytest.raises(config.ConfigError, match=r"'instance_count' must be integer, got str"):
        config.load_config("deployment_config", folder)
