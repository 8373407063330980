"""A service's endpoint is named after what it serves: a cars model is not `amlkit-penguins`.

The models here are real ones, fitted on the bundled cars and Seattle weather data, saved as
version folders the way the registry lays them out; the name comes from their metadata.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from amlkit.config import ConfigError, DeploymentConfig

DATASETS = {  # data set: (bundled source, target, task)
    "cars": ("bundled:cars", "Miles_per_Gallon", "regression"),
    "seattle_weather": ("bundled:seattle-weather", "weather", "classification"),
}


def trained_version(folder: Path, dataset: str, name: str | None = None) -> Path:
    """Fit a small pipeline on a bundled data set's numeric columns; return its version folder."""
    import mlflow.sklearn
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline

    from amlkit import integrity, io
    from amlkit.data.sources import bundled_path

    source, target, task = DATASETS[dataset]
    path = bundled_path(source)
    frame = pd.read_json(path) if path.suffix == ".json" else pd.read_csv(path)
    frame = frame.dropna(subset=[target])
    features = [c for c in frame.select_dtypes("number").columns if c != target]
    estimator = Ridge() if task == "regression" else LogisticRegression(max_iter=500)
    pipeline = make_pipeline(SimpleImputer(), estimator).fit(frame[features], frame[target])
    name = name or f"{dataset}-{task}"
    version = folder / name / "1"
    mlflow.sklearn.save_model(
        pipeline, version, serialization_format="cloudpickle", pip_requirements=["scikit-learn"]
    )
    io.write_json_atomic(
        version / "model_metadata.json",
        {
            "name": name,
            "version": 1,
            "model_type": type(estimator).__name__,
            "flavor": "sklearn",
            "task": task,
            "target": target,
            "feature_columns": features,
            "feature_types": dict.fromkeys(features, "numeric"),
            "created": "2024-01-01T00:00:00+00:00",
            "data": {"dataset": dataset, "version": "test", "sha256": "0"},
            "model_file": "model.pkl",
            "model_sha256": io.sha256_file(version / "model.pkl"),
            "files": integrity.file_records(version),
        },
    )
    return version


def _configure(root: Path, **names: str) -> None:
    """Write ``config/deployment_config.json`` with other endpoint names, as a user edits it."""
    path = root / "config" / "deployment_config.json"
    config = json.loads(path.read_text())
    config["endpoint_name"] = names["online"]
    config["batch"]["endpoint_name"] = names.get("batch", config["batch"]["endpoint_name"])
    path.write_text(json.dumps(config))


@pytest.mark.parametrize(
    ("dataset", "endpoint"),
    [("cars", "amlkit-cars"), ("seattle_weather", "amlkit-seattle-weather")],
)
def test_a_model_packages_as_the_endpoint_of_its_data_set(root, dataset, endpoint):
    from amlkit.data.sources import bundled_path
    from amlkit.serving.package import package_service, service_info
    from amlkit.serving.runtime import Scorer

    version = trained_version(root / "models" / "trained_models", dataset)
    folder = package_service(version, fast_path=False)
    assert folder == root / "models" / "deployed_models" / endpoint
    info = service_info(folder)
    assert (info["service"], info["endpoint_name"]) == (endpoint, endpoint)
    config = json.loads((folder / "deployment_config.json").read_text())
    assert config["endpoint_name"] == endpoint
    assert config["batch"]["endpoint_name"] == f"{endpoint}-batch"
    # the folder serves that model: its predictions are the version's own
    metadata = json.loads((version / "model_metadata.json").read_text())
    path = bundled_path(DATASETS[dataset][0])
    rows = (pd.read_json(path) if path.suffix == ".json" else pd.read_csv(path)).head(5)
    served = Scorer(folder / "model").predict_frame(rows[metadata["feature_columns"]])[0]
    assert list(served) == list(Scorer(version).predict_frame(rows[metadata["feature_columns"]])[0])
    assert not (root / "models" / "deployed_models" / "amlkit-penguins").exists()


def test_the_model_placeholder_names_the_endpoint_after_the_registered_model(root):
    from amlkit.serving.package import package_service, service_info

    _configure(root, online="svc-{model}", batch="svc-{model}-files")
    version = trained_version(root / "models" / "trained_models", "cars", name="cars_hgb")
    folder = package_service(version, fast_path=False)
    assert folder.name == service_info(folder)["endpoint_name"] == "svc-cars-hgb"
    config = json.loads((folder / "deployment_config.json").read_text())
    assert config["batch"]["endpoint_name"] == "svc-cars-hgb-files"


def test_a_fixed_name_serves_every_model_under_it(root):
    from amlkit.serving.package import package_service, service_info

    _configure(root, online="team-endpoint")
    version = trained_version(root / "models" / "trained_models", "cars")
    folder = package_service(version, fast_path=False)
    assert folder.name == service_info(folder)["endpoint_name"] == "team-endpoint"


def test_a_given_service_name_keeps_the_endpoint_of_the_model(root):
    from amlkit.serving.package import package_service, service_info

    version = trained_version(root / "models" / "trained_models", "cars")
    folder = package_service(version, service="cars-blue", fast_path=False)
    assert (folder.name, service_info(folder)["endpoint_name"]) == ("cars-blue", "amlkit-cars")


def _tree(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if ".amlkit" not in p.parts)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("amlkit-{data}", r"key 'endpoint_name': endpoint name 'amlkit-\{data\}' has placeholder"),
        ("{model}", r"endpoint name '\{model\}' gives '2024-cars' .* start it with a letter"),
    ],
)
def test_an_endpoint_template_that_gives_no_valid_name_fails_before_anything_is_written(
    root, template, message
):
    from amlkit.serving.package import package_service

    version = trained_version(root / "models" / "trained_models", "cars", name="2024-cars")
    _configure(root, online=template)
    before = _tree(root)
    with pytest.raises(ConfigError, match=message):
        package_service(version, fast_path=False)
    assert _tree(root) == before


def test_monitor_defaults_to_the_endpoint_of_the_data_set_it_is_asked_about(root, capsys):
    from amlkit.cli.main import main

    assert DeploymentConfig.load().endpoint_for("cars") == "amlkit-cars"
    code = main(["monitor", "--dataset", "cars"])
    assert code == 2
    assert "no request log for endpoint 'amlkit-cars'" in capsys.readouterr().err
