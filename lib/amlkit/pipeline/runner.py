"""Run the notebooks in order with papermill: the headless pipeline behind ``amlkit run``.

Each run gets an id and a folder ``runs/<run-id>/`` (ignored by git) that receives every
executed notebook and a ``run.json`` summary. A parameter given with ``-p`` goes to every
notebook that declares it; a name no selected notebook declares is refused before anything
runs. On failure the run stops, names the notebook and the failing cell, and keeps the executed
notebook for inspection.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import papermill as pm
from tqdm import tqdm

from amlkit import paths
from amlkit.config import DataConfig, load_all
from amlkit.io import write_json_atomic
from amlkit.pipeline import PipelineError
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


def run_pipeline(
    stages: list[str] | None = None,
    parameters: dict[str, Any] | None = None,
    *,
    run_id: str | None = None,
    kernel_name: str = "python3",
    progress: bool = True,
    timeout_s: int | None = 1800,
) -> RunResult:
    """Execute the selected notebooks in order into ``runs/<run-id>/``.

    Args:
        stages: which notebooks (numbers, names or ranges); all when None.
        parameters: ``-p`` overrides; each goes to the notebooks that declare it.
        run_id: the run's id; a new one when None.
        kernel_name: the Jupyter kernel (the project's environment provides ``python3``).
        progress: show progress bars.
        timeout_s: per-cell timeout.

    Returns:
        RunResult with one entry per executed notebook.

    Raises:
        PipelineError: a notebook failed (the executed copy is kept).
    """
    load_all()  # fail on a broken configuration before any notebook starts
    data_config = DataConfig.load()
    notebooks = select(stages, discover())
    if not notebooks:
        raise ValueError(f"no notebooks found in {paths.notebooks_dir()}")
    defaults = {"dataset": data_config.default_dataset}
    steps = plan(notebooks, parameters or {}, defaults)
    run_id = run_id or new_run_id()
    folder = paths.runs_dir() / run_id
    folder.mkdir(parents=True, exist_ok=False)
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
            pm.execute_notebook(
                str(notebook),
                str(output),
                parameters=params,
                kernel_name=kernel_name,
                cwd=str(notebook.parent),
                progress_bar=progress,
                request_save_on_cell_execute=True,
                execution_timeout=timeout_s,
            )
        except pm.PapermillExecutionError as exc:
            entry |= {"status": "failed", "seconds": round(time.perf_counter() - started, 1)}
            entry |= {"cell_index": exc.cell_index, "error": f"{exc.ename}: {exc.evalue}"}
            result.notebooks.append(entry)
            result.status = "failed"
            write_json_atomic(summary, _summary(result))
            bar.close()
            raise PipelineError(
                f"{notebook.name} failed in cell {exc.cell_index} (execution count "
                f"{exc.exec_count}): {exc.ename}: {exc.evalue}\n"
                f"The executed notebook is kept for inspection: {output}"
            ) from exc
        entry |= {"status": "ok", "seconds": round(time.perf_counter() - started, 1)}
        result.notebooks.append(entry)
        write_json_atomic(summary, _summary(result))
    result.status = "ok"
    write_json_atomic(summary, _summary(result))
    return result


def _summary(result: RunResult) -> dict[str, Any]:
    return {"run_id": result.run_id, "status": result.status, "notebooks": result.notebooks}


def fresh_root(dest: Path) -> Path:
    """Create a project root at ``dest`` holding only a copy of the configuration."""
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(paths.config_dir(), dest / "config")
    return dest


def refresh_notebooks(notebooks: list[Path], *, kernel_name: str = "python3") -> list[Path]:
    """Re-execute notebooks in place with their defaults, from a fresh project state.

    The committed outputs must be those of a default run on a clean clone (that is what nbval
    compares against), so the run happens in a temporary project root: every stage notebook
    up to the last one asked for is executed in order there, and only the notebooks asked
    for are written back, cleaned of execution noise.

    Args:
        notebooks: the notebooks to refresh.
        kernel_name: the Jupyter kernel.

    Returns:
        The refreshed notebooks.
    """
    from amlkit.pipeline import notebooks

    stages = discover(notebooks[0].parent) if notebooks else []
    wanted = {nb.resolve() for nb in notebooks}
    last = max((int(nb.name[:2]) for nb in wanted if NOTEBOOK_RE.match(nb.name)), default=99)
    order = [nb for nb in stages if int(nb.name[:2]) <= last] or sorted(wanted)
    order += sorted(wanted - set(order))
    previous = os.environ.get(paths.ROOT_ENV)
    with tempfile.TemporaryDirectory(prefix="amlkit-refresh-") as tmp:
        os.environ[paths.ROOT_ENV] = str(fresh_root(Path(tmp) / "project"))
        try:
            for nb in order:
                output = nb if nb in wanted else Path(tmp) / nb.name
                logger.info("executing %s -> %s", nb.name, output)
                pm.execute_notebook(
                    str(nb),
                    str(output),
                    kernel_name=kernel_name,
                    cwd=str(nb.parent),
                    progress_bar=True,
                )
                if nb in wanted:
                    notebooks.clean_notebook(nb)
        finally:
            if previous is None:
                os.environ.pop(paths.ROOT_ENV, None)
            else:
                os.environ[paths.ROOT_ENV] = previous
    return [nb for nb in order if nb in wanted]
