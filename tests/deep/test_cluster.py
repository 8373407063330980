"""Reading TF_CONFIG, running local workers, and keeping the non-chief workers' writes private."""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import pytest

from amlkit import config, paths
from amlkit.deep.cluster import (
    Worker,
    local_cluster,
    run_local_workers,
    use_scratch_project,
    worker_from_env,
)


def _tf_config(cluster: dict, kind: str, index: int) -> dict[str, str]:
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}})}


TWO = {"worker": ["10.0.0.4:2222", "10.0.0.5:2222"]}
CHIEF_AND_TWO = {"chief": ["10.0.0.3:2222"], **TWO}


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, Worker(0, 1)),
        ({"TF_CONFIG": "  "}, Worker(0, 1)),
        (_tf_config(TWO, "worker", 0), Worker(0, 2)),
        (_tf_config(TWO, "worker", 1), Worker(1, 2)),
        (_tf_config(CHIEF_AND_TWO, "chief", 0), Worker(0, 3)),
        (_tf_config(CHIEF_AND_TWO, "worker", 0), Worker(1, 3)),
        (_tf_config({"worker": ["10.0.0.4:2222"]}, "worker", 0), Worker(0, 1)),  # one node
    ],
)
def test_worker_from_env_places_the_task_among_the_workers(environ, expected):
    worker = worker_from_env(environ)
    assert worker == expected
    assert worker.is_chief == (expected.index == 0)
    assert worker.distributed == (expected.count > 1)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"TF_CONFIG": "{cluster"}, "not a TensorFlow cluster spec"),
        ({"TF_CONFIG": json.dumps({"cluster": TWO})}, "not a TensorFlow cluster spec"),
        (_tf_config({**TWO, "ps": ["10.0.0.9:2222"]}, "worker", 0), "'chief' and 'worker'"),
        (_tf_config(TWO, "evaluator", 0), "'chief' and 'worker'"),
        (_tf_config(TWO, "worker", 2), "names task worker 2"),
        (_tf_config({"chief": ["a:1", "b:1"]}, "chief", 0), "at most one chief"),
    ],
)
def test_worker_from_env_rejects_what_multi_worker_training_cannot_run(environ, message):
    with pytest.raises(ValueError, match=message):
        worker_from_env(environ)


def test_local_cluster_gives_each_worker_its_task_on_distinct_loopback_ports():
    configs = local_cluster(3)
    specs = [json.loads(c) for c in configs]
    addresses = specs[0]["cluster"]["worker"]
    assert all(spec["cluster"] == specs[0]["cluster"] for spec in specs)
    assert len(set(addresses)) == 3 and all(a.startswith("127.0.0.1:") for a in addresses)
    assert [worker_from_env({"TF_CONFIG": c}) for c in configs] == [Worker(i, 3) for i in range(3)]
    with pytest.raises(ValueError, match="2 or more workers"):
        local_cluster(1)


def test_run_local_workers_gives_each_process_its_tf_config(tmp_path):
    script = "import os, sys; open(sys.argv[1], 'w').write(os.environ.get('TF_CONFIG', 'none'))"
    out = str(tmp_path / "tf_config{worker}.txt")
    runs = run_local_workers([sys.executable, "-c", script, out], 2, logs=tmp_path / "logs")
    assert [(r.index, r.returncode) for r in runs] == [(0, 0), (1, 0)]
    assert all(r.peak_rss_mib > 1 and r.log.is_file() for r in runs)
    seen = [
        worker_from_env({"TF_CONFIG": (tmp_path / f"tf_config{i}.txt").read_text()}) for i in (0, 1)
    ]
    assert seen == [Worker(0, 2), Worker(1, 2)]

    (alone,) = run_local_workers(
        [sys.executable, "-c", script, out], 1, logs=tmp_path / "logs", env={"TF_CONFIG": "x"}
    )
    assert alone.returncode == 0 and (tmp_path / "tf_config0.txt").read_text() == "none"


def test_run_local_workers_stops_the_others_when_a_worker_fails(tmp_path):
    # a worker that died leaves the others waiting in a collective operation forever
    script = (
        "import json, os, sys, time\n"
        "index = json.loads(os.environ['TF_CONFIG'])['task']['index']\n"
        "sys.exit(3) if index == 0 else time.sleep(300)\n"
    )
    start = time.perf_counter()
    runs = run_local_workers([sys.executable, "-c", script], 2, logs=tmp_path, timeout_s=120)
    assert [r.returncode for r in runs] == [3, -signal.SIGTERM]
    assert time.perf_counter() - start < 60


def test_use_scratch_project_leaves_the_chief_in_the_project(project, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "azureml://job")
    assert use_scratch_project(Worker(0, 2)) == paths.project_root() == project
    assert paths.project_root() == project


def test_use_scratch_project_gives_other_workers_a_private_local_project(project, monkeypatch):
    azure = json.loads((project / "config" / "azure_config.json").read_text())
    workspace = {"subscription_id": "s", "resource_group": "g", "workspace_name": "w"}
    (project / "config" / "azure_config.json").write_text(json.dumps(azure | workspace))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "azureml://job")
    monkeypatch.setenv("MLFLOW_RUN_ID", "job-run")

    scratch = use_scratch_project(Worker(1, 2))

    assert scratch != project and paths.project_root() == scratch
    assert not scratch.is_relative_to(project)
    copied = config.AzureConfig.load()
    assert not copied.workspace_configured  # tracking stays local, in the scratch project
    assert copied.model_dump() == config.AzureConfig.model_validate(azure).model_dump()
    assert config.ModelConfig.load() == config.ModelConfig.load(project / "config")
    assert "MLFLOW_TRACKING_URI" not in os.environ and "MLFLOW_RUN_ID" not in os.environ
