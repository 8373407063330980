"""Run the notebooks in order with papermill: the headless pipeline behind ``amlkit run``.

Each run writes its executed notebooks and a ``run.json`` summary to ``runs/<run-id>/``.
Unknown parameters and missing kernels are refused before anything runs; a failure stops the
run and keeps the executed copy. A kernel's own stderr goes to ``<notebook>.kernel.log``.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import papermill as pm
from nbclient.exceptions import CellTimeoutError
from tqdm import tqdm

from amlkit import paths
from amlkit.config import DataConfig, load_all
from amlkit.io import write_json_atomic
from amlkit.names import check_name
from amlkit.pipeline import PipelineError, kernels
from amlkit.pipeline.stages import NOTEBOOK_RE, discover, select

logger = logging.getLogger(__name__)

CELL_TIMEOUT_S = 1800
NAME_PARAMETERS = {  # notebook parameters that become folder names, and what they name
    "dataset": "data set",
    "model_name": "model",
    "image_model_name": "model",
    "service": "service",
}


@dataclass
class RunResult:
    """What a pipeline run did."""

    run_id: str
    folder: Path
    notebooks: list[dict[str, Any]] = field(default_factory=list)
    status: str = "running"


def new_run_id() -> str:
    """Return a sortable, unique run id: UTC time plus a random suffix."""
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def plan(
    notebooks: list[Path], overrides: dict[str, Any], defaults: dict[str, Any]
) -> list[tuple[Path, dict[str, Any]]]:
    """Return each notebook with the parameters it will get; refuse unknown names.

    A parameter that becomes a folder name (:data:`NAME_PARAMETERS`) must be a plain name
    (:func:`amlkit.names.check_name`), so a bad one fails here, before any notebook starts.
    """
    declared = {nb: pm.inspect_notebook(str(nb)) for nb in notebooks}
    known = set().union(*(set(d) for d in declared.values())) if declared else set()
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(
            f"parameter(s) {', '.join(unknown)} are declared by none of the selected notebooks; "
            f"known parameters: {', '.join(sorted(known))}"
        )
    merged = {**defaults, **overrides}
    for key, kind in NAME_PARAMETERS.items():
        if merged.get(key) is not None:
            check_name(kind, merged[key])
    return [(nb, {k: v for k, v in merged.items() if k in declared[nb]}) for nb in notebooks]


def execute(
    notebook: Path, output: Path, parameters: dict[str, Any] | None = None, *, progress: bool = True
) -> None:
    """Execute one notebook with papermill, from its folder, into ``output`` (saved per cell).

    Raises:
        PipelineError: a cell failed or timed out, or the kernel failed to start or died (the
            message quotes the end of the kernel's log; the executed copy is kept).
    """
    log = output.with_suffix(".kernel.log")
    try:
        pm.execute_notebook(
            str(notebook),
            str(output),
            parameters=parameters,
            cwd=str(notebook.parent),
            progress_bar=progress,
            request_save_on_cell_execute=True,
            execution_timeout=CELL_TIMEOUT_S,
            kernel_manager_class=kernels.LoggedKernelManager,
            config=kernels.launch_config(log, output.with_suffix(".kernel.json")),
        )
    except pm.PapermillExecutionError as exc:
        raise PipelineError(
            f"{notebook.name} failed in cell {exc.cell_index} (execution count "
            f"{exc.exec_count}): {exc.ename}: {exc.evalue}\n"
            f"The executed notebook is kept for inspection: {output}"
        ) from exc
    except (CellTimeoutError, RuntimeError) as exc:  # RuntimeError: the kernel died or failed
        tail = "".join(f"\n  {line}" for line in kernels.log_tail(log))
        kept = (
            f"\nThe executed notebook is kept for inspection: {output}" if output.is_file() else ""
        )
        raise PipelineError(
            f"{notebook.name} stopped: {str(exc).strip()}\n"
            f"The kernel's log ({log}) ends with:{tail or ' (nothing)'}{kept}"
        ) from exc
    if log.is_file() and not log.stat().st_size:
        log.unlink()


def run_pipeline(
    stages: list[str] | None = None,
    parameters: dict[str, Any] | None = None,
    *,
    run_id: str | None = None,
    output_dir: str | Path | None = None,
    progress: bool = True,
) -> RunResult:
    """Execute the selected notebooks (all when None) in order into a new or empty folder.

    Each of ``parameters`` goes to the notebooks that declare it.

    Raises:
        ValueError: a stage, a parameter or a kernel is unknown, or the folder holds files.
        PipelineError: a notebook failed (the executed copy is kept).
    """
    if run_id is not None:
        check_name("run id", run_id)  # it names the run's folder under runs/
    load_all()  # fail on a broken configuration before any notebook starts
    data_config = DataConfig.load()
    notebooks = select(stages, discover())
    if not notebooks:
        raise ValueError(f"no notebooks found in {paths.notebooks_dir()}")
    defaults = {"dataset": data_config.default_dataset}
    steps = plan(notebooks, parameters or {}, defaults)
    kernels.check_installed(notebooks)
    run_id = run_id or new_run_id()
    folder = Path(output_dir) if output_dir is not None else paths.runs_dir() / run_id
    if folder.is_dir() and any(folder.iterdir()):
        raise ValueError(
            f"{folder} already holds files; choose another run id or output folder "
            "(each run keeps its own record)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    result = RunResult(run_id, folder)
    os.environ[paths.ROOT_ENV] = str(paths.project_root())
    summary = folder / "run.json"
    bar = tqdm(steps, desc=f"run {run_id}", unit="notebook", disable=not progress)
    for notebook, params in bar:
        bar.set_postfix_str(notebook.stem)
        output = folder / notebook.name
        started = time.perf_counter()
        entry = {"notebook": notebook.name, "parameters": params, "output": str(output)}
        try:
            execute(notebook, output, params, progress=progress)
        except PipelineError as exc:
            entry |= {"status": "failed", "seconds": round(time.perf_counter() - started, 1)}
            entry |= _failure(exc.__cause__)
            result.notebooks.append(entry)
            result.status = "failed"
            write_json_atomic(summary, _summary(result))
            bar.close()
            raise
        entry |= {"status": "ok", "seconds": round(time.perf_counter() - started, 1)}
        result.notebooks.append(entry)
        write_json_atomic(summary, _summary(result))
    result.status = "ok"
    write_json_atomic(summary, _summary(result))
    return result


def run_notebooks(
    stages: list[str],
    parameters: dict[str, Any] | None = None,
    output_dir: str | Path | None = None,
    *,
    progress: bool = False,
) -> list[Path]:
    """Run stage notebooks from Python (07 re-runs 03 and 04); return the executed copies.

    :func:`run_pipeline` into a folder of the caller's choosing, without progress bars.

    Raises:
        ValueError: a stage, a parameter or a kernel is unknown, or the folder holds files.
        PipelineError: a notebook failed (the executed copy is kept in ``output_dir``).
    """
    result = run_pipeline(stages, parameters, output_dir=output_dir, progress=progress)
    return [Path(entry["output"]) for entry in result.notebooks]


def _failure(cause: BaseException | None) -> dict[str, Any]:
    if isinstance(cause, pm.PapermillExecutionError):
        return {"cell_index": cause.cell_index, "error": f"{cause.ename}: {cause.evalue}"}
    return {"error": f"{type(cause).__name__}: {str(cause).strip()}"}


def _summary(result: RunResult) -> dict[str, Any]:
    return {"run_id": result.run_id, "status": result.status, "notebooks": result.notebooks}


@contextmanager
def _project_root(root: Path) -> Iterator[Path]:
    """Point ``AMLKIT_ROOT`` (this process and the kernels it starts) at ``root`` for a while."""
    previous = os.environ.get(paths.ROOT_ENV)
    os.environ[paths.ROOT_ENV] = str(root)
    try:
        yield root
    finally:
        if previous is None:
            os.environ.pop(paths.ROOT_ENV, None)
        else:
            os.environ[paths.ROOT_ENV] = previous


def refresh_notebooks(notebooks: list[Path]) -> list[Path]:
    """Re-execute notebooks with their defaults in a fresh project and write them back, cleaned.

    Committed outputs are a clean clone's (nbval compares against them): every stage up to the
    last one asked for runs in a temporary project holding only the configuration, and nothing
    is written back unless every run succeeded (the temporary folder is then kept).

    Raises:
        ValueError: a notebook's kernel is not installed.
        PipelineError: a notebook failed (its executed copy is kept; the original is untouched).
    """
    from amlkit.pipeline.notebooks import clean_notebook

    stages = discover(notebooks[0].parent) if notebooks else []
    wanted = {nb.resolve() for nb in notebooks}
    last = max((int(nb.name[:2]) for nb in wanted if NOTEBOOK_RE.match(nb.name)), default=99)
    order = [nb for nb in stages if int(nb.name[:2]) <= last] or sorted(wanted)
    order += sorted(wanted - set(order))
    kernels.check_installed(order)
    work = Path(tempfile.mkdtemp(prefix="amlkit-refresh-"))
    shutil.copytree(paths.config_dir(), work / "project" / "config")
    with _project_root(work / "project"):
        for nb in order:
            logger.info("executing %s -> %s", nb.name, work / nb.name)
            execute(nb, work / nb.name)
    refreshed = [nb for nb in order if nb in wanted]
    for nb in refreshed:
        clean_notebook(work / nb.name)
        shutil.copyfile(work / nb.name, nb)
    shutil.rmtree(work)
    return refreshed
