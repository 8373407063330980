"""Run the notebooks in order with papermill: the headless pipeline behind ``amlkit run``.

Each run gets an id and a folder ``runs/<run-id>/`` (ignored by git) that receives every
executed notebook and a ``run.json`` summary. A parameter given with ``-p`` goes to every
notebook that declares it; a name no selected notebook declares, or a kernel that is not
installed, is refused before anything runs. Each notebook runs in the Jupyter kernel it
declares: ``amlkit``, the project's environment, registered by ``python3 dev.py setup``. On
failure the run stops, names the notebook and the failing cell, and keeps the executed
notebook for inspection.

:func:`run_notebooks` is the same run called from Python: notebook 07 retrains by re-running
the preprocessing and training notebooks on a new data version, and keeps the executed copies
as the record. :func:`refresh_notebooks` (``amlkit notebooks execute``) re-executes notebooks
in a fresh project and writes them back, to refresh their committed outputs.

The run's output shows progress and real errors, not the kernels' own chatter: what a kernel
writes to its stderr goes to ``<notebook>.kernel.log`` beside the executed notebook (see
:mod:`amlkit.pipeline.kernels`), and a kernel that fails to start or dies is reported with the
end of that log.
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
from amlkit.pipeline import PipelineError, kernels
from amlkit.pipeline.stages import NOTEBOOK_RE, discover, select

logger = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What a pipeline run did."""

    run_id: str
    folder: Path
    notebooks: list[dict[str, Any]] = field(default_factory=list)
    status: str = "running"


def declared_parameters(notebook: Path) -> dict[str, Any]:
    """Return the parameters a notebook declares (papermill's inspection of its cell)."""
    return pm.inspect_notebook(str(notebook))


def new_run_id() -> str:
    """Return a sortable, unique run id: UTC time plus a random suffix."""
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def plan(
    notebooks: list[Path], overrides: dict[str, Any], defaults: dict[str, Any]
) -> list[tuple[Path, dict[str, Any]]]:
    """Return each notebook with the parameters it will get; refuse unknown names."""
    declared = {nb: declared_parameters(nb) for nb in notebooks}
    known = set().union(*(set(d) for d in declared.values())) if declared else set()
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(
            f"parameter(s) {', '.join(unknown)} are declared by none of the selected notebooks; "
            f"known parameters: {', '.join(sorted(known))}"
        )
    steps = []
    for nb in notebooks:
        merged = {**defaults, **overrides}
        steps.append((nb, {k: v for k, v in merged.items() if k in declared[nb]}))
    return steps


def execute(
    notebook: Path,
    output: Path,
    parameters: dict[str, Any] | None = None,
    *,
    kernel_name: str | None = None,
    progress: bool = True,
    timeout_s: int | None = 1800,
) -> None:
    """Execute one notebook with papermill into ``output``, from the notebook's folder.

    Args:
        notebook: the notebook to run.
        output: where the executed copy goes (written after every cell).
        parameters: values for its ``parameters`` cell; none keeps the defaults.
        kernel_name: the Jupyter kernel; None runs the kernel the notebook declares.
        progress: show papermill's cell progress bar.
        timeout_s: per-cell timeout.

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
            kernel_name=kernel_name,
            cwd=str(notebook.parent),
            progress_bar=progress,
            request_save_on_cell_execute=True,
            execution_timeout=timeout_s,
            kernel_manager_class=kernels.LoggedKernelManager,
            config=kernels.launch_config(log),
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
    kernel_name: str | None = None,
    progress: bool = True,
    timeout_s: int | None = 1800,
) -> RunResult:
    """Execute the selected notebooks in order into ``runs/<run-id>/`` (or ``output_dir``).

    Args:
        stages: which notebooks (numbers, names or ranges); all when None.
        parameters: ``-p`` overrides; each goes to the notebooks that declare it.
        run_id: the run's id; a new one when None.
        output_dir: the folder for the executed notebooks and ``run.json`` (new or empty);
            ``runs/<run-id>/`` when None.
        kernel_name: the Jupyter kernel for every notebook; None runs the one each declares.
        progress: show progress bars.
        timeout_s: per-cell timeout.

    Returns:
        RunResult with one entry per executed notebook.

    Raises:
        ValueError: a stage, a parameter or a kernel is unknown, or the folder holds files.
        PipelineError: a notebook failed (the executed copy is kept).
    """
    load_all()  # fail on a broken configuration before any notebook starts
    data_config = DataConfig.load()
    notebooks = select(stages, discover())
    if not notebooks:
        raise ValueError(f"no notebooks found in {paths.notebooks_dir()}")
    defaults = {"dataset": data_config.default_dataset}
    steps = plan(notebooks, parameters or {}, defaults)
    kernels.check_installed(notebooks, kernel_name)
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
            execute(
                notebook,
                output,
                params,
                kernel_name=kernel_name,
                progress=progress,
                timeout_s=timeout_s,
            )
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
    kernel_name: str | None = None,
    progress: bool = False,
    timeout_s: int | None = 1800,
) -> list[Path]:
    """Run stage notebooks from Python, for example from another notebook, and keep them.

    Notebook 07 retrains this way: it re-runs the preprocessing and training notebooks on the
    new data version, so training is defined once (in 04) and the executed notebooks are the
    record of what was done::

        executed = runner.run_notebooks(
            ["03", "04"], {"dataset": dataset, "data_version": new_version}, retrain_dir
        )

    It is :func:`run_pipeline` (same selection, parameter checks, kernels and ``run.json``)
    with a folder of the caller's choosing and, by default, no progress bars in the calling
    notebook's output. The notebooks come from :func:`amlkit.paths.notebooks_dir`: the
    repository's ``notebooks/`` when the project root has none.

    Args:
        stages: which notebooks, as for ``amlkit run --stages`` (``["03", "04"]``).
        parameters: papermill parameters; each goes to the notebooks that declare it. Pass
            ``dataset`` unless it is data_config.json's ``default_dataset``.
        output_dir: the folder for the executed notebooks and ``run.json`` (created; new or
            empty); ``runs/<new run id>/`` when None.
        kernel_name: the Jupyter kernel; None runs the one each notebook declares.
        progress: show progress bars.
        timeout_s: per-cell timeout.

    Returns:
        The executed notebooks, in run order.

    Raises:
        ValueError: a stage, a parameter or a kernel is unknown, or the folder holds files.
        PipelineError: a notebook failed (the executed copy is kept in ``output_dir``).
    """
    result = run_pipeline(
        stages,
        parameters,
        output_dir=output_dir,
        kernel_name=kernel_name,
        progress=progress,
        timeout_s=timeout_s,
    )
    return [Path(entry["output"]) for entry in result.notebooks]


def _failure(cause: BaseException | None) -> dict[str, Any]:
    if isinstance(cause, pm.PapermillExecutionError):
        return {"cell_index": cause.cell_index, "error": f"{cause.ename}: {cause.evalue}"}
    return {"error": f"{type(cause).__name__}: {str(cause).strip()}"}


def _summary(result: RunResult) -> dict[str, Any]:
    return {"run_id": result.run_id, "status": result.status, "notebooks": result.notebooks}


def fresh_root(dest: Path) -> Path:
    """Create a project root at ``dest`` holding only a copy of the configuration."""
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(paths.config_dir(), dest / "config")
    return dest


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


def refresh_notebooks(notebooks: list[Path], *, kernel_name: str | None = None) -> list[Path]:
    """Re-execute notebooks with their defaults, from a fresh project state, and write them back.

    The committed outputs must be those of a default run on a clean clone (that is what nbval
    compares against), so the run happens in a temporary project root: every stage notebook
    up to the last one asked for is executed in order there, and only the notebooks asked
    for are written back, cleaned of execution noise. A notebook is written back only when
    every run succeeded; on failure the temporary folder, with the failed copy, is kept.

    Args:
        notebooks: the notebooks to refresh.
        kernel_name: the Jupyter kernel; None runs the one each notebook declares.

    Returns:
        The refreshed notebooks.

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
    kernels.check_installed(order, kernel_name)
    work = Path(tempfile.mkdtemp(prefix="amlkit-refresh-"))
    with _project_root(fresh_root(work / "project")):
        for nb in order:
            logger.info("executing %s -> %s", nb.name, work / nb.name)
            execute(nb, work / nb.name, kernel_name=kernel_name)
    refreshed = [nb for nb in order if nb in wanted]
    for nb in refreshed:
        clean_notebook(work / nb.name)
        shutil.copyfile(work / nb.name, nb)
    shutil.rmtree(work)
    return refreshed
