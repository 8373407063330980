"""`amlkit score` and `amlkit package` check the model they load and never guess the champion.

A small penguins pipeline is registered twice in a real MLflow store (the ``root`` fixture);
the commands run through the CLI's ``main``, as the console script does.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from amlkit.cli.main import main
from amlkit.data.manifests import DataRef
from amlkit.registry import store

NAME = "pen"
FEATURES = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]


def register(frame: pd.DataFrame, c: float) -> store.ModelVersion:
    steps = [("impute", SimpleImputer()), ("scale", StandardScaler())]
    pipeline = Pipeline([*steps, ("model", LogisticRegression(C=c))])
    pipeline.fit(frame[FEATURES], frame["species"])
    return store.register_sklearn_model(
        pipeline,
        name=NAME,
        task="classification",
        target="species",
        feature_types=dict.fromkeys(FEATURES, "numeric"),
        classes=sorted(frame["species"].unique()),
        data=DataRef(dataset="penguins", version="test", sha256="0"),
        metrics={"test": {"accuracy": c}},
        hyperparameters={"C": c},
        input_example=frame[FEATURES].head(3),
    )


@pytest.fixture
def versions(root: Path, penguins_frame: pd.DataFrame) -> list[store.ModelVersion]:
    """Two registered versions; the first is the champion (champion.json and alias)."""
    first, second = register(penguins_frame, 1.0), register(penguins_frame, 0.01)
    store.set_champion(first, metric="accuracy", score=0.9)
    return [first, second]


@pytest.fixture
def rows(tmp_path: Path, penguins_frame: pd.DataFrame) -> Path:
    path = tmp_path / "rows.csv"
    penguins_frame[FEATURES].head(69).to_csv(path, index=False)
    return path


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("model", [NAME, f"{NAME}:1", f"{NAME}:latest"])
def test_score_refuses_a_registered_model_with_a_changed_file(
    versions, rows, capsys, model: str
) -> None:
    for version in versions:
        flip_byte(version.path / "model.pkl")

    code = main(["score", str(rows), "--model", model, "--no-progress"])

    err = capsys.readouterr().err
    assert code == 2
    assert f"model file {store.model_dir(NAME)}/" in err and "/model.pkl has sha256" in err
    assert not (rows.parent / "rows_predictions.csv").exists()


def test_score_with_an_intact_model_says_which_version_it_used(versions, rows, capsys) -> None:
    code = main(["score", str(rows), "--model", NAME, "--no-progress"])

    out = capsys.readouterr().out
    assert code == 0
    assert f"{NAME} version 1 (the champion, from champion.json)" in out
    assert len(pd.read_csv(rows.parent / "rows_predictions.csv")) == 69


def test_batch_scoring_of_a_version_folder_refuses_a_changed_file(versions, rows) -> None:
    from amlkit.serving.batch import score_file

    flip_byte(versions[1].path / "MLmodel")
    with pytest.raises(store.ModelIntegrityError, match=r"model file \S+/2/MLmodel has sha256"):
        score_file(rows, model_dir=versions[1].path, progress=False)


def test_package_without_champion_json_packages_the_alias_version(versions, capsys) -> None:
    (store.model_dir(NAME) / store.CHAMPION_FILE).unlink()

    code = main(["package", NAME, "--version", "champion", "--service", "svc", "--no-onnx"])

    out = capsys.readouterr().out
    assert code == 0
    assert "version 1 (the champion, from the MLflow alias 'champion'" in out
    assert "packaged pen version 1 as service svc" in out


def test_package_without_champion_json_or_alias_is_refused_with_the_repair(
    versions, capsys
) -> None:
    (store.model_dir(NAME) / store.CHAMPION_FILE).unlink()
    MlflowClient().delete_registered_model_alias(NAME, store.CHAMPION_ALIAS)
    MlflowClient().delete_registered_model_tag(NAME, store.CHAMPION_TAG)

    code = main(["package", NAME, "--service", "svc", "--no-onnx"])

    err = capsys.readouterr().err
    assert code == 2
    assert "has no champion" in err and "set_champion(" in err and "'latest'" in err
    assert not (store.model_dir(NAME).parents[1] / "deployed_models" / "svc").exists()


def test_package_names_a_truncated_champion_json(versions, capsys) -> None:
    path = store.model_dir(NAME) / store.CHAMPION_FILE
    path.write_text(path.read_text()[:30])

    code = main(["package", NAME, "--service", "svc", "--no-onnx"])

    err = capsys.readouterr().err
    assert code == 2
    assert f"{path} is damaged:" in err


def test_package_latest_is_explicit(versions, capsys) -> None:
    code = main(["package", NAME, "--version", "latest", "--service", "svc", "--no-onnx"])

    out = capsys.readouterr().out
    assert code == 0
    assert "version 2 (the newest version, as asked)" in out


def test_the_batch_deployment_refuses_a_changed_packaged_model(
    versions, monkeypatch, penguins_frame
) -> None:
    from amlkit.serving import batch_driver
    from amlkit.serving.package import package_service

    folder = package_service(versions[0].path, service="svc", fast_path=False)
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(folder / "model"))
    batch_driver.init()  # the packaged model as Azure ML mounts it: checked, then loaded
    assert batch_driver.STATE["scorer"].backend == "sklearn"

    changed = folder / "model" / "model.pkl"
    flip_byte(changed)
    with pytest.raises(store.ModelIntegrityError, match=rf"model file {changed} has sha256"):
        batch_driver.init()
    meta = json.loads((folder / "model" / "model_metadata.json").read_text())
    assert "model.pkl" in meta["files"]
