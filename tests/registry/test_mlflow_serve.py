"""A real peer: MLflow's own loaders and server read the champion we registered."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from amlkit import paths
from amlkit.data.manifests import DataRef
from amlkit.registry import store, tracking
from amlkit.registry.champion import promote_if_better

STARTUP_TIMEOUT_S = 90


@pytest.fixture
def frames() -> tuple[pd.DataFrame, pd.Series, pd.DataFrame]:
    rng = np.random.default_rng(7)
    x = pd.DataFrame(
        {
            "x1": rng.normal(size=60),
            "x2": rng.normal(size=60),
            "color": rng.choice(["red", "green", "blue"], size=60),
        }
    )
    y = pd.Series(np.where(x["x1"] - x["x2"] > 0, "yes", "no"), name="label")
    return x.iloc[:40], y.iloc[:40], x.iloc[40:].reset_index(drop=True)


@pytest.fixture
def champion(root: Path, frames) -> tuple[Pipeline, store.ModelVersion]:
    x_train, y_train, _ = frames
    pre = ColumnTransformer(
        [
            ("num", StandardScaler(), ["x1", "x2"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["color"]),
        ]
    )
    pipeline = Pipeline([("pre", pre), ("model", LogisticRegression())]).fit(x_train, y_train)
    tracking.set_experiment("serve-test")
    with mlflow.start_run(run_name="train") as run:
        pass
    mv = store.register_sklearn_model(
        pipeline,
        name="served",
        task="classification",
        target="label",
        feature_types={"x1": "numeric", "x2": "numeric", "color": "categorical"},
        classes=["no", "yes"],
        data=DataRef(dataset="toy", version="v1", sha256="1" * 64),
        metrics={"train": {"accuracy": float(pipeline.score(x_train, y_train))}},
        hyperparameters={"C": 1.0},
        input_example=x_train.head(3),
        run_id=run.info.run_id,
    )
    decision = promote_if_better(
        mv, metric="accuracy", greater_is_better=True, margin=0.0, score=lambda v: 1.0
    )
    assert decision.promoted
    return pipeline, mv


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_ping(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"mlflow models serve exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    pytest.fail(f"no answer from {url} within {STARTUP_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


@pytest.mark.slow
def test_mlflow_serve_answers_with_the_champion_predictions(
    champion, frames, tmp_path: Path
) -> None:
    pipeline, _ = champion
    x_new = frames[2]
    port = free_port()
    bin_dir = str(Path(sys.executable).parent)  # mlflow starts `uvicorn` from PATH
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking.local_tracking_uri(),
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
    }
    log = tmp_path / "serve.log"
    command = [
        sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/served@champion",
        "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1",
    ]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_for_ping(f"http://127.0.0.1:{port}/ping", proc, log)
        body = json.dumps({"dataframe_split": json.loads(x_new.to_json(orient="split"))})
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=body.encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)

    assert answer["predictions"] == list(pipeline.predict(x_new))


@pytest.mark.slow
def test_pyfunc_loads_the_champion_alias_and_predicts_the_same(champion, frames) -> None:
    pipeline, mv = champion
    x_new = frames[2]

    model = mlflow.pyfunc.load_model("models:/served@champion")

    np.testing.assert_array_equal(np.asarray(model.predict(x_new)), pipeline.predict(x_new))
    assert model.metadata.model_uuid
    assert paths.trained_models_dir() / "served" / "1" == mv.path
