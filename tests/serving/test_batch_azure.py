"""Batch scoring of files, and the Azure ML specs validated offline."""

from __future__ import annotations

import re

import pandas as pd
import pytest
import yaml


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_score_file_writes_predictions_beside_input(
    penguins_service, tmp_path, suffix, penguins_frame, penguin_features
):
    from amlkit.serving.batch import score_file
    from amlkit.serving.runtime import Scorer

    frame = penguins_frame.copy()
    src = tmp_path / f"input{suffix}"
    frame.to_csv(src, index=False) if suffix == ".csv" else frame.to_parquet(src)
    out = score_file(src, service=penguins_service.folder, chunk_rows=50, progress=False)
    assert out == tmp_path / f"input_predictions{suffix}"
    result = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    assert len(result) == len(frame)
    expected, _ = Scorer(penguins_service.version).predict_frame(frame[penguin_features])
    assert result["prediction"].tolist() == expected
    assert {"probability_Adelie", "probability_Gentoo"} <= set(result.columns)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_score_file_names_bad_values(penguins_service, tmp_path, penguins_frame):
    from amlkit.serving.batch import score_file

    frame = penguins_frame.copy().head(30).astype({"body_mass_g": object})
    frame.loc[12, "body_mass_g"] = "heavy"
    src = tmp_path / "bad.csv"
    frame.to_csv(src, index=False)
    with pytest.raises(ValueError, match=r"'body_mass_g'.*'heavy' on row 12"):
        score_file(src, model_dir=penguins_service.version, chunk_rows=10, progress=False)
    assert not (tmp_path / "bad_predictions.csv").exists()


def test_azure_specs_round_trip_through_sdk_loaders(penguins_service):
    from azure.ai.ml import load_online_deployment, load_online_endpoint

    from amlkit.azure.endpoints import write_specs

    specs = write_specs(penguins_service.folder)
    endpoint = load_online_endpoint(source=specs["endpoint"])
    assert endpoint.name.startswith("amlkit-penguins-")  # unique per workspace
    assert endpoint.traffic == {"blue": 100}
    for name in ("blue", "green"):
        dep = load_online_deployment(source=specs[name])
        written = yaml.safe_load(specs[name].read_text())["model"]
        # anonymous: the SDK names it by its content's hash, so it cannot collide with the
        # versions the pipeline registers as <model>-packaged
        assert re.fullmatch("[0-9a-f]{64}", written["name"]), written
        assert dep.name == name and dep.code_configuration.scoring_script == "scoring_script.py"
        assert dep.request_settings.request_timeout_ms == 5000
        assert dep.environment.image.startswith("mcr.microsoft.com/azureml/")


def test_azure_deploy_skips_without_workspace_or_tracking_server(penguins_service, monkeypatch):
    from amlkit.azure import delivery, live

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(live.Skipped, match="names no workspace"):
        delivery.deploy_model(model="penguins-packaged:1")


@pytest.mark.parametrize("forest", ["RandomForestClassifier", "ExtraTreesClassifier"])
def test_forest_labels_from_one_probability_pass_equal_its_predict(
    tmp_path, forest, penguins_frame, penguin_features, make_version
):
    from sklearn import ensemble

    from amlkit.serving.runtime import Scorer

    model = getattr(ensemble, forest)(n_estimators=30, random_state=0)
    scorer = Scorer(make_version(tmp_path, model), backend="sklearn")
    frame = penguins_frame[penguin_features]
    labels, probs = scorer.predict_arrays(frame)
    assert labels.tolist() == scorer._model.predict(frame).tolist()
    assert probs.tolist() == scorer._model.predict_proba(frame).tolist()


def test_batch_entry_script_returns_lines_that_name_their_own_columns(
    penguins_service, tmp_path, monkeypatch, penguins_frame, penguin_features
):
    """append_row writes no header: each returned line must say what its values are."""
    import io
    import json

    from amlkit.serving import batch_driver
    from amlkit.serving.runtime import Scorer

    first, second = tmp_path / "first.csv", tmp_path / "second.parquet"
    penguins_frame.head(5).to_csv(first, index=False)
    penguins_frame.tail(3).to_parquet(second)
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(penguins_service.folder / "model"))
    batch_driver.init()
    lines = batch_driver.run([str(first), str(second)])

    assert len(lines) == 8 and all(isinstance(json.loads(line), dict) for line in lines)
    back = pd.read_json(io.StringIO("\n".join(lines)), lines=True)
    assert back["file"].tolist() == ["first.csv"] * 5 + ["second.parquet"] * 3
    assert back["row"].tolist() == [0, 1, 2, 3, 4, 0, 1, 2]
    rows = pd.concat([penguins_frame.head(5), penguins_frame.tail(3)])
    expected, _ = Scorer(penguins_service.version).predict_frame(rows[penguin_features])
    assert back["prediction"].tolist() == expected
