"""Service packaging: folder layout, hashes, ONNX fast path and its fallback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
CATEGORICAL = ["island", "sex"]
FEATURES = NUMERIC + CATEGORICAL
REPO = Path(__file__).resolve().parents[1]


def penguins() -> pd.DataFrame:
    from palmerpenguins import load_penguins

    frame = load_penguins().dropna(subset=["species"]).reset_index(drop=True)
    frame[NUMERIC] = frame[NUMERIC].astype("float64")
    frame[CATEGORICAL] = frame[CATEGORICAL].astype(object).where(frame[CATEGORICAL].notna(), None)
    frame[CATEGORICAL] = frame[CATEGORICAL].fillna(np.nan)
    return frame


def build_pipeline(estimator):
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    categorical = Pipeline(
        [
            ("impute", SimpleImputer(strategy="most_frequent")),
            ("onehot", OneHotEncoder(handle_unknown="ignore")),
        ]
    )
    pre = ColumnTransformer([("num", numeric, NUMERIC), ("cat", categorical, CATEGORICAL)])
    return Pipeline([("preprocess", pre), ("model", estimator)])


def make_version(folder: Path, estimator=None, *, name: str = "penguins", version: int = 1) -> Path:
    """Write a model version folder per docs/contracts.md (MLflow model + model_metadata.json)."""
    import mlflow.sklearn
    from sklearn.ensemble import RandomForestClassifier

    from amlkit import io

    frame = penguins()
    estimator = estimator or RandomForestClassifier(n_estimators=50, random_state=0, n_jobs=1)
    pipeline = build_pipeline(estimator).fit(frame[FEATURES], frame["species"])
    target = folder / name / str(version)
    mlflow.sklearn.save_model(pipeline, target, serialization_format="cloudpickle")
    io.write_json_atomic(
        target / "model_metadata.json",
        {
            "name": name,
            "version": version,
            "model_type": type(estimator).__name__,
            "flavor": "sklearn",
            "task": "classification",
            "target": "species",
            "feature_columns": FEATURES,
            "feature_types": {c: "numeric" for c in NUMERIC}
            | {c: "categorical" for c in CATEGORICAL},
            "classes": sorted(frame["species"].unique().tolist()),
            "created": "2024-01-01T00:00:00+00:00",
            "data": {"dataset": "penguins", "version": "test", "sha256": "0"},
            "model_file": "model.pkl",
            "model_sha256": io.sha256_file(target / "model.pkl"),
        },
    )
    return target


def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "root"
    shutil.copytree(REPO / "config", root / "config")
    monkeypatch.setenv("AMLKIT_ROOT", str(root))
    return root


@pytest.fixture
def root(tmp_path, monkeypatch):
    return project(tmp_path, monkeypatch)


def test_package_service_writes_complete_folder_with_onnx(root):
    from amlkit.serving import package_service, service_info
    from amlkit.serving.runtime import Scorer

    version = make_version(root / "models" / "trained_models")
    rows = penguins().sample(60, random_state=1)
    folder = package_service(version, service="svc", parity_rows=rows)
    assert folder == root / "models" / "deployed_models" / "svc"
    for name in ("scoring_script.py", "environment.yml", "deployment_config.json", "logging.json"):
        assert (folder / name).is_file(), name
    assert (folder / "amlkit" / "serving" / "runtime.py").is_file()
    info = service_info(folder)
    assert info["backend"] == "onnx", info["backend_reason"]
    assert info["parity"]["labels_equal"] and info["parity"]["max_probability_diff"] <= 1e-5
    assert (
        info["model_files"]["model.pkl"]
        == json.loads((version / "model_metadata.json").read_text())["model_sha256"]
    )
    config = json.loads((folder / "deployment_config.json").read_text())
    assert config["endpoint_name"] == "amlkit-penguins" and config["auth_mode"] == "key"
    fast, slow = Scorer(folder / "model"), Scorer(folder / "model", backend="sklearn")
    frame = rows[FEATURES].head(10)
    assert fast.predict_frame(frame)[0] == slow.predict_frame(frame)[0]


def test_repackaging_replaces_folder_without_leftovers(root):
    from amlkit.serving import package_service, service_info

    version = make_version(root / "models" / "trained_models")
    package_service(version, service="svc", fast_path=False)
    (root / "models" / "deployed_models" / "svc" / "stale.txt").write_text("old")
    folder = package_service(version, service="svc", fast_path=False)
    assert not (folder / "stale.txt").exists()
    assert service_info(folder)["backend"] == "sklearn"
    assert [p.name for p in folder.parent.iterdir()] == ["svc"]


def test_package_refuses_tampered_model(root):
    from amlkit.serving import package_service

    version = make_version(root / "models" / "trained_models")
    with open(version / "model.pkl", "ab") as handle:
        handle.write(b"x")
    with pytest.raises(ValueError, match="changed after registration"):
        package_service(version, service="svc", fast_path=False)
    assert not (root / "models" / "deployed_models" / "svc").exists()


@pytest.mark.parametrize(
    "estimator",
    ["LogisticRegression", "HistGradientBoostingClassifier"],
)
def test_fast_path_converts_or_records_reason(root, estimator):
    import sklearn.ensemble
    import sklearn.linear_model

    from amlkit.serving import package_service, service_info

    cls = getattr(sklearn.linear_model, estimator, None) or getattr(sklearn.ensemble, estimator)
    version = make_version(root / "models" / "trained_models", cls())
    folder = package_service(version, service="svc", parity_rows=penguins().head(80))
    info = service_info(folder)
    if info["backend"] == "onnx":
        assert info["parity"]["max_probability_diff"] <= 1e-5
    else:
        assert info["backend"] == "sklearn" and "ONNX" in info["backend_reason"]
    assert json.loads((folder / "model" / "serving.json").read_text())["backend"] == info["backend"]


def test_no_parity_rows_falls_back_with_reason(root):
    from amlkit.serving import package_service, service_info

    version = make_version(root / "models" / "trained_models")
    info = service_info(package_service(version, service="svc"))
    assert info["backend"] == "sklearn"
    assert "parity rows" in info["backend_reason"]
