import json
import shutil

import pytest

from amlkit import config


def test_committed_configs_are_valid(repo):
    loaded = config.load_all(repo / "config")
    assert set(loaded) == set(config.CONFIG_FILES)
    data_config = loaded["data_config"]
    assert isinstance(data_config, config.DataConfig)
    assert data_config.default_dataset in data_config.datasets


def test_blank_azure_config_means_local(repo):
    assert config.AzureConfig.load(repo / "config").workspace_configured is False


def test_partly_filled_azure_config_is_refused():
    with pytest.raises(config.ConfigError, match="resource_group, workspace_name blank"):
        config.AzureConfig.from_dict({"subscription_id": "x"})


def test_defaults_are_defined_once_in_the_models():
    minimal = config.DeploymentConfig.from_dict({"endpoint_name": "svc-one"})
    assert minimal.monitoring.retraining.max_quality_rates.null_value_rate == 0.1
    assert minimal.monitoring.thresholds.normalized_wasserstein_distance == 0.1
    assert minimal.to_dict()["local"]["host"] == "127.0.0.1"


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
        config.ModelConfig.load(folder)


def test_broken_json_names_line_and_column(tmp_path):
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "data_config.json").write_text('{"default_dataset": "x",\n  oops}')
    with pytest.raises(config.ConfigError, match=r"not valid JSON: .* line 2"):
        config.DataConfig.load(folder)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c.update(colour="red"), r"unknown key 'colour'; expected one of: datasets"),
        (lambda c: c["split"].update(random_state="42"), r"'split.random_state' must be integer"),
        (lambda c: c["split"].update(test_size="0.2"), r"'split.test_size' must be number"),
        (lambda c: c["split"].update(stratify=1), r"'split.stratify' must be true/false"),
        (lambda c: c["ingestion"].update(chunk_rows=True), r"'ingestion.chunk_rows' must be"),
        (lambda c: c["split"].update(test_size=0.6, validation_size=0.5), "no training rows"),
        (
            lambda c: c["datasets"]["penguins"].update(task="clustering"),
            r"'datasets.penguins.task' must be one of classification, regression",
        ),
        (
            lambda c: c["datasets"]["penguins"].update(traget="species"),
            r"unknown key 'datasets.penguins.traget'; expected one of: .*target",
        ),
        (
            lambda c: c["datasets"]["penguins"]["schema"]["sex"].update(type="color"),
            r"'datasets.penguins.schema.sex.type' must be one of numeric",
        ),
    ],
)
def test_wrong_data_config_names_file_key_and_expectation(tmp_path, edit, message, repo):
    cfg = json.loads((repo / "config" / "data_config.json").read_text())
    edit(cfg)
    folder = _write(tmp_path, "data_config", cfg, repo)
    with pytest.raises(config.ConfigError, match=r"config/data_config.json") as err:
        config.DataConfig.load(folder)
    assert err.match(message)


def test_wrong_type_in_deployment_config(tmp_path, repo):
    cfg = json.loads((repo / "config" / "deployment_config.json").read_text())
    cfg["instance_count"] = "two"
    folder = _write(tmp_path, "deployment_config", cfg, repo)
    with pytest.raises(config.ConfigError, match=r"'instance_count' must be integer, got str"):
        config.DeploymentConfig.load(folder)


@pytest.mark.parametrize(
    ("traffic", "message"),
    [
        ({"blue": 60, "green": 60}, r"adds up to 120%, not 100%"),
        ({"blue": 90}, r"adds up to 90%, not 100%"),
        ({"blue": 150, "green": -50}, r"not percentages; give 0 to 100"),
        ({"../blue": 100}, r"deployment name '../blue' is not allowed"),
    ],
)
def test_traffic_split_must_be_percentages_that_sum_to_100(tmp_path, repo, traffic, message):
    cfg = json.loads((repo / "config" / "deployment_config.json").read_text())
    cfg["traffic"] = traffic
    folder = _write(tmp_path, "deployment_config", cfg, repo)
    with pytest.raises(config.ConfigError, match=r"key 'traffic': ") as err:
        config.DeploymentConfig.load(folder)
    assert err.match(message)


def test_traffic_split_of_blue_and_green_is_accepted():
    cfg = config.DeploymentConfig.from_dict(
        {"endpoint_name": "svc-one", "traffic": {"blue": 90, "green": 10}}
    )
    assert cfg.traffic == {"blue": 90, "green": 10}


def test_unknown_retraining_key_is_refused(tmp_path, repo):
    cfg = json.loads((repo / "config" / "deployment_config.json").read_text())
    cfg["monitoring"]["retraining"]["max_drift"] = 1
    folder = _write(tmp_path, "deployment_config", cfg, repo)
    with pytest.raises(config.ConfigError, match=r"unknown key 'monitoring.retraining.max_drift'"):
        config.DeploymentConfig.load(folder)


def test_deep_learning_override_applies_a_dict_then_the_set_parameters():
    file = config.DeepLearningConfig(epochs=40, dense_units=64, dropout=0.25)
    hparams = file.override({"dropout": 0.0, "epochs": 9}, epochs=5, batch_size=None)
    assert hparams.epochs == 5  # a set parameter wins over the dict
    assert hparams.dropout == 0.0 and hparams.dense_units == 64  # the dict over the file
    assert hparams.batch_size == config.DeepLearningConfig().batch_size  # None keeps the file
    assert file.epochs == 40  # the loaded configuration is not changed


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"layers": 3}, "unknown key 'layers'; expected one of: batch_size, conv_filters"),
        ({"conv_filters": [16, 0]}, "key 'conv_filters.1'.*greater than 0"),
        ({"dropout": 1.0}, "key 'dropout'.*less than 1"),
        ({"epochs": "ten"}, "key 'epochs' must be integer"),
    ],
)
def test_deep_learning_override_names_the_wrong_key(changes, message):
    with pytest.raises(config.ConfigError, match=f"deep_learning override: {message}"):
        config.DeepLearningConfig().override(changes)


@pytest.fixture
def data_config(repo):
    return config.DataConfig.load(repo / "config")


@pytest.mark.parametrize(
    ("dataset", "online", "batch"),
    [
        ("penguins", "amlkit-penguins", "amlkit-penguins-batch"),
        ("cars", "amlkit-cars", "amlkit-cars-batch"),
        ("seattle_weather", "amlkit-seattle-weather", "amlkit-seattle-weather-batch"),
    ],
)
def test_the_committed_endpoint_names_follow_the_data_set(
    repo, data_config, dataset, online, batch
):
    committed = config.DeploymentConfig.load(repo / "config")
    resolved = committed.resolved(dataset, data_config=data_config)
    assert (resolved.endpoint_name, resolved.batch.endpoint_name) == (online, batch)
    assert resolved.is_resolved and not committed.is_resolved
    assert resolved.resolved("cars") is resolved  # a resolved configuration stays as it is


def test_the_default_data_set_names_the_endpoint_when_none_is_given(repo, data_config):
    committed = config.DeploymentConfig.load(repo / "config")
    expected = committed.endpoint_for(data_config.default_dataset, data_config=data_config)
    assert committed.endpoint_for(data_config=data_config) == expected


def test_the_model_placeholder_takes_the_registered_name_or_the_data_sets_default(data_config):
    named = config.DeploymentConfig.from_dict(
        {"endpoint_name": "svc-{model}", "batch": {"endpoint_name": "{model}-files"}}
    )
    resolved = named.resolved("cars", "Cars_HGB.v2", data_config=data_config)
    assert (resolved.endpoint_name, resolved.batch.endpoint_name) == (
        "svc-cars-hgb-v2",
        "cars-hgb-v2-files",
    )
    # only the data set known: its model's default registry name, <dataset>-<task>
    assert named.endpoint_for("cars", data_config=data_config) == "svc-cars-regression"


def test_a_name_without_placeholders_is_fixed_for_every_model(data_config):
    fixed = config.DeploymentConfig.from_dict(
        {"endpoint_name": "My-Endpoint", "batch": {"endpoint_name": "my-files"}}
    )
    for dataset in ("penguins", "cars"):
        resolved = fixed.resolved(dataset, f"{dataset}-x", data_config=data_config)
        assert (resolved.endpoint_name, resolved.batch.endpoint_name) == ("My-Endpoint", "my-files")


def test_long_values_are_cut_to_32_characters_and_stay_apart(data_config):
    template = config.DeploymentConfig.from_dict({"endpoint_name": "amlkit-{dataset}"})
    first = template.resolved("sensor_readings_of_the_north_plant_2024", data_config=data_config)
    second = template.resolved("sensor_readings_of_the_north_plant_2025", data_config=data_config)
    names = [first.endpoint_name, second.endpoint_name, first.batch.endpoint_name]
    assert all(len(name) <= 32 and config.ENDPOINT_NAME.match(name) for name in names)
    assert first.endpoint_name.startswith("amlkit-sensor-readings")
    assert first.batch.endpoint_name.endswith("-batch")
    assert len({*names, second.batch.endpoint_name}) == 4


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("amlkit-{data}", r"has placeholder \{data\}; the placeholders are \{dataset\}, \{model\}"),
        ("amlkit_{dataset}", r"'amlkit_\{dataset\}' is not allowed: .* starting with a letter"),
        ("an-endpoint-name-of-far-more-than-32-characters", r"3 to 32 letters"),
    ],
)
def test_an_endpoint_template_against_the_rules_is_refused_when_loaded(
    tmp_path, repo, template, message
):
    cfg = json.loads((repo / "config" / "deployment_config.json").read_text())
    cfg["endpoint_name"] = template
    folder = _write(tmp_path, "deployment_config", cfg, repo)
    with pytest.raises(config.ConfigError, match=r"deployment_config.json: key 'endpoint_name': "):
        config.DeploymentConfig.load(folder)
    with pytest.raises(config.ConfigError, match=message):
        config.DeploymentConfig.load(folder)


def test_a_name_a_template_gives_against_the_rules_names_the_template_and_the_fix(data_config):
    template = config.DeploymentConfig.from_dict({"endpoint_name": "{model}"})
    with pytest.raises(config.ConfigError) as err:
        template.resolved("cars", "2024-cars", data_config=data_config)
    assert err.match(r"endpoint name '\{model\}' gives '2024-cars' for data set 'cars'")
    assert err.match(r"start it with a letter \(e\.g\. 'amlkit-\{dataset\}'\)")


def test_a_placeholder_without_a_value_is_refused(data_config):
    template = config.DeploymentConfig.from_dict({"endpoint_name": "svc-{model}"})
    # digits declares no task in data_config.json, so no default model name
    with pytest.raises(config.ConfigError, match=r"'svc-\{model\}' needs \{model\}"):
        template.resolved("digits", data_config=data_config)


def test_online_and_batch_endpoints_may_not_share_a_name(data_config):
    same = config.DeploymentConfig.from_dict(
        {"endpoint_name": "amlkit-{dataset}", "batch": {"endpoint_name": "amlkit-{dataset}"}}
    )
    with pytest.raises(config.ConfigError, match=r"both named 'amlkit-cars'; give batch"):
        same.resolved("cars", data_config=data_config)
