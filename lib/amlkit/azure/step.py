"""Run one stage of the project as an Azure ML job step: ``python -m amlkit.azure.step``.

A job's inputs and outputs are folders that Azure ML mounts wherever it likes; the notebooks
read and write the project's layout (``data/raw``, ``data/processed``,
``models/trained_models`` ...). This entry point joins the two: it makes a project root in a
temporary folder (the code snapshot's ``config/`` copied), links each input folder into it
(``--in data/raw=${{inputs.raw_data}}``), runs the stage, then copies what the stage wrote
there to each output folder (``--out data/processed=${{outputs.processed_data}}``). The stage
is a notebook, run with papermill in the project's kernel (registered in the job's
environment when missing), its executed copy saved to ``--executed``; or an ``amlkit``
command (``... amlkit package <model> --service <name>``).

A sweep trial adds ``--candidate NAME`` and ``--hyperparameter NAME=VALUE`` (the sampled
values, named ``<candidate>__<parameter>``): the trial's ``model_config.json`` then holds that
candidate alone, its search space pinned to the sampled values, so notebook 04 fits exactly
that setting and logs its validation metrics for the sweep's objective.

Azure ML runs the step's command line from the code snapshot with ``PYTHONPATH=lib``, and
``amlkit azure run-local`` runs the same command line on this machine.
"""

from __future__ import annotations

import argparse
import ast
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from amlkit import io, paths
from amlkit.azure.twin_platform import make_writable
from amlkit.names import check_name

logger = logging.getLogger(__name__)


def _mapping(text: str) -> tuple[str, Path]:
    rel, sep, where = text.partition("=")
    if not sep or not rel or not where:
        raise argparse.ArgumentTypeError(f"{text!r} is not REL=PATH (e.g. data/raw=/mnt/raw)")
    if Path(rel).is_absolute() or ".." in Path(rel).parts:
        raise argparse.ArgumentTypeError(f"{rel!r} must be a folder inside the project")
    return rel, Path(where)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the step runner."""
    parser = argparse.ArgumentParser(
        prog="python -m amlkit.azure.step",
        description="Run a stage notebook (papermill) or an amlkit command in a project root "
        "laid out from a job's input and output folders.",
    )
    parser.add_argument("--in", dest="inputs", action="append", type=_mapping, default=[])
    parser.add_argument("--out", dest="outputs", action="append", type=_mapping, default=[])
    parser.add_argument("--executed", type=Path, help="folder for the executed notebook")
    parser.add_argument("--candidate", help="sweep trial: the candidate to fit")
    parser.add_argument("--hyperparameter", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("target", help="a notebook (.ipynb), or 'amlkit' and its arguments")
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="-p NAME VALUE ... or CLI args")
    return parser


def _parameters(rest: list[str], declared: dict[str, Any]) -> dict[str, Any]:
    """Read ``-p NAME VALUE`` pairs, typed as the notebook's parameters cell declares them."""
    if len(rest) % 3 or any(flag != "-p" for flag in rest[::3]):
        raise ValueError(f"expected -p NAME VALUE pairs after the notebook, got {rest}")
    params = {}
    for name, value in zip(rest[1::3], rest[2::3], strict=True):
        if name not in declared:
            raise ValueError(f"the notebook declares no parameter {name!r}: {sorted(declared)}")
        kind = declared[name].get("inferred_type_name", "")
        params[name] = _typed(value, kind)
    return params


def _typed(value: str, kind: str) -> Any:
    if kind == "str":
        return value
    if kind == "bool":
        return value.lower() in ("true", "1", "yes")
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value
    return float(parsed) if kind == "float" and isinstance(parsed, int) else parsed


def trial_model_config(
    config: dict[str, Any], candidate: str, hyperparameters: dict[str, str]
) -> dict[str, Any]:
    """Return ``model_config.json`` narrowed to one candidate with its sampled values.

    Args:
        config: the project's model configuration (as JSON values).
        candidate: the sampled candidate.
        hyperparameters: ``{"<candidate>__<parameter>": value}`` as the sweep wrote them
            (strings); other candidates' entries are ignored.

    Raises:
        ValueError: the candidate is not configured.
    """
    if candidate not in config["candidates"]:
        raise ValueError(
            f"sweep trial candidate {candidate!r} is not in model_config.json's candidates "
            f"({', '.join(config['candidates'])}); plan the sweep again"
        )
    chosen = dict(config["candidates"][candidate])
    prefix = f"{candidate}__"
    values = {k.removeprefix(prefix): v for k, v in hyperparameters.items() if k.startswith(prefix)}
    spaces = {}
    for task, space in chosen.get("search_space", {}).items():
        spaces[task] = {
            name: {"choice": [_sampled(values[name], spec)]} if name in values else spec
            for name, spec in space.items()
        }
    chosen["search_space"] = spaces
    return {**config, "candidates": {candidate: chosen}, "search_iterations": 1}


def _sampled(value: str, spec: dict[str, list[Any]]) -> Any:
    """Type a sampled value as its distribution: randint ints, choices as listed."""
    kind, args = next(iter(spec.items()))
    if kind == "choice":
        for option in args:
            if str(option) == value or (option is None and value in ("None", "null")):
                return option
        raise ValueError(f"sampled value {value!r} is not one of the choices {args}")
    number = float(value)
    return round(number) if kind == "randint" else number


def placement(rel: str, where: Path) -> str:
    """Return where an input folder goes in the project root.

    A version folder (a data version with ``manifest.json``, a model version with
    ``model_metadata.json``, as a registered asset holds it) goes to
    ``<rel>/<dataset or name>/<version>``; a folder of versions (another step's output) is
    ``<rel>`` itself.
    """
    for marker, key in (("manifest.json", "dataset"), ("model_metadata.json", "name")):
        if (where / marker).is_file():
            record = io.read_json(where / marker)
            name = check_name("data set" if key == "dataset" else "model", record[key])
            return f"{rel}/{name}/{check_name('version', str(record['version']))}"
    return rel


def _layout(root: Path, code_dir: Path, inputs: list[tuple[str, Path]], written: set[str]) -> None:
    """Copy the configuration, then link each input in (copy those the stage writes to)."""
    shutil.copytree(code_dir / "config", root / "config")
    for rel, where in inputs:
        if not where.exists():
            raise FileNotFoundError(f"input folder {where} (for {rel}) does not exist")
        target = root / placement(rel, where)
        target.parent.mkdir(parents=True, exist_ok=True)
        if rel in written:  # inputs are read-only mounts on Azure ML: write to a copy
            shutil.copytree(where, target, copy_function=shutil.copyfile)
            make_writable(target)  # copytree keeps the mount's read-only folders
        else:
            target.symlink_to(where.resolve(), target_is_directory=True)


def _collect(root: Path, outputs: list[tuple[str, Path]]) -> None:
    for rel, where in outputs:
        source = root / rel
        where.mkdir(parents=True, exist_ok=True)
        if not source.exists():
            logger.warning("the step wrote nothing to %s; output %s stays empty", rel, where)
            continue
        shutil.copytree(source, where, dirs_exist_ok=True, symlinks=False)


def run_step(args: argparse.Namespace, code_dir: Path | None = None) -> int:
    """Lay out the project root, run the stage, copy its outputs; return the exit status."""
    code_dir = (code_dir or Path.cwd()).resolve()
    package_parent = str(Path(__file__).resolve().parents[2])  # the folder holding amlkit/
    with tempfile.TemporaryDirectory(prefix="amlkit-step-") as tmp:
        root = Path(tmp) / "project"
        _layout(root, code_dir, args.inputs, {rel for rel, _ in args.outputs})
        old_env = dict(os.environ)
        os.environ[paths.ROOT_ENV] = str(root)
        python_path = [package_parent, *filter(None, [old_env.get("PYTHONPATH")])]
        os.environ["PYTHONPATH"] = os.pathsep.join(python_path)  # the kernel imports amlkit
        try:
            if args.candidate:
                config_file = root / "config" / "model_config.json"
                hyper = dict(h.split("=", 1) for h in args.hyperparameter)
                trial = trial_model_config(io.read_json(config_file), args.candidate, hyper)
                io.write_json_atomic(config_file, trial)
            status = _run_target(args, code_dir)
            if status == 0:
                _collect(root, args.outputs)
        finally:
            os.environ.clear()
            os.environ.update(old_env)
    return status


def _run_target(args: argparse.Namespace, code_dir: Path) -> int:
    if args.target == "amlkit":
        from amlkit.cli.main import main as amlkit_main

        return amlkit_main(args.rest)
    import papermill as pm

    from amlkit.pipeline import kernels, runner

    notebook = (code_dir / args.target).resolve()
    params = _parameters(args.rest, pm.inspect_notebook(str(notebook)))
    executed = args.executed or Path(tempfile.mkdtemp(prefix="amlkit-executed-"))
    executed.mkdir(parents=True, exist_ok=True)
    kernels.ensure_project_kernel()  # the kernel the notebooks declare, in the job's environment
    logger.info("running %s with %s", notebook.name, params)
    runner.execute(notebook, executed / notebook.name, params, progress=False)
    print(f"executed {notebook.name} -> {executed / notebook.name}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m amlkit.azure.step [--in REL=PATH] ... TARGET ...``."""
    handler = logging.StreamHandler()  # the job's log: what the step does, not the libraries'
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger("amlkit").addHandler(handler)
    logging.getLogger("amlkit").setLevel(logging.INFO)
    args = build_parser().parse_args(argv)
    try:
        return run_step(args)
    except Exception as exc:  # a job's log should end with the reason, not only a traceback
        logger.exception("step failed")
        print(f"amlkit step failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
