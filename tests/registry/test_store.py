"""Tests for amlkit.registry: versions, typed metadata, integrity, loading, the champion gate."""

from __future__ import annotations

import json
import pickle
import threading
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from amlkit import io
from amlkit.data.manifests import DataRef
from amlkit.registry import store, tracking
from amlkit.registry.champion import promote_if_better, read_decisions

FEATURE_TYPES = {"x1": "numeric", "x2": "numeric", "color": "categorical"}
DATA = DataRef(dataset="toy", version="v1", sha256="0" * 64)
MODEL_FOLDER_FILES = [
    "MLmodel", "model.pkl", "conda.yaml", "python_env.yaml", "requirements.txt",
    "model_metadata.json", "performance_metrics.json", "hyperparameters.yaml",
]  # fmt: skip
CONTRACT_FIELDS = [
    "name", "version", "model_type", "flavor", "task", "target", "feature_columns",
    "feature_types", "classes", "created", "data", "code_commit", "mlflow_run_id",
    "mlflow_model_version", "library_versions", "model_file", "model_sha256",
]  # fmt: skip


def make_frame(n: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(
        {
            "x1": rng.normal(size=n),
            "x2": rng.normal(size=n),
            "color": rng.choice(["red", "green", "blue"], size=n),
        }
    )
    y = pd.Series(np.where(x["x1"] + 0.5 * x["x2"] > 0.3, "yes", "no"), name="label")
    return x, y


@pytest.fixture(scope="module")
def data() -> dict[str, pd.DataFrame | pd.Series]:
    x_train, y_train = make_frame(80, seed=0)
    x_test, y_test = make_frame(40, seed=1)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def make_pipeline(estimator: object) -> Pipeline:
    pre = ColumnTransformer(
        [
            ("num", StandardScaler(), ["x1", "x2"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["color"]),
        ]
    )
    return Pipeline([("pre", pre), ("model", estimator)])


@pytest.fixture(scope="module")
def fitted(data: dict) -> dict[str, Pipeline]:
    return {
        "dummy": make_pipeline(DummyClassifier(strategy="most_frequent")).fit(
            data["x_train"], data["y_train"]
        ),
        "logreg": make_pipeline(LogisticRegression(C=10.0)).fit(data["x_train"], data["y_train"]),
    }


def register(pipeline: Pipeline, data: dict, name: str = "toy", run_id: str | None = None):
    accuracy = accuracy_score(data["y_test"], pipeline.predict(data["x_test"]))
    return store.register_sklearn_model(
        pipeline,
        name=name,
        task="classification",
        target="label",
        feature_types=FEATURE_TYPES,
        classes=["no", "yes"],
        data=DATA,
        metrics={"test": {"accuracy": accuracy}},
        hyperparameters=pipeline.named_steps["model"].get_params(),
        input_example=data["x_train"].head(3),
        run_id=run_id,
        description="a toy model",
        tags={"data.raw_version": "r1"},
    )


def test_register_writes_an_mlflow_model_folder_with_contract_metadata(
    root: Path, data: dict, fitted: dict
) -> None:
    mv = register(fitted["logreg"], data)

    assert mv.path == root / "models" / "trained_models" / "toy" / "1"
    for name in MODEL_FOLDER_FILES:
        assert (mv.path / name).is_file(), name
    meta = json.loads((mv.path / "model_metadata.json").read_text())
    assert list(meta)[: len(CONTRACT_FIELDS)] == CONTRACT_FIELDS
    assert meta["model_type"] == "LogisticRegression"
    assert meta["flavor"] == "sklearn"
    assert meta["feature_columns"] == ["x1", "x2", "color"]
    assert meta["data"] == DATA.model_dump()
    assert "input_shape" not in meta  # image fields only for image models
    assert meta["model_sha256"] == io.sha256_file(mv.path / "model.pkl")
    assert {"python", "scikit-learn", "mlflow", "pandas", "numpy"} <= set(meta["library_versions"])
    assert yaml.safe_load((mv.path / "hyperparameters.yaml").read_text())["C"] == 10.0
    mlmodel = yaml.safe_load((mv.path / "MLmodel").read_text())
    assert mlmodel["flavors"]["sklearn"]["serialization_format"] == "cloudpickle"
    assert "signature" in mlmodel
    mlflow_mv = MlflowClient().get_model_version("toy", meta["mlflow_model_version"])
    run_id = mv.metadata.mlflow_run_id  # the run's copy of the folder, never a local path
    assert mlflow_mv.source == f"runs:/{run_id}/registry/toy/v1"
    assert mlflow_mv.tags[store.PATH_TAG] == mv.path.as_posix()
    assert mlflow_mv.tags["model_sha256"] == meta["model_sha256"]
    assert mlflow_mv.description == "a toy model"
    assert (mlflow_mv.tags["data.version"], mlflow_mv.tags["data.raw_version"]) == ("v1", "r1")
    assert mv.metadata == store.get_version("toy", 1).metadata  # typed, read back the same


def test_versions_count_up_and_resolve_latest(root: Path, data: dict, fitted: dict) -> None:
    first = register(fitted["dummy"], data)
    second = register(fitted["logreg"], data)

    assert (first.version, second.version) == (1, 2)
    assert [v.version for v in store.list_versions("toy")] == [1, 2]
    assert store.get_version("toy").version == 2
    assert store.get_version("toy", "1").metadata.model_type == "DummyClassifier"
    assert store.list_models() == ["toy"]


def test_load_model_returns_a_pipeline_that_predicts_the_same(
    root: Path, data: dict, fitted: dict
) -> None:
    register(fitted["logreg"], data)

    loaded = store.load_model("toy", 1)

    expected = fitted["logreg"].predict(data["x_test"])
    np.testing.assert_array_equal(loaded.predict(data["x_test"]), expected)


@pytest.mark.parametrize(
    ("name", "version", "message"),
    [
        ("nope", "latest", r"no model named 'nope'.*models: toy"),
        ("toy", 7, r"no version 7; versions: \[1\]"),
        ("toy", "champion", r"has no champion: .*does not exist.*\(versions: \[1\]\)"),
        ("toy", "best", None),
    ],
)
def test_get_version_errors_name_what_exists(
    root: Path, data: dict, fitted: dict, name: str, version: object, message: str | None
) -> None:
    register(fitted["dummy"], data)

    if message is None:
        with pytest.raises(ValueError, match="not a number, 'latest' or 'champion'"):
            store.get_version(name, version)
    else:
        with pytest.raises(store.ModelNotFoundError, match=message):
            store.get_version(name, version)


def test_bad_model_names_are_refused(root: Path) -> None:
    with pytest.raises(ValueError, match=r"model name '\.\./evil' is not allowed"):
        store.list_versions("../evil")


def write_keras_like(folder: Path) -> None:
    (folder / "data").mkdir()
    (folder / "MLmodel").write_text("flavors: {}\n")
    (folder / "data" / "model.keras").write_bytes(b"weights" * 100)
    (folder / "data" / "keras_module.txt").write_text("keras\n")


IMAGE_MODEL = {
    "model_type": "keras.Sequential", "task": "classification", "target": "label",
    "feature_columns": ["image"], "feature_types": {"image": "image"}, "classes": [0, 1],
    "data": DATA, "input_shape": [8, 8, 1],
}  # fmt: skip


def keras_version(name: str = "deep"):
    return store.write_version(
        name,
        write_keras_like,
        flavor="keras",
        model_file="data/model.keras",
        metadata=IMAGE_MODEL,
        metrics={"test": {"accuracy": 0.5}},
        hyperparameters={"epochs": 2},
    )


def test_write_version_hashes_every_file_of_a_model_folder(root: Path) -> None:
    mv = keras_version()

    files = mv.metadata.files
    assert mv.metadata.model_file == "data/model.keras"
    assert mv.metadata.model_sha256 == io.sha256_file(mv.path / "data" / "model.keras")
    assert mv.metadata.input_shape == [8, 8, 1]
    assert {"MLmodel", "data/keras_module.txt", "performance_metrics.json"} <= set(files)
    store.verify(mv)
    (mv.path / "data" / "keras_module.txt").write_text("evil\n")
    with pytest.raises(store.ModelIntegrityError, match=r"data/keras_module\.txt"):
        store.verify(mv)


def test_write_version_refuses_a_writer_that_skips_the_model_file(root: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"did not write the model file 'model\.pkl'"):
        store.write_version(
            "toy",
            lambda folder: (folder / "other.bin").write_bytes(b"x"),
            flavor="sklearn",
            model_file="model.pkl",
            metadata=IMAGE_MODEL,
            metrics={},
            hyperparameters={},
        )

    assert store.list_versions("toy") == []
    assert not list(store.model_dir("toy").glob(".*.partial"))


def test_concurrent_writers_take_turns_and_get_distinct_versions(root: Path) -> None:
    results, errors = [], []

    def write_model(folder: Path) -> None:
        (folder / "model.bin").write_bytes(folder.name.encode())

    def writer() -> None:
        try:
            results.append(
                store.write_version(
                    "race",
                    write_model,
                    flavor="raw",
                    model_file="model.bin",
                    metadata=IMAGE_MODEL,
                    metrics={},
                    hyperparameters={},
                )
            )
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, name=f"writer-{i}") for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert sorted(v.version for v in results) == [1, 2]
    assert len({v.metadata.mlflow_model_version for v in results}) == 2
    assert len(MlflowClient().search_model_versions("name='race'")) == 2
    for mv in results:
        source = MlflowClient().get_model_version("race", str(mv.metadata.mlflow_model_version))
        assert source.tags[store.PATH_TAG] == mv.path.as_posix()
        assert source.source.endswith(f"/registry/race/v{mv.version}")


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-10])


def add_file(path: Path) -> None:
    (path.parent / "code").mkdir()
    (path.parent / "code" / "sitecustomize.py").write_text("print('hi')\n")


def delete(path: Path) -> None:
    path.unlink()


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (flip_byte, r"model\.pkl has sha256 [0-9a-f]{64}, but \S+model_metadata\.json records"),
        (truncate, r"model\.pkl is \d+ bytes, but \S+ records \d+ \(truncated or changed\)"),
        (add_file, r"code/sitecustomize\.py was added: \S+model_metadata\.json does not"),
        (delete, r"model\.pkl is missing, though \S+model_metadata\.json records it"),
    ],
)
def test_load_model_refuses_a_tampered_version(
    root: Path, data: dict, fitted: dict, tamper, message: str
) -> None:
    mv = register(fitted["logreg"], data)

    tamper(mv.path / "model.pkl")

    with pytest.raises(store.ModelIntegrityError, match=message):
        store.load_model("toy", mv.version)


class _Marker:
    """Unpickling this writes a marker file: proof that code ran during loading."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.write_text, (Path(self.path), "unpickled"))


def test_load_model_never_unpickles_a_replaced_model_file(
    root: Path, data: dict, fitted: dict, tmp_path: Path
) -> None:
    mv = register(fitted["logreg"], data)
    marker = tmp_path / "marker.txt"
    (mv.path / "model.pkl").write_bytes(pickle.dumps(_Marker(str(marker))))

    with pytest.raises(store.ModelIntegrityError):
        store.load_model("toy", "latest")

    assert not marker.exists()


def accuracy_on(data: dict):
    """The caller's score function: accuracy of a version on the shared test split."""
    calls = []

    def score(mv: store.ModelVersion) -> float:
        calls.append(mv.version)
        model = store.load_model(mv.name, mv.version)
        return float(accuracy_score(data["y_test"], model.predict(data["x_test"])))

    return score, calls


def test_champion_gate_promotes_better_and_rejects_worse(
    root: Path, data: dict, fitted: dict
) -> None:
    score, calls = accuracy_on(data)
    gate = {"metric": "accuracy", "greater_is_better": True, "margin": 0.0, "score": score}
    dummy, logreg, dummy_again = (register(fitted[k], data) for k in ["dummy", "logreg", "dummy"])

    first = promote_if_better(dummy, **gate)
    better = promote_if_better(logreg, **gate)
    worse = promote_if_better(dummy_again, **gate)

    assert (first.promoted, first.champion_version) == (True, None)
    assert (better.promoted, better.champion_version) == (True, 1)
    assert better.candidate_score > better.champion_score
    assert (worse.promoted, worse.champion_version) == (False, 2)
    assert "does not beat" in worse.reason
    assert calls == [1, 2, 1, 3, 2]
    champion = store.read_champion("toy")
    assert (champion.name, champion.version, champion.metric, champion.previous) == (
        "toy", 2, "accuracy", 1,
    )  # fmt: skip
    assert store.get_version("toy", "champion").version == 2
    alias = MlflowClient().get_model_version_by_alias("toy", "champion")
    assert int(alias.version) == logreg.metadata.mlflow_model_version
    assert read_decisions("toy") == [first, better, worse]


@pytest.mark.parametrize(
    "damage",
    [b"garbage\n", b'{"name": "toy", "promoted": tr', b"\x00\x00\x00"],
    ids=["garbage-line", "torn-line", "nul-bytes"],
)
def test_a_damaged_decisions_line_keeps_the_decisions_after_it(
    root: Path, data: dict, fitted: dict, damage: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    score, _ = accuracy_on(data)
    gate = {"metric": "accuracy", "greater_is_better": True, "margin": 0.0, "score": score}
    first = promote_if_better(register(fitted["dummy"], data), **gate)
    path = store.model_dir("toy") / "decisions.jsonl"
    with open(path, "ab") as handle:  # a torn write (a full disk) or a stray edit
        handle.write(damage)

    second = promote_if_better(register(fitted["logreg"], data), **gate)

    assert read_decisions("toy") == [first, second]
    assert "decisions.jsonl line 2 is damaged" in caplog.text


@pytest.mark.parametrize(
    ("greater_is_better", "margin", "champion_score", "candidate_score", "promoted"),
    [
        (True, 0.0, 0.80, 0.85, True),
        (True, 0.0, 0.80, 0.80, False),
        (True, 0.10, 0.80, 0.85, False),
        (True, 0.04, 0.80, 0.85, True),
        (False, 0.0, 2.0, 1.5, True),
        (False, 0.6, 2.0, 1.5, False),
        (False, 0.0, 2.0, 2.5, False),
    ],
)
def test_champion_gate_respects_direction_and_margin(
    root: Path,
    greater_is_better: bool,
    margin: float,
    champion_score: float,
    candidate_score: float,
    promoted: bool,
) -> None:
    champion, candidate = keras_version(), keras_version()
    scores = {champion.version: champion_score, candidate.version: candidate_score}
    gate = {
        "metric": "m", "greater_is_better": greater_is_better, "margin": margin,
        "score": lambda mv: scores[mv.version],
    }  # fmt: skip
    promote_if_better(champion, **gate)

    decision = promote_if_better(candidate, **gate)

    assert decision.promoted is promoted
    assert decision.margin == margin
    expected = candidate.version if promoted else champion.version
    assert store.get_version("deep", "champion").version == expected


def test_champion_gate_logs_the_decision_to_the_candidate_run(
    root: Path, data: dict, fitted: dict
) -> None:
    tracking.set_experiment("gate")
    with mlflow.start_run(run_name="gate") as run:
        pass
    mv = register(fitted["logreg"], data, run_id=run.info.run_id)
    score, _ = accuracy_on(data)

    promote_if_better(mv, metric="accuracy", greater_is_better=True, margin=0.0, score=score)

    client = MlflowClient()
    tags = client.get_run(run.info.run_id).data.tags
    assert tags["champion_gate.promoted"] == "true"
    logged = [f.path for f in client.list_artifacts(run.info.run_id, "champion_gate")]
    assert len(logged) == 1
    assert logged[0].startswith("champion_gate/decision-")


def test_champion_gate_refuses_a_negative_margin(root: Path) -> None:
    mv = keras_version()

    with pytest.raises(ValueError, match=r"margin must be a finite number >= 0, got -0\.1"):
        promote_if_better(mv, metric="m", greater_is_better=True, margin=-0.1, score=lambda v: 1.0)


def test_register_inside_a_run_links_the_version_to_that_run(
    root: Path, data: dict, fitted: dict
) -> None:
    tracking.set_experiment("train")
    with mlflow.start_run(run_name="train") as run:
        mv = register(fitted["dummy"], data)

    assert mv.metadata.mlflow_run_id == run.info.run_id
    assert MlflowClient().get_model_version("toy", "1").run_id == run.info.run_id
    logged = {f.path for f in MlflowClient().list_artifacts(run.info.run_id, "registry/toy/v1")}
    assert {"registry/toy/v1/model_metadata.json", "registry/toy/v1/model.pkl"} <= logged


def test_register_refuses_an_unknown_task(root: Path, data: dict, fitted: dict) -> None:
    with pytest.raises(ValueError, match="task must be 'classification' or 'regression'"):
        store.register_sklearn_model(
            fitted["dummy"], name="toy", task="ranking", target="label",
            feature_types=FEATURE_TYPES, classes=None, data=DATA,
            metrics={}, hyperparameters={}, input_example=data["x_train"].head(3),
        )  # fmt: skip


def test_a_version_with_broken_metadata_is_refused_naming_the_file(
    root: Path, data: dict, fitted: dict
) -> None:
    mv = register(fitted["dummy"], data)
    meta = json.loads((mv.path / "model_metadata.json").read_text())
    del meta["files"]
    (mv.path / "model_metadata.json").write_text(json.dumps(meta))

    with pytest.raises(
        store.ModelIntegrityError, match=r"model_metadata\.json is not valid.*files"
    ):
        store.get_version("toy", 1)


PROMOTER = """
from amlkit.registry import champion, store

def score(version):  # later versions score higher; slow, so that the two decisions overlap
    time.sleep(0.5)
    return 0.5 + 0.1 * version.version

mv = store.get_version("race", {version})
start_together()
decision = champion.promote_if_better(
    mv, metric="accuracy", greater_is_better=True, margin=0.0, score=score
)
print(json.dumps({{"version": mv.version, "promoted": decision.promoted}}))
"""


def test_two_processes_promoting_at_once_leave_one_champion_and_a_consistent_log(
    root: Path, run_at_once
) -> None:
    for _ in range(2):
        keras_version("race")
    run_at_once([PROMOTER.format(version=1), PROMOTER.format(version=2)], root)

    # The decisions took turns: the second compared against the champion the first left.
    decisions = read_decisions("race")
    assert len(decisions) == 2
    assert (decisions[0].promoted, decisions[0].champion_version) == (True, None)
    assert decisions[1].champion_version == decisions[0].candidate_version
    champion = store.read_champion("race")
    assert champion.version == 2  # the better one, in either order
    assert champion.previous == (1 if decisions[1].promoted else None)
    alias = MlflowClient().get_model_version_by_alias("race", "champion")
    assert int(alias.version) == store.get_version("race", 2).metadata.mlflow_model_version


def test_without_champion_json_the_mlflow_alias_names_the_champion_and_the_gate_compares(
    root: Path, data: dict, fitted: dict
) -> None:
    score, calls = accuracy_on(data)
    gate = {"metric": "accuracy", "greater_is_better": True, "margin": 0.0, "score": score}
    logreg, dummy = register(fitted["logreg"], data), register(fitted["dummy"], data)
    promote_if_better(logreg, **gate)
    (store.model_dir("toy") / store.CHAMPION_FILE).unlink()

    assert store.get_version("toy", "champion").version == logreg.version
    decision = promote_if_better(dummy, **gate)

    assert (decision.promoted, decision.champion_version) == (False, logreg.version)
    assert "no champion yet" not in decision.reason
    assert calls == [1, 2, 1]  # the candidate, then the alias's champion, scored
    alias = MlflowClient().get_model_version_by_alias("toy", "champion")
    assert int(alias.version) == logreg.metadata.mlflow_model_version


def test_without_champion_json_or_alias_the_champion_is_refused_with_the_repair(
    root: Path, data: dict, fitted: dict
) -> None:
    register(fitted["logreg"], data)
    register(fitted["dummy"], data)

    with pytest.raises(store.ModelNotFoundError, match=r"set_champion\(.*'latest'"):
        store.get_version("toy", "champion")
    assert store.find_champion("toy") is None


def truncate_text(path: Path) -> None:
    path.write_text(path.read_text()[:20])


def drop_score(path: Path) -> None:
    record = json.loads(path.read_text())
    del record["score"]
    path.write_text(json.dumps(record))


@pytest.mark.parametrize(
    ("damage", "problem"),
    [(truncate_text, r"Unterminated string|Expecting"), (drop_score, r"score: Field required")],
)
def test_a_damaged_champion_json_is_named_with_what_is_wrong(
    root: Path, data: dict, fitted: dict, damage, problem: str
) -> None:
    mv = register(fitted["logreg"], data)
    store.set_champion(mv, metric="accuracy", score=0.9)
    path = store.model_dir("toy") / store.CHAMPION_FILE
    damage(path)

    for read in (store.read_champion, lambda name: store.get_version(name, "champion")):
        with pytest.raises(store.ChampionFileError, match=rf"{path} is damaged: .*({problem})"):
            read("toy")


def test_load_model_as_a_generic_pyfunc_checks_the_files_first(
    root: Path, data: dict, fitted: dict
) -> None:
    mv = register(fitted["logreg"], data)
    generic = store.load_model("toy", mv.version, flavor="pyfunc")
    assert list(generic.predict(data["x_test"])) == list(fitted["logreg"].predict(data["x_test"]))

    flip_byte(mv.path / "model.pkl")
    with pytest.raises(store.ModelIntegrityError, match=r"model\.pkl has sha256"):
        store.load_model("toy", mv.version, flavor="pyfunc")


def test_register_refuses_a_model_folder_that_links_out_of_the_project(
    root: Path, data: dict, fitted: dict, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("elsewhere")  # root is tmp_path: this lies outside it
    link = root / "models" / "trained_models" / "toy"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside, target_is_directory=True)

    with pytest.raises(ValueError, match=rf"{link} is a symbolic link to {outside}"):
        register(fitted["logreg"], data)
    assert list(outside.iterdir()) == []
