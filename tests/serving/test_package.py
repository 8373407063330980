"""Service packaging: folder layout, hashes, ONNX fast path and its fallback."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest


def test_package_service_writes_complete_folder_with_onnx(
    root, penguins_frame, penguin_features, make_version
):
    from amlkit.serving.package import package_service, service_info
    from amlkit.serving.runtime import Scorer

    version = make_version(root / "models" / "trained_models")
    rows = penguins_frame.copy().sample(60, random_state=1)
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
    frame = rows[penguin_features].head(10)
    assert fast.predict_frame(frame)[0] == slow.predict_frame(frame)[0]


def test_repackaging_replaces_folder_without_leftovers(root, make_version):
    from amlkit.serving.package import package_service, service_info

    version = make_version(root / "models" / "trained_models")
    package_service(version, service="svc", fast_path=False)
    (root / "models" / "deployed_models" / "svc" / "stale.txt").write_text("old")
    folder = package_service(version, service="svc", fast_path=False)
    assert not (folder / "stale.txt").exists()
    assert service_info(folder)["backend"] == "sklearn"
    assert [p.name for p in folder.parent.iterdir()] == ["svc"]


def test_package_refuses_tampered_model(root, make_version):
    from amlkit.serving.package import package_service

    version = make_version(root / "models" / "trained_models")
    with open(version / "model.pkl", "ab") as handle:
        handle.write(b"x")
    with pytest.raises(ValueError, match="changed after registration"):
        package_service(version, service="svc", fast_path=False)
    assert not (root / "models" / "deployed_models" / "svc").exists()


# --- a service name is one plain folder name under deployed_models/, never a path ---

UNSAFE_SERVICES = [
    "../../data/external/victim",
    "../trained_models",
    "a;touch x",
    "$(x)",
    "nested/svc",
    ".hidden",
    "x" * 129,
]


def register_penguins(frame: pd.DataFrame):
    """Register a small penguins model named ``penguins`` in the current project's registry."""
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.tree import DecisionTreeClassifier

    from amlkit.data.manifests import DataRef
    from amlkit.registry import store

    features = ["bill_length_mm", "flipper_length_mm"]
    model = make_pipeline(SimpleImputer(), DecisionTreeClassifier(max_depth=2, random_state=0))
    model.fit(frame[features], frame["species"])
    return store.register_sklearn_model(
        model,
        name="penguins",
        task="classification",
        target="species",
        feature_types=dict.fromkeys(features, "numeric"),
        classes=sorted(frame["species"].unique().tolist()),
        data=DataRef(dataset="penguins", version="v1", sha256="0" * 64),
        metrics={"test": {"accuracy": 1.0}},
        hyperparameters={"max_depth": 2},
        input_example=frame[features].head(3),
    )


def tree(folder: Path) -> dict[str, bytes]:
    """Return every file under ``folder`` with its bytes, to compare before and after."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in files}


def test_amlkit_package_refuses_a_service_name_that_leads_to_another_folder(
    root, penguins_frame, capsys
):
    from amlkit.cli.main import main

    register_penguins(penguins_frame)
    victim = root / "data" / "external" / "victim"
    victim.mkdir(parents=True)
    (victim / "keep.txt").write_text("mine")
    registry = tree(root / "models" / "trained_models")

    for service in ("../../data/external/victim", "../trained_models"):
        assert main(["package", "penguins", "--service", service, "--no-onnx"]) == 2  # no champion
        err = capsys.readouterr().err
        assert f"amlkit: service name {service!r} is not allowed: use 1-128 letters" in err
        assert (
            main(["package", "penguins", "--version", "1", "--service", service, "--no-onnx"]) == 2
        )
        err = capsys.readouterr().err
        assert f"amlkit: service name {service!r} is not allowed: use 1-128 letters" in err
    assert tree(victim) == {"keep.txt": b"mine"}
    assert tree(root / "models" / "trained_models") == registry
    assert not (root / "models" / "deployed_models").exists()
    # the same model packages under a plain name: the refusal was the name's, not the model's
    assert main(["package", "penguins", "--version", "1", "--service", "victim", "--no-onnx"]) == 0
    assert (root / "models" / "deployed_models" / "victim" / "service_metadata.json").is_file()


@pytest.mark.parametrize("service", UNSAFE_SERVICES)
def test_package_refuses_service_names_that_are_not_plain_names(root, make_version, service):
    from amlkit.serving.package import package_service

    version = make_version(root / "models" / "trained_models")
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    with pytest.raises(ValueError, match=r"^service name .* is not allowed: use 1-128 letters"):
        package_service(version, service=service, fast_path=False)
    after = sorted(p.relative_to(root) for p in root.rglob("*"))
    assert [p for p in after if p not in before and p.parts[0] != ".amlkit"] == []


def test_package_refuses_an_endpoint_name_from_the_config_that_is_a_path(root, make_version):
    from amlkit.config import DeploymentConfig
    from amlkit.serving.package import package_service

    version = make_version(root / "models" / "trained_models")
    config = DeploymentConfig.load().model_copy(update={"endpoint_name": "../trained_models"})
    with pytest.raises(ValueError, match=r"endpoint name '\.\./trained_models' is not allowed"):
        package_service(version, deployment_config=config, fast_path=False)
    assert tree(root / "models" / "trained_models") != {}


def test_package_does_not_replace_a_folder_that_is_not_a_service(root, make_version):
    from amlkit.serving.package import package_service

    version = make_version(root / "models" / "trained_models")
    folder = root / "models" / "deployed_models" / "svc"
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("not a service")
    with pytest.raises(ValueError) as caught:
        package_service(version, service="svc", fast_path=False)
    message = str(caught.value)
    assert f"{folder} exists and is not a service (it has no service_metadata.json)" in message
    assert "move it out of the way or choose another service name" in message
    assert tree(folder) == {"notes.txt": b"not a service"}
    assert [p.name for p in folder.parent.iterdir()] == ["svc"]  # no temporaries left


def test_package_refuses_a_service_folder_that_links_out_of_deployed_models(
    root, make_version, tmp_path
):
    from amlkit.serving.package import package_service

    version = make_version(root / "models" / "trained_models")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    (root / "models" / "deployed_models").mkdir(parents=True)
    link = root / "models" / "deployed_models" / "svc"
    link.symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError, match=rf"{link} is a symbolic link to {outside}"):
        package_service(version, service="svc", fast_path=False)
    assert tree(outside) == {"keep.txt": b"mine"} and link.is_symlink()


def test_repackaging_keeps_a_folder_left_aside_that_is_not_a_service(root, make_version):
    from amlkit.serving.package import package_service

    version = make_version(root / "models" / "trained_models")
    package_service(version, service="svc", fast_path=False)
    aside = root / "models" / "deployed_models" / ".svc.abcd1234.old"
    (aside / "svc").mkdir(parents=True)
    (aside / "svc" / "data.csv").write_text("a,b\n")
    package_service(version, service="svc", fast_path=False)
    assert (aside / "svc" / "data.csv").read_text() == "a,b\n"


@pytest.mark.parametrize(
    "estimator",
    ["LogisticRegression", "HistGradientBoostingClassifier"],
)
def test_fast_path_converts_or_records_reason(root, estimator, penguins_frame, make_version):
    import sklearn.ensemble
    import sklearn.linear_model

    from amlkit.serving.package import package_service, service_info

    cls = getattr(sklearn.linear_model, estimator, None) or getattr(sklearn.ensemble, estimator)
    params = {"max_iter": 30} if estimator.startswith("Hist") else {}
    version = make_version(root / "models" / "trained_models", cls(**params))
    folder = package_service(version, service="svc", parity_rows=penguins_frame.copy().head(80))
    info = service_info(folder)
    if info["backend"] == "onnx":
        assert info["parity"]["max_probability_diff"] <= 1e-5
    else:
        assert info["backend"] == "sklearn" and "ONNX" in info["backend_reason"]
    assert json.loads((folder / "model" / "serving.json").read_text())["backend"] == info["backend"]


def test_no_parity_rows_falls_back_with_reason(root, make_version):
    from amlkit.serving.package import package_service, service_info

    version = make_version(root / "models" / "trained_models")
    info = service_info(package_service(version, service="svc"))
    assert info["backend"] == "sklearn"
    assert "parity rows" in info["backend_reason"]


def test_pipeline_without_imputation_packages_and_its_service_refuses_empty_columns(
    root, penguins_frame, penguin_features, make_version
):
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from amlkit.serving.package import package_service, service_info
    from amlkit.serving.server import serve

    numeric = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
    pre = ColumnTransformer(
        [
            ("num", StandardScaler(), numeric),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["island", "sex"]),
        ]
    )
    pipeline = Pipeline([("pre", pre), ("model", LogisticRegression(max_iter=500))])
    version = make_version(root / "models" / "trained_models", pipeline=pipeline)
    rows = penguins_frame.head(80)  # holds rows with missing values, as test splits do
    assert rows[penguin_features].isna().any(axis=None)

    folder = package_service(version, service="svc", parity_rows=rows)

    info = service_info(folder)
    serving = json.loads((folder / "model" / "serving.json").read_text())
    # scikit-learn's one-hot refuses a missing value among strings, as the scaler does
    assert serving["required_columns"] == penguin_features
    assert info["backend"] == "onnx", info["backend_reason"]
    complete = json.loads(rows[penguin_features].dropna().head(2).to_json(orient="records"))
    with serve(folder, port=0) as endpoint:
        assert endpoint.score(complete)[0] == 200
        status, answer = endpoint.score([complete[0], complete[1] | {"body_mass_g": None}])
        assert status == 422
        assert "'body_mass_g' row 1: got null" in answer["error"]
        assert "trained without missing values" in answer["error"]
        status, answer = endpoint.score([complete[0] | {"sex": None}])
        assert status == 422 and "'sex' row 0: got null" in answer["error"]


# --- the pipelines notebook 04 trains (its preprocessing: the feature_preprocessor fixture) ---

NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
REAL_TYPES = dict.fromkeys(NUMERIC, "numeric") | {"island": "categorical", "sex": "categorical"}
REAL_TYPES |= {"year": "integer"}
REAL_FEATURES = list(REAL_TYPES)


def make_real_version(
    folder: Path, estimator, penguins_frame, preprocessor, *, types=None, frame=None
) -> Path:
    """A version whose pipeline is 04's preprocessing (``preprocessor(types)``) + ``estimator``."""
    import mlflow.sklearn
    from sklearn.pipeline import Pipeline

    from amlkit import integrity, io

    name = "real"
    types = types or REAL_TYPES
    frame = real_rows(penguins_frame, None) if frame is None else frame
    pipeline = Pipeline([("preprocess", preprocessor(types)), ("model", estimator)]).fit(
        frame[list(types)], frame["species"]
    )
    target = folder / name / "1"
    mlflow.sklearn.save_model(
        pipeline, target, serialization_format="cloudpickle", pip_requirements=["scikit-learn"]
    )
    io.write_json_atomic(
        target / "model_metadata.json",
        {
            "name": name,
            "version": 1,
            "flavor": "sklearn",
            "task": "classification",
            "target": "species",
            "feature_columns": list(types),
            "feature_types": types,
            "classes": sorted(frame["species"].unique().tolist()),
            "data": {"dataset": "penguins", "version": "test", "sha256": "0"},
            "model_file": "model.pkl",
            "model_sha256": io.sha256_file(target / "model.pkl"),
            "files": integrity.file_records(target),
        },
    )
    return target


def real_rows(penguins_frame: pd.DataFrame, n: int | None = 80) -> pd.DataFrame:
    """Penguins with the processed-data dtypes (year as float64); ``n`` sampled rows or all."""
    frame = penguins_frame.copy()
    frame["year"] = frame["year"].astype("float64")
    return frame if n is None else frame.sample(n, random_state=3)


@pytest.mark.parametrize(
    "estimator",
    [
        "sklearn.linear_model.LogisticRegression",
        "sklearn.ensemble.RandomForestClassifier",
        "sklearn.ensemble.HistGradientBoostingClassifier",
    ],
)
def test_real_feature_pipelines_convert_to_onnx_with_parity(
    root, estimator, penguins_frame, feature_preprocessor
):
    import importlib

    from amlkit.serving.package import package_service, service_info
    from amlkit.serving.runtime import Scorer

    module, cls = estimator.rsplit(".", 1)
    params = {"max_iter": 30} if cls.startswith("Hist") else {}
    model = getattr(importlib.import_module(module), cls)(random_state=0, **params)
    version = make_real_version(
        root / "models" / "trained_models", model, penguins_frame, feature_preprocessor
    )
    folder = package_service(version, service="svc", parity_rows=real_rows(penguins_frame))
    info = service_info(folder)
    assert info["backend"] == "onnx", info["backend_reason"]
    assert info["parity"]["labels_equal"] and info["parity"]["max_probability_diff"] <= 1e-5
    messy = (
        real_rows(penguins_frame)[REAL_FEATURES].head(6).astype({"island": object, "sex": object})
    )
    messy["island"] = [" Biscoe", "Dream ", None, "Atlantis", "", "Torgersen"]
    messy["sex"] = ["MALE", "female", np.nan, "male", " female ", None]
    messy.loc[messy.index[:3], ["body_mass_g", "year"]] = np.nan
    fast, slow = Scorer(folder / "model"), Scorer(folder / "model", backend="sklearn")
    (fast_labels, fast_p), (slow_labels, slow_p) = (
        fast.predict_frame(messy),
        slow.predict_frame(messy),
    )
    assert fast_labels == slow_labels
    assert np.abs(np.array(fast_p) - np.array(slow_p)).max() <= 1e-5


def test_serving_package_init_imports_nothing():
    import ast

    import amlkit.serving

    tree = ast.parse(Path(amlkit.serving.__file__).read_text(encoding="utf-8"))
    assert [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)] == []


SERVICE_RUNTIME = {  # what every service imports: its scoring script's modules
    "amlkit",
    "amlkit.integrity",  # the model-file check shared with the registry
    "amlkit.io",
    "amlkit.kinds",
    "amlkit.names",
    "amlkit.paths",
    "amlkit.serving",
    "amlkit.serving.auth",
    "amlkit.serving.front",
    "amlkit.serving.requestlog",
    "amlkit.serving.requests",
    "amlkit.serving.runtime",
}
TRANSFORMERS = {"amlkit.training", "amlkit.training.transformers"}


@pytest.mark.parametrize(
    ("backend", "pipeline", "backend_modules"),
    [
        ("onnx", "real", {"amlkit.serving.onnx_inputs"}),  # no scikit-learn code
        ("sklearn", "real", TRANSFORMERS),  # the classes the pickle refers to
        ("sklearn", "plain", set()),  # a pickle of scikit-learn classes only
    ],
    ids=["onnx", "sklearn_pickle_with_amlkit_steps", "sklearn_plain_pickle"],
)
def test_service_folder_scores_with_only_its_own_amlkit_modules(
    root,
    tmp_path,
    backend,
    pipeline,
    backend_modules,
    penguins_frame,
    penguin_features,
    make_version,
    score_isolated,
    feature_preprocessor,
):
    from sklearn.ensemble import RandomForestClassifier

    from amlkit.serving.package import package_service, service_info
    from amlkit.serving.runtime import Scorer

    models = root / "models" / "trained_models"
    if pipeline == "real":
        model = RandomForestClassifier(n_estimators=20, random_state=0)
        version = make_real_version(models, model, penguins_frame, feature_preprocessor)
        rows = real_rows(penguins_frame)[REAL_FEATURES].head(3)
    else:
        version = make_version(models)
        rows = penguins_frame[penguin_features].head(3)
    folder = package_service(
        version, service="svc", parity_rows=real_rows(penguins_frame), fast_path=backend == "onnx"
    )
    info = service_info(folder)
    assert info["backend"] == backend, info["backend_reason"]
    files = sorted((folder / "amlkit").rglob("*.py"))
    carried = [".".join(p.relative_to(folder).with_suffix("").parts) for p in files]
    carried = sorted(name.removesuffix(".__init__") for name in carried)
    assert carried == info["amlkit_modules"]
    assert set(carried) == SERVICE_RUNTIME | backend_modules
    result = score_isolated(folder, json.loads(rows.to_json(orient="records")), tmp_path)
    assert result["installed_amlkit"] is None
    assert Path(result["amlkit"]) == folder / "amlkit" / "__init__.py"
    assert set(result["loaded"]) <= set(carried)
    assert result["status"] == 200, result["answer"]
    assert result["answer"]["model"]["backend"] == backend
    assert result["answer"]["predictions"] == Scorer(folder / "model").predict_frame(rows)[0]


@pytest.mark.parametrize("boolean", [False, True])
def test_onnx_feeder_normalizes_strings_as_category_normalizer(boolean):
    from amlkit.serving.onnx_converters import MISSING_STRING
    from amlkit.serving.onnx_inputs import OnnxFeeder
    from amlkit.training.transformers import CategoryNormalizer

    values = [" a ", "Yes", "NO", "0", 3.0, 2.5, 7, True, False, None, np.nan, "", "  ", "x y"]
    column = pd.DataFrame({"c": pd.Series(values, dtype=object)})
    expected = CategoryNormalizer(boolean=boolean).fit(column).transform(column)[:, 0]
    kind = "boolean" if boolean else "category"
    feeder = OnnxFeeder({"c": "string"}, {"c": kind}, MISSING_STRING)
    got = feeder.from_frame(column)["c"].ravel().tolist()
    assert got == [MISSING_STRING if isinstance(e, float) else e for e in expected]


def onnx_transform(step, x: np.ndarray) -> np.ndarray:
    """Convert a fitted step with amlkit's converters and run it in onnxruntime on ``x``."""
    import onnxruntime as ort
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType, StringTensorType

    from amlkit.serving import onnx, onnx_converters

    kind = StringTensorType if x.dtype == object else DoubleTensorType
    model = convert_sklearn(
        step,
        initial_types=[("x", kind([None, x.shape[1]]))],
        target_opset=dict(onnx.OPSET),
        **onnx_converters.overrides(),
    )
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.mark.parametrize(
    ("step", "kwargs"),
    [
        ("SimpleImputer", {"strategy": "median", "add_indicator": True}),
        ("SimpleImputer", {"strategy": "mean"}),
        ("SimpleImputer", {"strategy": "mean", "keep_empty_features": True}),
        ("MissingIndicator", {"features": "all"}),
    ],
    ids=["median_indicator", "mean_drops_empty", "mean_keeps_empty", "indicator"],
)
def test_numeric_imputer_converters_answer_as_scikit_learn(step, kwargs):
    import sklearn.impute

    train = np.array([[1.0, np.nan, np.nan], [3.0, 4.0, np.nan], [5.0, 6.0, np.nan]])
    test = np.array([[np.nan, np.nan, 1.0], [2.0, 8.0, np.nan]])
    step = getattr(sklearn.impute, step)(**kwargs)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Skipping features without observed values"
        expected = step.fit(train).transform(test)
    np.testing.assert_array_equal(onnx_transform(step, test), expected.astype(np.float64))


def test_string_imputer_converter_fills_the_missing_marker():
    from sklearn.impute import SimpleImputer

    from amlkit.serving.onnx_converters import MISSING_STRING

    train = np.array([["a", np.nan], ["b", "c"]], dtype=object)
    test = np.array([[np.nan, "c"], ["", np.nan]], dtype=object)
    step = SimpleImputer(strategy="constant", fill_value="gap").fit(train)
    fed = np.where(pd.isna(test), MISSING_STRING, test).astype(object)
    assert onnx_transform(step, fed).tolist() == step.transform(test).tolist()


def test_datetime_feature_takes_the_onnx_path_and_answers_iso_strings_as_the_pipeline(
    root, penguins_frame, feature_preprocessor
):
    from sklearn.linear_model import LogisticRegression

    from amlkit.serving.package import package_service, service_info
    from amlkit.serving.runtime import Scorer

    types = {"bill_length_mm": "numeric", "when": "datetime"}
    frame = penguins_frame.copy()
    frame["when"] = pd.Timestamp("2020-01-01") + pd.to_timedelta(frame.index * 7, unit="D")
    folder = root / "models" / "trained_models"
    version = make_real_version(
        folder, LogisticRegression(), penguins_frame, feature_preprocessor, types=types, frame=frame
    )
    service = package_service(version, service="svc", parity_rows=frame.head(40))
    info = service_info(service)
    assert info["backend"] == "onnx", info["backend_reason"]
    assert info["parity"]["max_probability_diff"] <= 1e-5
    values = {
        "bill_length_mm": [40.0, 45.5, float("nan"), 50.0, 39.0, 41.0],
        "when": [
            "2021-03-04",
            "2020-02-29T23:59:59",
            None,
            "2022-12-31T22:00:00-05:00",  # 2023-01-01 in UTC
            "2019-W01-1",  # a week date: pandas does not read it, so it is missing
            "1500-01-01",  # outside pandas' dates: missing too
        ],
    }
    fast, slow = Scorer(service / "model"), Scorer(service / "model", backend="sklearn")
    (fast_labels, fast_p), (slow_labels, slow_p) = (
        fast.predict_values(values),
        slow.predict_values(values),
    )
    assert fast_labels == slow_labels
    assert np.abs(np.array(fast_p) - np.array(slow_p)).max() <= 1e-5


def test_onnx_threads_share_the_cpus_among_the_servers_workers(monkeypatch):
    import os

    from amlkit.serving.runtime import onnx_threads

    cpus = len(os.sched_getaffinity(0))
    monkeypatch.delenv("AMLKIT_ONNX_THREADS", raising=False)
    monkeypatch.delenv("WORKER_COUNT", raising=False)
    assert onnx_threads() == cpus  # batch scoring, notebooks: one process
    monkeypatch.setenv("WORKER_COUNT", "2")
    assert onnx_threads() == max(1, cpus // 2)
    monkeypatch.setenv("WORKER_COUNT", str(cpus * 4))
    assert onnx_threads() == 1
    monkeypatch.setenv("AMLKIT_ONNX_THREADS", "3")
    assert onnx_threads() == 3
