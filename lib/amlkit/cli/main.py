"""The ``amlkit`` command: run the pipeline, manage notebooks and configuration.

It starts fast: the configuration models (pydantic) and the heavy libraries load after the
arguments are parsed, inside the commands that use them (tests/cli checks it;
benchmarks/cli_startup.py times every command).
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path
from typing import Any

from amlkit import paths
from amlkit.cli import azure as azure_commands
from amlkit.cli import monitor as monitor_command
from amlkit.cli import serving as serving_commands
from amlkit.pipeline import PipelineError
from amlkit.pipeline.stages import discover

RUN_EPILOG = """\
examples:
  amlkit run                              every notebook, default parameters
  amlkit run --stages 01-03               the data stages only
  amlkit run -s 01 -s 03 -p dataset weather -p source data/external/weather.csv \\
             -p target weather -p task classification
parameters:
  A -p NAME VALUE pair goes to every selected notebook that declares NAME in its
  'parameters' cell (see `papermill --help-notebook notebooks/<name>.ipynb`). VALUE is read
  as a Python literal when it parses as one (42, 0.5, True, None, [1, 2]), else as a string.
  The data set defaults to data_config.json's default_dataset.
outputs:
  runs/<run-id>/ holds each executed notebook and run.json; the stages write data/raw/,
  data/processed/, models/ and the MLflow store in .amlkit/.
exit status:
  0 when every notebook ran; 1 when one failed (its executed copy is kept, the failing
  cell is named); 2 for bad arguments or configuration.
"""


def parse_value(text: str) -> Any:
    """Read a ``-p`` value as a Python literal when it is one, else keep the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _outputs_summary() -> list[str]:
    root, state = paths.project_root(), paths.state_dir()
    lines = []
    for label, folder, pattern in (
        ("raw data", paths.raw_dir(), "*/*"),
        ("processed data", paths.processed_dir(), "*/*"),
        ("trained models", paths.trained_models_dir(), "*/*"),
        ("deployed services", paths.deployed_models_dir(), "*"),
    ):
        items = [p for p in folder.glob(pattern) if p.is_dir() and not p.name.startswith(".")]
        if items:
            latest = max(items, key=lambda p: p.stat().st_mtime)
            lines.append(f"  {label:18s} {latest.relative_to(root)}  ({len(items)} in all)")
    for report in sorted(state.glob("endpoints/*/monitoring/index.html")):
        lines.append(f"  {'monitoring report':18s} {report.relative_to(root)}")
    if (state / "mlflow.db").exists():
        lines.append(f"  {'MLflow store':18s} {(state / 'mlflow.db').relative_to(root)}")
    return lines


def cmd_run(args: argparse.Namespace) -> int:
    """Run the pipeline."""
    from amlkit.pipeline import runner

    params = {name: parse_value(value) for name, value in args.parameter}
    result = runner.run_pipeline(
        args.stages, params, run_id=args.run_id, progress=not args.no_progress
    )
    print(f"run {result.run_id}: {len(result.notebooks)} notebook(s) ok")
    for entry in result.notebooks:
        print(f"  {entry['notebook']:40s} {entry['seconds']:7.1f} s")
    print(f"executed notebooks: {result.folder.relative_to(paths.project_root())}/")
    print("outputs:\n" + "\n".join(_outputs_summary()))
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """Validate every configuration file."""
    from amlkit.config import load_all

    for name in load_all():
        print(f"config/{name}.json: ok")
    return 0


def cmd_notebooks(args: argparse.Namespace) -> int:
    """Execute notebooks in place with their defaults, or strip their execution noise."""
    files = [Path(f).resolve() for f in args.files] or discover()
    if args.action == "clean":
        from amlkit.pipeline.notebooks import clean_notebook

        for nb in files:
            if clean_notebook(nb):
                print(f"cleaned {nb}")
        return 0
    from amlkit.pipeline import runner

    for nb in runner.refresh_notebooks(files):
        print(f"refreshed {nb}")
    return 0


NOTEBOOKS_HELP = (
    "'execute' runs notebooks with their defaults in a fresh temporary project root (the "
    "stages before them run too, their outputs discarded) and writes them back cleaned: this "
    "refreshes the committed outputs that nbval checks. 'clean' strips execution noise with "
    "nbstripout (papermill and timing metadata, widget state, injected parameters), keeping "
    "outputs."
)
STAGES_HELP = (
    "a notebook by number (03), name (03_data_preprocessing) or range (01-03); repeatable; "
    "default: all"
)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``amlkit`` command."""
    parser = argparse.ArgumentParser(
        prog="amlkit", description="Run and manage the Azure ML lifecycle showcase."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log INFO to the console")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="run the notebooks in order with papermill",
        description="Run the stage notebooks in order through papermill into runs/<run-id>/.",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("-s", "--stages", action="append", metavar="STAGE", help=STAGES_HELP)
    run.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="set a notebook parameter (repeatable)",
    )
    run.add_argument("--run-id", help="name of the run folder (default: UTC time + random)")
    run.add_argument("--no-progress", action="store_true", help="hide progress bars")
    run.set_defaults(func=cmd_run)
    config = sub.add_parser("config", help="validate the configuration files in config/")
    config.set_defaults(func=cmd_config)
    notebooks = sub.add_parser(
        "notebooks",
        help="execute notebooks in place or strip their execution noise",
        description=NOTEBOOKS_HELP,
    )
    notebooks.add_argument("action", choices=["execute", "clean"])
    notebooks.add_argument("files", nargs="*", help="notebooks (default: every stage notebook)")
    notebooks.set_defaults(func=cmd_notebooks)
    serving_commands.add_parsers(sub)
    monitor_command.add_parser(sub)
    azure_commands.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``amlkit`` console command."""
    args = build_parser().parse_args(argv)  # --help and usage errors end here, before pydantic
    from amlkit.config import ConfigError
    from amlkit.logs import setup_logging

    try:
        setup_logging("INFO" if args.verbose else None)
        return args.func(args)
    except ConfigError as exc:
        print(f"amlkit: configuration error: {exc}", file=sys.stderr)
        return 2
    except PipelineError as exc:
        print(f"amlkit: pipeline failed: {exc}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError) as exc:
        print(f"amlkit: {exc}", file=sys.stderr)
        return 2
