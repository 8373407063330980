"""Who this training process is among several workers, and running workers on this machine.

Azure ML's ``distribution: tensorflow`` starts the same command (notebook 05 run by papermill)
once per worker and gives each process a ``TF_CONFIG`` environment variable::

    {"cluster": {"worker": ["host0:port", "host1:port"]}, "task": {"type": "worker", "index": 1}}

:func:`worker_from_env` reads it into a :class:`Worker`. The chief is TensorFlow's: the task
``chief`` when the cluster has one, else worker 0. Every worker trains; only the chief writes
what the run produces (tracking, registry, champion). :func:`use_scratch_project` points the
other workers at a scratch project of their own, so that they can run the same notebook cells
and write nothing shared (the pattern TensorFlow documents for saving under multi-worker
training: other workers save to temporary folders).

:func:`local_cluster` and :func:`run_local_workers` are the local twin of Azure ML's launcher:
one process per worker on loopback ports, as the tests and ``benchmarks/distributed_training.py``
run notebook 05. This module does not import TensorFlow (:mod:`amlkit.deep.distribute` holds the
strategy).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from amlkit import paths
from amlkit.config import WORKSPACE_KEYS, AzureConfig
from amlkit.io import write_json_atomic

logger = logging.getLogger(__name__)

TF_CONFIG = "TF_CONFIG"
TRAINING_TASKS = ("chief", "worker")
# What routes MLflow inside an Azure ML job; a worker that is not the chief drops them.
MLFLOW_JOB_VARIABLES = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "MLFLOW_RUN_ID",
    "MLFLOW_EXPERIMENT_ID",
    "MLFLOW_EXPERIMENT_NAME",
)


@dataclass(frozen=True)
class Worker:
    """This process's place among the training workers.

    Attributes:
        index: its position, 0 to ``count - 1``; 0 is the chief.
        count: how many workers train together (1: this process alone).
    """

    index: int = 0
    count: int = 1

    @property
    def is_chief(self) -> bool:
        """True for the worker that writes the run's results (index 0)."""
        return self.index == 0

    @property
    def distributed(self) -> bool:
        """True when more than one worker trains."""
        return self.count > 1


def worker_from_env(environ: Mapping[str, str] | None = None) -> Worker:
    """Read this process's :class:`Worker` from ``TF_CONFIG``.

    Args:
        environ: the environment to read; ``os.environ`` by default.

    Returns:
        ``Worker()`` (alone, the chief) when ``TF_CONFIG`` is unset or blank; else the task's
        position among the ``chief`` and ``worker`` tasks, the chief first.

    Raises:
        ValueError: ``TF_CONFIG`` is not JSON, lacks ``cluster`` or ``task``, names a task
            that is not in the cluster, or holds parameter servers or an evaluator (notebook
            05 trains with MultiWorkerMirroredStrategy: chief and workers only).
    """
    text = (os.environ if environ is None else environ).get(TF_CONFIG, "").strip()
    if not text:
        return Worker()
    try:
        spec = json.loads(text)
        cluster, task = spec["cluster"], spec["task"]
        kind, index = task["type"], int(task["index"])
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(
            f"{TF_CONFIG} is not a TensorFlow cluster spec ({exc!r}); expected "
            '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}'
        ) from None
    others = sorted(set(cluster) - set(TRAINING_TASKS))
    if others or kind not in TRAINING_TASKS:
        raise ValueError(
            f"{TF_CONFIG} has task types {sorted({*cluster, kind})}; notebook 05 trains with "
            "MultiWorkerMirroredStrategy, which takes 'chief' and 'worker' tasks only. Use "
            "Azure ML's distribution: tensorflow without parameter servers or evaluator."
        )
    chiefs, workers = list(cluster.get("chief", [])), list(cluster.get("worker", []))
    tasks = len(chiefs) if kind == "chief" else len(workers)
    if len(chiefs) > 1 or not 0 <= index < tasks:
        raise ValueError(
            f"{TF_CONFIG} names task {kind} {index}, but the cluster has {len(chiefs)} chief "
            f"and {len(workers)} worker address(es); expected at most one chief and an index "
            "below the count of its type."
        )
    position = index if kind == "chief" else len(chiefs) + index
    return Worker(index=position, count=len(chiefs) + len(workers))


def use_scratch_project(worker: Worker) -> Path:
    """Send a worker's writes to a scratch project unless it is the chief; return the root.

    For the chief nothing changes. Any other worker gets a temporary project root (removed
    when the process exits) holding a copy of ``config/`` with the Azure workspace left blank;
    ``AMLKIT_ROOT`` points at it and the MLflow variables of an Azure ML job are dropped, so its
    tracking, registry and champion files stay local and private. Call it before tracking is
    configured.

    Args:
        worker: this process (:func:`worker_from_env`).

    Returns:
        The project root this process now writes to.
    """
    if worker.is_chief:
        return paths.project_root()
    config = paths.config_dir()
    scratch = Path(tempfile.mkdtemp(prefix=f"amlkit-worker{worker.index}-"))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    shutil.copytree(config, scratch / "config", ignore=shutil.ignore_patterns("schemas"))
    local = AzureConfig.load(config).model_dump() | dict.fromkeys(WORKSPACE_KEYS, "")
    write_json_atomic(scratch / "config" / f"{AzureConfig.file_name}.json", local)
    for name in MLFLOW_JOB_VARIABLES:
        os.environ.pop(name, None)
    os.environ[paths.ROOT_ENV] = str(scratch)
    logger.info(
        "worker %d of %d writes to the scratch project %s", worker.index, worker.count, scratch
    )
    return scratch


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Return ``count`` distinct TCP ports that were free on ``host`` a moment ago."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def local_cluster(workers: int, host: str = "127.0.0.1") -> list[str]:
    """Return one ``TF_CONFIG`` value per worker of a cluster on this machine.

    Args:
        workers: how many workers (2 or more; one process needs no ``TF_CONFIG``).
        host: the loopback address the workers listen on.

    Returns:
        JSON strings: the same ``cluster`` (free ports on ``host``), each with its own task.

    Raises:
        ValueError: fewer than 2 workers.
    """
    if workers < 2:
        raise ValueError(
            f"a cluster needs 2 or more workers, got {workers}; run one process alone."
        )
    addresses = [f"{host}:{port}" for port in free_ports(workers, host)]
    return [
        json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": i}})
        for i in range(workers)
    ]


@dataclass
class WorkerRun:
    """How one local worker process ended.

    Attributes:
        index: the worker's index (0 is the chief).
        returncode: its exit status (negative: stopped by that signal).
        wall_s: seconds from the start of all workers to its end.
        peak_rss_mib: the largest resident memory of the process or of any process it waited
            for (the notebook's kernel under papermill), in MiB.
        log: the file holding its stdout and stderr.
    """

    index: int
    returncode: int
    wall_s: float
    peak_rss_mib: float
    log: Path


def run_local_workers(
    command: Sequence[str],
    workers: int,
    *,
    logs: Path,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    timeout_s: float = 1800,
) -> list[WorkerRun]:
    """Run ``command`` once per worker on this machine, as Azure ML runs a distributed job.

    With two or more workers each process gets its ``TF_CONFIG`` (:func:`local_cluster`); one
    worker runs alone, without it. When a worker fails the others are stopped: they would
    otherwise wait for it at the next collective operation, without a time limit.

    Args:
        command: the program and its arguments, the same for every worker except that
            ``{worker}`` in an argument becomes the worker's index (to name its outputs).
        workers: how many processes.
        logs: a folder for ``worker<i>.log``, each process's stdout and stderr.
        env: the environment (``os.environ`` by default); ``TF_CONFIG`` is set or removed.
        cwd: the working folder.
        timeout_s: stop every worker still running after this many seconds.

    Returns:
        One :class:`WorkerRun` per worker, by index.
    """
    base = {k: v for k, v in (os.environ if env is None else env).items() if k != TF_CONFIG}
    configs = local_cluster(workers) if workers > 1 else [None]
    logs.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    running: dict[int, tuple[int, subprocess.Popen]] = {}
    for index, tf_config in enumerate(configs):
        log = logs / f"worker{index}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [arg.replace("{worker}", str(index)) for arg in command],
                env=base | ({TF_CONFIG: tf_config} if tf_config else {}),
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # so a stop reaches the kernel papermill started
            )
        running[proc.pid] = (index, proc)
    done: dict[int, WorkerRun] = {}
    while running:
        for pid, (index, proc) in list(running.items()):
            ended, status, usage = os.wait4(pid, os.WNOHANG)
            if not ended:
                continue
            del running[pid]
            proc.returncode = os.waitstatus_to_exitcode(status)
            done[index] = WorkerRun(
                index=index,
                returncode=proc.returncode,
                wall_s=time.perf_counter() - start,
                peak_rss_mib=usage.ru_maxrss / 1024,  # KiB on Linux
                log=logs / f"worker{index}.log",
            )
            if proc.returncode and running:
                logger.warning(
                    "worker %d exited with %d; stopping the others", index, proc.returncode
                )
                _stop([proc for _, proc in running.values()])
        if running and time.perf_counter() - start > timeout_s:
            logger.warning("local workers ran past %ss; stopping them", timeout_s)
            _stop([proc for _, proc in running.values()])
            timeout_s = float("inf")  # stopped once; now wait for them to end
        time.sleep(0.05)
    return [done[i] for i in sorted(done)]


def _stop(procs: list[subprocess.Popen]) -> None:
    """Send SIGTERM to each process's group (the process and what it started).

    A Jupyter kernel runs in a session of its own, but it exits when its parent (papermill)
    is gone (ipykernel's parent poller), even while it waits in a collective operation.
    """
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
            os.killpg(proc.pid, signal.SIGTERM)
