"""Shared fixtures: project roots, the MLflow store, a small penguins model, a small digits
CNN and a stub scoring server.

Tests never touch the repository's data: every fixture that writes points ``AMLKIT_ROOT`` at
a fresh folder holding a copy of ``config/``. Processed data comes from the real stage: notebook
03 run by papermill.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from amlkit import paths
from amlkit.registry import tracking

REPO = Path(__file__).resolve().parents[1]
PENGUIN_NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
PENGUIN_CATEGORICAL = ["island", "sex"]


@pytest.fixture(autouse=True)
def _absl_handler_keeps_off_pytest_streams() -> Any:
    """Point TensorFlow's absl log handler at the real stderr after each test.

    absl's handler keeps the ``sys.stderr`` of the moment TensorFlow was imported (pytest's
    capture of that test) and closes it when logging shuts handlers down, unless it is the
    current ``sys.stderr``. ``amlkit``'s CLI configures logging (``dictConfig`` shuts every
    handler down), so a later test calling ``main()`` would close pytest's own capture.
    """
    yield
    absl_logging = sys.modules.get("absl.logging")
    if absl_logging is not None:
        absl_logging.get_absl_handler().python_handler.stream = sys.__stderr__


@pytest.fixture(scope="session")
def run_at_once() -> Callable[[list[str], Path], list[Any]]:
    """Run Python snippets in processes of their own that start their work at one moment.

    ``run_at_once(snippets, workdir)`` starts one ``python -c`` per snippet, with this
    process's environment (``AMLKIT_ROOT``, the MLflow store); each does its imports, calls
    ``start_together()``, which returns once all are ready, and races the others. Returns the
    last line each one printed, parsed as JSON; a snippet that fails fails the test.
    """

    def run(snippets: list[str], workdir: Path) -> list[Any]:
        go, ready = workdir / "go", [workdir / f"ready-{i}" for i in range(len(snippets))]
        children = []
        for flag, snippet in zip(ready, snippets, strict=True):
            prelude = (
                "import json, pathlib, time\n"
                "def start_together():\n"
                f"    pathlib.Path({str(flag)!r}).touch()\n"
                f"    while not pathlib.Path({str(go)!r}).exists():\n"
                "        time.sleep(0.001)\n"
            )
            children.append(
                subprocess.Popen(
                    [sys.executable, "-c", prelude + snippet],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        deadline = time.monotonic() + 300
        while not all(f.exists() for f in ready) and time.monotonic() < deadline:
            if any(child.poll() is not None for child in children):
                break
            time.sleep(0.01)
        go.touch()
        outputs = [child.communicate(timeout=300) for child in children]
        for child, (_, err) in zip(children, outputs, strict=True):
            assert child.returncode == 0, err[-3000:]
        return [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]

    return run


@pytest.fixture(scope="session")
def repo() -> Path:
    """The repository checkout (its config/, notebooks/ and packaging files)."""
    return REPO


def make_project(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Create a project root at ``folder`` (config/ copied, no data) and point amlkit at it."""
    shutil.copytree(REPO / "config", folder / "config", ignore=shutil.ignore_patterns("schemas"))
    monkeypatch.setenv("AMLKIT_ROOT", str(folder))
    return folder


@pytest.fixture(scope="session")
def new_project() -> Callable[[Path, pytest.MonkeyPatch], Path]:
    """A factory of project roots, for module- or session-scoped fixtures."""
    return make_project


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh project root (config/ copied, no data) that amlkit.paths points at."""
    return make_project(tmp_path / "project", monkeypatch)


@pytest.fixture(scope="session")
def execute_notebook() -> Callable[..., Path]:
    """Run a stage notebook as ``amlkit run`` does, against the current ``AMLKIT_ROOT``.

    ``execute_notebook(name, output, **parameters)`` executes ``notebooks/<name>`` with the
    given parameters into ``output`` and returns it; a failing cell raises PipelineError.
    """

    def run(name: str, output: Path, **parameters: object) -> Path:
        from amlkit.pipeline import runner

        runner.execute(REPO / "notebooks" / name, output, parameters, progress=False)
        return output

    return run


@pytest.fixture(scope="session")
def processed_penguins_data(
    tmp_path_factory: pytest.TempPathFactory, execute_notebook: Callable[..., Path]
) -> Path:
    """The ``data/`` folder of a project where penguins were ingested and 03 ran (once)."""
    from amlkit.data import ingest

    folder = tmp_path_factory.mktemp("penguins-data") / "project"
    with pytest.MonkeyPatch.context() as mp:
        make_project(folder, mp)
        ingest.ingest("penguins", progress=False)
        execute_notebook("03_data_preprocessing.ipynb", folder / "03_data_preprocessing.ipynb")
    return folder / "data"


@pytest.fixture
def processed_penguins(project: Path, processed_penguins_data: Path):
    """The penguins' processed version that 03 writes by default, in a fresh project root."""
    from amlkit.data import preprocess

    shutil.copytree(processed_penguins_data, project / "data")
    return preprocess.load_processed("penguins")


@pytest.fixture(scope="session")
def processed_subset() -> Callable[..., Any]:
    """A factory of a second processed version: another reference to compare rows with.

    ``processed_subset(processed, train_rows)`` writes, beside ``processed``, a version of the
    same data set whose train split keeps only its first ``train_rows`` rows (manifest and
    hashes rewritten, so it loads like any other), and returns it loaded.
    """

    def make(processed: Any, train_rows: int) -> Any:
        from amlkit.data import preprocess
        from amlkit.io import sha256_file

        manifest = processed.manifest
        version = f"{manifest.version[:6]}-train{train_rows}"
        folder = processed.path.parent / version
        shutil.copytree(processed.path, folder)
        processed.train.head(train_rows).to_parquet(folder / "train.parquet", index=False)
        changes = {
            "version": version,
            "files": {name: sha256_file(folder / name) for name in manifest.files},
            "rows": manifest.rows | {"train": train_rows},
        }
        manifest.model_copy(update=changes).write(folder / "manifest.json")
        return preprocess.load_processed(manifest.dataset, version)

    return make


@pytest.fixture(scope="session")
def empty_mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite file with the schema created once (alembic takes seconds)."""
    folder = tmp_path_factory.mktemp("mlflow_template")
    tracking.quiet_mlflow()
    MlflowClient(tracking_uri=f"sqlite:///{folder}/mlflow.db").search_experiments()
    return folder / "mlflow.db"


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_mlflow_db: Path) -> Path:
    """An isolated project root: a copy of config/ and its own, ready MLflow store."""
    shutil.copytree(REPO / "config", tmp_path / "config")
    monkeypatch.setenv("AMLKIT_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    shutil.copy(empty_mlflow_db, paths.state_dir() / "mlflow.db")
    tracking.configure_tracking()
    return tmp_path


@pytest.fixture(scope="session")
def penguin_features() -> list[str]:
    """The feature columns of :func:`penguins`, numeric first."""
    return PENGUIN_NUMERIC + PENGUIN_CATEGORICAL


@pytest.fixture(scope="session")
def penguins_frame() -> pd.DataFrame:
    """Palmer penguins with a species, as requests and files carry them (NaN for gaps)."""
    from palmerpenguins import load_penguins

    frame = load_penguins().dropna(subset=["species"]).reset_index(drop=True)
    frame[PENGUIN_NUMERIC] = frame[PENGUIN_NUMERIC].astype("float64")
    categories = frame[PENGUIN_CATEGORICAL].astype(object)
    frame[PENGUIN_CATEGORICAL] = categories.where(categories.notna(), np.nan)
    return frame


@pytest.fixture
def penguins(penguins_frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of :func:`penguins_frame` that a test may change."""
    return penguins_frame.copy()


def _penguin_pipeline(estimator):
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
    pre = ColumnTransformer(
        [("num", numeric, PENGUIN_NUMERIC), ("cat", categorical, PENGUIN_CATEGORICAL)]
    )
    return Pipeline([("preprocess", pre), ("model", estimator)])


@pytest.fixture(scope="session")
def make_version(penguins_frame: pd.DataFrame) -> Callable[..., Path]:
    """A factory writing a penguins model version folder per docs/contracts.md.

    ``make_version(folder, estimator=None, *, name="penguins", version=1, pipeline=None)``
    fits a pipeline (imputation, scaling, one-hot, then ``estimator``, by default a 50-tree
    forest; or ``pipeline`` as given, on the rows without missing values), saves it
    as an MLflow model under ``folder/<name>/<version>`` with its ``model_metadata.json``
    (every file's sha256 in ``files``, as the registry records them), and returns that
    folder. It does not register the version in MLflow.
    """

    def make(
        folder: Path, estimator=None, *, name: str = "penguins", version: int = 1, pipeline=None
    ) -> Path:
        import mlflow.sklearn
        from sklearn.ensemble import RandomForestClassifier

        from amlkit import integrity, io

        frame = penguins_frame
        features = PENGUIN_NUMERIC + PENGUIN_CATEGORICAL
        if estimator is None:  # not `or`: an unfitted ensemble has no len()
            estimator = RandomForestClassifier(n_estimators=50, random_state=0, n_jobs=1)
        if pipeline is None:
            pipeline = _penguin_pipeline(estimator).fit(frame[features], frame["species"])
        else:
            complete = frame.dropna(subset=features)
            pipeline.fit(complete[features], complete["species"])
            estimator = pipeline[-1]
        target = folder / name / str(version)
        mlflow.sklearn.save_model(
            pipeline, target, serialization_format="cloudpickle", pip_requirements=["scikit-learn"]
        )
        io.write_json_atomic(
            target / "model_metadata.json",
            {
                "name": name,
                "version": version,
                "model_type": type(estimator).__name__,
                "flavor": "sklearn",
                "task": "classification",
                "target": "species",
                "feature_columns": features,
                "feature_types": dict.fromkeys(PENGUIN_NUMERIC, "numeric")
                | dict.fromkeys(PENGUIN_CATEGORICAL, "categorical"),
                "classes": sorted(frame["species"].unique().tolist()),
                "created": "2024-01-01T00:00:00+00:00",
                "data": {"dataset": "penguins", "version": "test", "sha256": "0"},
                "model_file": "model.pkl",
                "model_sha256": io.sha256_file(target / "model.pkl"),
                "files": integrity.file_records(target),
            },
        )
        return target

    return make


@pytest.fixture(scope="session")
def feature_preprocessor() -> Callable[[dict[str, str]], object]:
    """A factory of the preprocessing ColumnTransformer notebook 04 builds by default.

    ``feature_preprocessor({column: kind})`` returns it unfitted, for tests that need a model
    as 04 trains it (serving, ONNX conversion); a notebook-04 test checks the two agree.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from amlkit.training.transformers import CategoryNormalizer, DatetimeFeatures

    def categories(boolean: bool) -> Pipeline:
        return Pipeline(
            [
                ("normalize", CategoryNormalizer(boolean=boolean)),
                ("impute", SimpleImputer(strategy="constant", fill_value="missing")),
                ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
            ]
        )

    def build(feature_types: dict[str, str]) -> ColumnTransformer:
        def of(*kinds: str) -> list[str]:
            return [column for column, kind in feature_types.items() if kind in kinds]

        numeric = [
            ("impute", SimpleImputer(strategy="median", add_indicator=True)),
            ("scale", StandardScaler()),
        ]
        groups = [
            ("num", Pipeline(numeric), of("numeric", "integer")),
            ("cat", categories(boolean=False), of("categorical")),
            ("bool", categories(boolean=True), of("boolean")),
            (
                "date",
                Pipeline([("parts", DatetimeFeatures()), ("scale", StandardScaler())]),
                of("datetime"),
            ),
        ]
        return ColumnTransformer(
            [group for group in groups if group[2]],
            sparse_threshold=0.0,
            verbose_feature_names_out=False,
        )

    return build


@pytest.fixture(scope="session")
def digit_splits():
    """400 of the bundled 8×8 digits, split and scaled (:func:`amlkit.deep.images.split_images`)."""
    from amlkit.deep.images import load_images, split_images

    x, y = load_images()
    return split_images(x[:400], y[:400], random_state=7)


@pytest.fixture(scope="session")
def digit_classifier(digit_splits):
    """A small Keras CNN trained for three epochs on :func:`digit_splits`: ``(model, history)``.

    It stands for any Keras image classifier in tests of saving, registering and serving;
    notebook 05's own network is tested by running the notebook.
    """
    import keras

    from amlkit.deep import determinism

    determinism.set_determinism(7)
    splits = digit_splits
    model = keras.Sequential(
        [
            keras.Input(splits.x_train.shape[1:]),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(len(splits.classes), activation="softmax"),
        ],
        name="test_cnn",
    )
    model.compile(
        keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    history = model.fit(
        splits.x_train,
        splits.y_train,
        validation_data=(splits.x_val, splits.y_val),
        epochs=3,
        verbose=0,
    )
    return model, history.history


class StubDeployment:
    """A real HTTP/1.1 scoring server on loopback that predicts its name for every row.

    It answers ``{"input_data": {"data": [...]}}`` after ``delay_s``, records each request's
    ``x-request-id`` in ``ids``, and holds its answers while ``gate`` is cleared.
    """

    def __init__(self, name: str = "p", delay_s: float = 0.0) -> None:
        owner = self
        self.name = name
        self.ids: list[str] = []
        self.gate = threading.Event()
        self.gate.set()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.ids.append(self.headers.get("x-request-id", ""))
                owner.gate.wait(10)
                time.sleep(delay_s)
                rows = len(body["input_data"]["data"])
                data = json.dumps({"predictions": [owner.name] * rows}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/score"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def headers(self) -> dict[str, str]:
        """Headers for a scoring call."""
        return {"Content-Type": "application/json"}

    def stop(self) -> None:
        """Stop serving (idempotent)."""
        if self._thread.is_alive():
            self.server.shutdown()
            self._thread.join(5)
        self.server.server_close()


@pytest.fixture
def stub_deployment() -> Callable[..., StubDeployment]:
    """A factory of :class:`StubDeployment` servers, ``make(name="p", delay_s=0.0)``,
    all stopped after the test."""
    made: list[StubDeployment] = []

    def make(name: str = "p", delay_s: float = 0.0) -> StubDeployment:
        made.append(StubDeployment(name, delay_s))
        return made[-1]

    yield make
    for server in made:
        server.stop()


MLFLOW_STATE_ENV = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "MLFLOW_RUN_ID",
    "MLFLOW_EXPERIMENT_ID",
    "MLFLOW_EXPERIMENT_NAME",
    "AMLKIT_CHOSEN_TRACKING_URI",
)


@pytest.fixture(autouse=True)
def _mlflow_store_stays_in_its_test() -> Iterator[None]:
    """Give MLflow's store back as the test found it.

    ``mlflow.set_tracking_uri`` also exports ``MLFLOW_TRACKING_URI`` to the process, where a
    later test (and every notebook kernel it starts) would take it for the platform's choice.
    """
    env = {name: os.environ.get(name) for name in MLFLOW_STATE_ENV}
    uris = _mlflow_uris()
    yield
    for name, value in env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    if "mlflow" in sys.modules:
        import mlflow.tracking._model_registry.utils as registry_utils
        import mlflow.tracking._tracking_service.utils as tracking_utils

        tracking_utils._tracking_uri, registry_utils._registry_uri = uris


def _mlflow_uris() -> tuple[str | None, str | None]:
    if "mlflow" not in sys.modules:
        return None, None
    import mlflow.tracking._model_registry.utils as registry_utils
    import mlflow.tracking._tracking_service.utils as tracking_utils

    return tracking_utils._tracking_uri, registry_utils._registry_uri


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real ``mlflow server`` on loopback (proxied artifacts), shared by the session.

    Stands in for a workspace's tracking server and registry: tests that use it talk HTTP.
    Each test keeps to its own experiment and model names.
    """
    from amlkit.azure.standins import MlflowServer

    with MlflowServer(tmp_path_factory.mktemp("mlflow-server")) as server:
        yield server


@pytest.fixture(scope="module")
def own_mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A tracking server of this module's own, for tests whose registry must start empty.

    A first run, or a pipeline whose champion gate must find no champion yet.
    """
    from amlkit.azure.standins import MlflowServer

    with MlflowServer(tmp_path_factory.mktemp("own-mlflow-server")) as server:
        yield server


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Azurite's blob service on loopback, shared by the session (skips when not installed)."""
    from amlkit.azure.standins import Azurite, find_azurite

    if find_azurite() is None:
        pytest.skip("Azurite is not installed (npm is missing); `python3 dev.py setup` installs it")
    with Azurite(tmp_path_factory.mktemp("azurite")) as emulator:
        yield emulator
