"""Crash safety: a real process SIGKILLed at many moments of each stage that writes versions.

Each run of a stage is a child process forked from a multiprocessing forkserver that has
imported amlkit once, so a run starts in milliseconds and the test affords dozens. The test
kills the child from outside with SIGKILL, at moments it observes: when a temporary file or
folder of the stage appears, and at evenly spaced times through the stage's run. No hook in
lib/ marks the moments, so the kills land wherever the stage happens to be, inside pyarrow,
MLflow's SQLite transaction or a copy as well as between our own steps. After each kill, no
partial version is visible; then the next run of the stage succeeds, and no temporary file
of the killed run remains after it.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import cloudpickle
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from amlkit import io
from amlkit.data import ingest, preprocess, sources
from amlkit.data.manifests import DataRef, RawManifest
from amlkit.registry import store
from amlkit.serving.package import service_info

FORKSERVER = multiprocessing.get_context("forkserver")
PRELOAD = [
    "amlkit.data.stream",
    "amlkit.registry.store",
    "amlkit.serving.onnx",
    "amlkit.serving.package",
    "cloudpickle",
    "mlflow.sklearn",
    "mlflow.store.model_registry.sqlalchemy_store",
    "mlflow.store.tracking.sqlalchemy_store",
]
FRACTIONS = (0.3, 0.7)
PRELUDE = """
import os
os.environ["AMLKIT_ROOT"] = {root!r}  # the forkserver keeps the environment it started with
from amlkit.registry import tracking
tracking.configure_tracking()
i = {i}
"""
STAGES = {
    "ingest": """
from amlkit.config import DataConfig
from amlkit.data import ingest
cfg = DataConfig.load()
small = cfg.ingestion.model_copy(update={{"chunk_bytes": 1 << 14, "chunk_rows": 2000}})
cfg = cfg.model_copy(update={{"ingestion": small}})
ingest.ingest("penguins", source=f"{work}/source-{{i}}.csv", data_config=cfg, progress=False)
""",
    "03's write_processed": """
from sklearn.model_selection import train_test_split
from amlkit.data import ingest, preprocess, profile
frame, raw = ingest.load_raw("penguins", "{raw}")
cleaned = preprocess.clean(frame, raw)
rest, test = train_test_split(cleaned.frame, test_size=0.2, random_state=i)
train, validation = train_test_split(rest, test_size=0.25, random_state=i)
splits = {{"train": train, "validation": validation, "test": test}}
splits = {{name: part.reset_index(drop=True) for name, part in splits.items()}}
baseline = profile.build_profile(
    splits["train"], feature_types=cleaned.feature_types, target=raw.target, task=raw.task
)
preprocess.write_processed(
    splits, raw=raw, cleaned=cleaned, params={{"seed": i}}, stratified=False, profile=baseline
)
""",
    "preprocess in chunks": """
from amlkit.config import DataConfig, SplitConfig
from amlkit.data import stream
cfg = DataConfig.load()
cfg = cfg.model_copy(update={{"ingestion": cfg.ingestion.model_copy(update={{"chunk_rows": 60}})}})
stream.preprocess_in_chunks("penguins", "{raw}", split=SplitConfig(random_state=i), data_config=cfg)
""",
    "register": """
import cloudpickle, pandas as pd
from amlkit.data.manifests import DataRef
from amlkit.registry import store
with open("{work}/model.pkl", "rb") as handle:
    pipeline = cloudpickle.load(handle)
store.register_sklearn_model(
    pipeline, name="toy", task="classification", target="label",
    feature_types={{"x1": "numeric", "x2": "numeric", "color": "categorical"}},
    classes=["no", "yes"], data=DataRef(dataset="toy", version="v1", sha256="0" * 64),
    metrics={{"test": {{"accuracy": 0.9}}}}, hyperparameters={{"C": 1.0}},
    input_example=pd.read_parquet("{work}/rows.parquet").head(5),
)
""",
    "package": """
import pandas as pd
from amlkit.serving.package import package_service
rows = pd.read_parquet("{work}/rows.parquet")
package_service(model_name="toy", version=1, service="svc", parity_rows=rows)
""",
}


def run_stage(code: str, kill_when: Callable[[float], bool]) -> tuple[bool, float]:
    """Run ``code`` in a forked child; SIGKILL it the first time ``kill_when(seconds)`` holds.

    Returns:
        (whether it was killed while running, how long it ran)
    """
    child = FORKSERVER.Process(target=exec, args=(code, {}))
    child.start()
    start = time.perf_counter()
    while child.is_alive():
        if kill_when(time.perf_counter() - start):
            os.kill(child.pid, signal.SIGKILL)
            break
        time.sleep(0.0002)
    child.join(120)
    seconds = time.perf_counter() - start
    assert child.exitcode in (0, -signal.SIGKILL), f"the stage failed ({child.exitcode})"
    return child.exitcode == -signal.SIGKILL, seconds


def appears(folder: Path, pattern: str) -> Callable[[float], bool]:
    return lambda _: any(folder.glob(pattern))


def temporaries(root: Path) -> list[Path]:
    """Every hidden file or folder under data/, models/ and config/schemas/."""
    places = [root / "data", root / "models", root / "config" / "schemas"]
    return sorted(p for place in places if place.exists() for p in place.rglob(".*"))


def check_raw(root: Path) -> None:
    for folder in (root / "data" / "raw" / "penguins").glob("[!.]*"):
        manifest = RawManifest.read(folder / "manifest.json")
        assert io.sha256_file(folder / manifest.file) == manifest.sha256


def check_processed(root: Path) -> None:
    for folder in (root / "data" / "processed" / "penguins").glob("[!.]*"):
        preprocess.load_processed("penguins", folder.name)  # checks every file's sha256


def check_registry(root: Path) -> None:
    versions = store.list_versions("toy")
    for mv in versions:
        store.verify(mv)


def check_service(root: Path) -> None:
    folder = root / "models" / "deployed_models" / "svc"
    if folder.exists():
        for rel, digest in service_info(folder)["model_files"].items():
            assert io.sha256_file(folder / "model" / rel) == digest


@pytest.fixture
def crash_project(root: Path, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    """A project holding what the stage reads: raw penguins, a registered toy model, sources."""
    FORKSERVER.set_forkserver_preload(PRELOAD)
    stage, work = request.node.callspec.params["stage"], tmp_path / "work"
    work.mkdir()
    raw = ingest.ingest("penguins", progress=False).manifest
    penguins = sources.bundled_path("bundled:penguins").read_text()
    header, *rows = penguins.splitlines()
    for i in range(10):
        extra = f"Adelie,Dream,{30 + i / 10},18,190,3600,male,2009"
        (work / f"source-{i}.csv").write_text("\n".join([header, *rows * 15, extra]) + "\n")
    if stage in ("register", "package"):
        rng = np.random.default_rng(0)
        x = pd.DataFrame(
            {"x1": rng.normal(size=200), "x2": rng.normal(size=200)}
            | {"color": rng.choice(["red", "green", "blue"], size=200)}
        )
        y = np.where(x["x1"] + x["x2"] > 0, "yes", "no")
        numbers = make_pipeline(SimpleImputer(), StandardScaler())
        labels = OneHotEncoder(handle_unknown="ignore")
        pre = ColumnTransformer([("num", numbers, ["x1", "x2"]), ("cat", labels, ["color"])])
        pipeline = Pipeline([("pre", pre), ("model", LogisticRegression())]).fit(x, y)
        (work / "model.pkl").write_bytes(cloudpickle.dumps(pipeline))
        x.to_parquet(work / "rows.parquet")
        store.register_sklearn_model(
            pipeline, name="toy", task="classification", target="label",
            feature_types={"x1": "numeric", "x2": "numeric", "color": "categorical"},
            classes=["no", "yes"], data=DataRef(dataset="toy", version="v1", sha256="0" * 64),
            metrics={}, hyperparameters={}, input_example=x.head(5),
        )  # fmt: skip
    return {"root": str(root), "work": str(work), "raw": raw.version}


def kill_points(root: Path, stage: str) -> dict[str, Callable[[float], bool]]:
    """The observed moments of a stage: its temporary files appearing."""
    raw, processed = root / "data" / "raw" / "penguins", root / "data" / "processed" / "penguins"
    models, services = root / "models" / "trained_models", root / "models" / "deployed_models"
    models = models / "toy"
    return {
        "ingest": {
            "download started": appears(raw, ".fetch-*.partial"),
            "version staged": appears(raw, ".[0-9a-f][0-9a-f][0-9a-f]*.partial"),
        },
        "03's write_processed": {
            "folder staged": appears(processed, ".*.partial"),
            "profile written": appears(processed, ".*.partial/baseline_profile.json"),
        },
        "preprocess in chunks": {
            "splits started": appears(processed, ".stream.*.partial/train.parquet"),
            "profile written": appears(processed, ".stream.*.partial/baseline_profile.json"),
        },
        "register": {
            "model saved": appears(models, ".*.partial/model.pkl"),
            "metrics written": appears(models, ".*.partial/performance_metrics.json"),
        },
        "package": {
            "model copied": appears(services, ".svc.*.partial/model/MLmodel"),
            "onnx written": appears(services, ".svc.*.partial/model/model.onnx"),
        },
    }[stage]


CHECKS = {
    "ingest": check_raw,
    "03's write_processed": check_processed,
    "preprocess in chunks": check_processed,
    "register": check_registry,
    "package": check_service,
}


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_stage_killed_at_any_moment_leaves_no_partial_version(crash_project, stage):
    root = Path(crash_project["root"])

    def code(i: int) -> str:  # run i of the stage; content-named stages get new content
        return PRELUDE.format(i=i, **crash_project) + STAGES[stage].format(**crash_project)

    killed, clean_seconds = run_stage(code(0), lambda _: False)
    assert not killed
    points = kill_points(root, stage)
    points |= {f"at {f:.0%} of a run": (lambda s, f=f: s >= f * clean_seconds) for f in FRACTIONS}
    hits = []
    for i, (name, when) in enumerate(points.items(), start=1):
        if run_stage(code(i), when)[0]:
            hits.append(name)
        CHECKS[stage](root)  # nothing partial is visible
        assert not run_stage(code(i), lambda _: False)[0]  # the next run, same input, succeeds
        CHECKS[stage](root)
        assert temporaries(root) == [], f"left after a kill ({name}) and the next run"
    assert len(hits) >= len(points) // 2, f"only {hits} of {list(points)} killed a running stage"
    if stage == "register":  # MLflow versions of killed registrations were removed
        found = MlflowClient().search_model_versions("name='toy'")
        sources = {Path(v.tags[store.PATH_TAG]) for v in found}
        assert sources == {mv.path for mv in store.list_versions("toy")}
