"""Tracking, registration and the champion against a real ``mlflow server``, as in a job.

An Azure ML job talks to its workspace's tracking server and registry over HTTP, with the
job's run already started (``MLFLOW_RUN_ID``), and writes to a fresh output folder: nothing
of an earlier job's ``trained_models`` is there. The ``mlflow_server`` fixture stands in for
the workspace (shared by the session: each test keeps to its own names); each project root
here is a fresh folder, as a job's is.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from amlkit import integrity
from amlkit.data.manifests import DataRef
from amlkit.registry import store, tracking
from amlkit.registry.champion import promote_if_better

FEATURE_TYPES = {"x1": "numeric", "x2": "numeric", "color": "categorical"}


@pytest.fixture(scope="module")
def data() -> dict[str, pd.DataFrame | pd.Series]:
    rng = np.random.default_rng(3)
    x = pd.DataFrame(
        {"x1": rng.normal(size=120), "x2": rng.normal(size=120)}
        | {"color": rng.choice(["red", "green", "blue"], size=120)}
    )
    y = pd.Series(np.where(x["x1"] + 0.5 * x["x2"] > 0.3, "yes", "no"), name="label")
    return {"x_train": x[:80], "y_train": y[:80], "x_test": x[80:], "y_test": y[80:]}


@pytest.fixture(scope="module")
def pipeline(data: dict) -> Pipeline:
    pre = ColumnTransformer(
        [
            ("num", StandardScaler(), ["x1", "x2"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["color"]),
        ]
    )
    model = Pipeline([("pre", pre), ("model", LogisticRegression())])
    return model.fit(data["x_train"], data["y_train"])


def register(pipeline: Pipeline, data: dict, name: str, run_id: str | None = None):
    return store.register_sklearn_model(
        pipeline,
        name=name,
        task="classification",
        target="label",
        feature_types=FEATURE_TYPES,
        classes=["no", "yes"],
        data=DataRef(dataset="toy", version="v1", sha256="0" * 64),
        metrics={"test": {"accuracy": 1.0}},
        hyperparameters={"C": 1.0},
        input_example=data["x_train"].head(3),
        run_id=run_id,
    )


@pytest.fixture
def on_server(
    mlflow_server, new_project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[str], Path]:
    """``on_server(label)``: a fresh project root whose MLflow is the server's, as a job's is."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", mlflow_server.uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)

    def make(label: str) -> Path:
        root = new_project(tmp_path / label, monkeypatch)
        monkeypatch.chdir(root)
        assert tracking.configure_tracking() == mlflow_server.uri
        return root

    return make


@pytest.fixture
def job_run(mlflow_server, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], str]:
    """``job_run(experiment)``: the run a platform starts for a job, passed as it passes it."""

    def start(experiment: str) -> str:
        client = MlflowClient(mlflow_server.uri)
        experiment_id = client.create_experiment(experiment)
        run = client.create_run(experiment_id, run_name=f"{experiment}-job")
        monkeypatch.setenv("MLFLOW_RUN_ID", run.info.run_id)
        monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", experiment_id)
        return run.info.run_id

    return start


@pytest.mark.parametrize("scheme", ["http", "file", "sqlite"])
def test_configure_tracking_honours_the_environments_tracking_uri_whatever_its_scheme(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scheme: str
) -> None:
    given = {
        "http": "http://127.0.0.1:9",  # never contacted: configuring does not call it
        "file": (tmp_path / "team-store").as_uri(),
        "sqlite": f"sqlite:///{tmp_path / 'team.db'}",
    }[scheme]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", given)

    assert tracking.configure_tracking() == given
    assert (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) == (given, given)


def test_configure_tracking_takes_the_registry_uri_the_environment_gives(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", f"sqlite:///{tmp_path / 'registry.db'}")

    tracking.configure_tracking()

    assert mlflow.get_registry_uri() == f"sqlite:///{tmp_path / 'registry.db'}"


def test_a_project_root_after_another_gets_its_own_local_store(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = tracking.configure_tracking()
    other = tmp_path / "other"
    (other / ".amlkit").mkdir(parents=True)
    monkeypatch.setenv("AMLKIT_ROOT", str(other))

    assert os.environ["MLFLOW_TRACKING_URI"] == first  # exported by MLflow, to children too
    assert tracking.configure_tracking() == f"sqlite:///{other / '.amlkit' / 'mlflow.db'}"


def test_training_inside_a_job_records_in_the_jobs_run_with_candidates_nested(
    on_server, job_run
) -> None:
    on_server("job")
    job = job_run("job-training")
    tracking.configure_tracking()

    with tracking.training_run("toy-logreg", tags={"task": "classification"}) as run:
        mlflow.log_param("candidate", "logreg")
        for candidate in ("logreg", "forest"):
            with mlflow.start_run(run_name=candidate, nested=True):
                mlflow.log_metric("cv_accuracy", 0.9)

    client = MlflowClient()
    resumed = client.get_run(job)
    assert tracking.in_job() and run.info.run_id == job
    assert resumed.data.params == {"candidate": "logreg"}
    assert resumed.data.tags["task"] == "classification"
    assert resumed.data.tags[tracking.RUN_NAME_TAG] == "toy-logreg"
    assert resumed.info.run_name == "job-training-job"  # the job keeps its name
    assert resumed.info.status == "RUNNING"  # the platform ends it with the job's outcome
    assert mlflow.active_run() is None
    nested = client.search_runs(
        [resumed.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{job}'"
    )
    assert sorted(r.info.run_name for r in nested) == ["forest", "logreg"]
    assert {r.info.status for r in nested} == {"FINISHED"}
    assert client.get_experiment_by_name(tracking.TRAINING_EXPERIMENT) is None


def test_training_outside_a_job_starts_and_ends_a_run_in_amlkit_training(root: Path) -> None:
    with (
        tracking.training_run("toy-logreg", tags={"task": "classification"}) as run,
        mlflow.start_run(run_name="logreg", nested=True) as child,
    ):
        pass

    client = MlflowClient()
    finished = client.get_run(run.info.run_id)
    experiment = client.get_experiment_by_name(tracking.TRAINING_EXPERIMENT)
    assert not tracking.in_job()
    assert (finished.info.run_name, finished.info.status) == ("toy-logreg", "FINISHED")
    assert finished.info.experiment_id == experiment.experiment_id
    assert client.get_run(child.info.run_id).data.tags["mlflow.parentRunId"] == run.info.run_id


def test_a_version_is_registered_from_its_runs_artifacts_and_downloads_from_elsewhere(
    on_server, data: dict, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    on_server("writer")
    version = register(pipeline, data, "remote-source")

    client = MlflowClient()
    registered = client.get_model_version("remote-source", "1")
    assert version.version == version.metadata.mlflow_model_version == 1
    assert registered.source == f"runs:/{registered.run_id}/registry/remote-source/v1"
    assert registered.run_id == version.metadata.mlflow_run_id
    own_run = client.get_run(registered.run_id)  # registered outside a run: a run of its own
    registry_experiment = client.get_experiment_by_name(store.REGISTRY_EXPERIMENT)
    assert own_run.info.experiment_id == registry_experiment.experiment_id
    assert own_run.info.status == "FINISHED"

    on_server("reader")  # another machine: an empty project root, the same registry
    copy = Path(mlflow.artifacts.download_artifacts("models:/remote-source/1", dst_path="dl"))
    fetched = integrity.file_records(copy, exclude={"registered_model_meta"})  # MLflow's note
    assert fetched == integrity.file_records(version.path)
    assert "model_metadata.json" in fetched


def test_version_numbers_continue_the_registrys_in_a_fresh_project(
    on_server, data: dict, pipeline: Pipeline
) -> None:
    on_server("first-job")
    register(pipeline, data, "remote-numbers")
    second_root = on_server("second-job")

    second = register(pipeline, data, "remote-numbers")

    assert second.version == second.metadata.mlflow_model_version == 2
    assert second.path == second_root / "models" / "trained_models" / "remote-numbers" / "2"
    assert (
        MlflowClient().get_model_version("remote-numbers", "2").tags[store.COMPLETE_TAG] == "true"
    )


def test_a_registration_the_registry_numbers_otherwise_is_refused_and_undone(
    on_server, make_version, data: dict, pipeline: Pipeline
) -> None:
    root = on_server("stale")
    for number in (1, 2):  # folders this registry never saw
        make_version(root / "models" / "trained_models", name="remote-stale", version=number)

    with pytest.raises(store.VersionNumberError, match=r"numbered the new version .* 1, but"):
        register(pipeline, data, "remote-stale")

    assert sorted(p.name for p in store.model_dir("remote-stale").iterdir()) == ["1", "2"]
    assert MlflowClient().search_model_versions("name='remote-stale'") == []


def test_a_registry_that_skipped_numbers_gets_the_version_under_its_own_number(
    root: Path, data: dict, pipeline: Pipeline
) -> None:
    first = register(pipeline, data, "gap")
    client = MlflowClient()
    undone = client.create_model_version("gap", first.path.as_posix())  # a registration undone
    client.delete_model_version("gap", undone.version)

    version = register(pipeline, data, "gap")

    # 2 was staged, the registry said 3 (2 is deleted, never reused): undone, staged as 4
    assert version.version == version.metadata.mlflow_model_version == 4
    assert client.get_model_version("gap", "4").source == "runs:/" + (
        f"{version.metadata.mlflow_run_id}/registry/gap/v4"
    )
    assert [v.version for v in store.list_versions("gap")] == [1, 4]
    assert [int(v.version) for v in client.search_model_versions("name='gap'")] == [4, 1]


def accuracy_on(data: dict) -> Callable[[store.ModelVersion], float]:
    def score(version: store.ModelVersion) -> float:
        model = store.load_model(version.name, version.version)
        return float(accuracy_score(data["y_test"], model.predict(data["x_test"])))

    return score


def test_the_gate_in_a_fresh_project_compares_against_the_registrys_champion(
    on_server, data: dict, pipeline: Pipeline
) -> None:
    gate = {"metric": "accuracy", "greater_is_better": True, "margin": 0.01}
    on_server("job-a")
    first = register(pipeline, data, "remote-gate")
    assert promote_if_better(first, **gate, score=accuracy_on(data)).promoted
    root_b = on_server("job-b")  # the next job: empty trained_models, the same registry

    second = register(pipeline, data, "remote-gate")
    decision = promote_if_better(second, **gate, score=accuracy_on(data))

    assert second.version == 2
    assert (decision.promoted, decision.champion_version) == (False, 1)
    assert decision.champion_score == decision.candidate_score  # the same model, fetched
    fetched = root_b / "models" / "trained_models" / "remote-gate" / "1"
    assert store.get_version("remote-gate", 1).path == fetched
    store.verify(store.get_version("remote-gate", 1))
    client = MlflowClient()
    registered = client.get_registered_model("remote-gate")
    assert int(registered.aliases[store.CHAMPION_ALIAS]) == 1
    assert registered.tags[store.CHAMPION_TAG] == "1"
    assert not (root_b / "models" / "trained_models" / "remote-gate" / "champion.json").exists()


def test_a_version_whose_files_changed_in_the_registry_is_refused_when_fetched(
    on_server, mlflow_server, data: dict, pipeline: Pipeline
) -> None:
    on_server("writer")
    register(pipeline, data, "remote-tampered")
    stored = next(mlflow_server.folder.rglob("registry/remote-tampered/v1/model.pkl"))
    stored.write_bytes(stored.read_bytes() + b"\0")
    on_server("reader")

    with pytest.raises(store.ModelIntegrityError, match=r"model\.pkl is \d+ bytes, but"):
        store.load_model("remote-tampered", 1)

    assert list(store.model_dir("remote-tampered").iterdir()) == []  # nothing half-fetched
