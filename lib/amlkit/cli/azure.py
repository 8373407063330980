"""The ``amlkit azure`` commands: plan, submit, champion, deploy and run-local.

:func:`add_parsers` adds the group to the ``amlkit`` parser. The command line is a contract
with the CI/CD workflows (``plan --out DIR``, ``submit [--pipeline NAME] [--wait] [--json]``,
``wait JOB [--timeout S] [--poll S]``,
``champion [--model NAME] [--json]``, ``deploy [--deployment blue|green|idle] [--model
NAME:VERSION] [--traffic N] [--smoke-test] [--rollback] [--target workspace|local] [--json]``,
``run-local SPEC [--out DIR]``).
Exit status: 0 done; 1 a spec did not validate, a job failed or a local run failed; 2 bad
arguments or configuration; 3 skipped, with a one-line ``skipped: ...`` saying why (no
workspace in ``config/azure_config.json``, or no credentials), which CI treats as skipped;
75 ``wait`` ran out of time with the job still running.

Like the rest of the command line, this module imports only the standard library at the top:
azure-ai-ml and the planners load inside the commands.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from amlkit import paths

SKIPPED = 3
PLAN_EPILOG = """\
The plan folder gets one YAML file per entity (environments, compute, data assets, command
jobs, the training pipeline and its schedule, the sweep, the online and batch endpoints and
deployments, the monitoring schedule), paths relative to it, each loaded back with the
azure-ai-ml loader of its kind. `az ml <kind> create -f <file>` accepts every one.
"""
DEPLOY_EPILOG = """\
targets:
  workspace  the managed online endpoint of config/azure_config.json's workspace
  local      the twin: a loopback router and one azmlinfsrv per deployment, started from the
             plan's code folder and the registered model (models:/NAME/VERSION of the registry
             MLflow is configured for), state in .amlkit/twin-endpoints/<endpoint>/endpoint.json;
             servers run during the command and start again from that file in the next one
Without --target: workspace when one is configured, else local when MLFLOW_TRACKING_URI is an
http(s) URI (a twin's tracking server), else exit 3 (skipped).
--json prints {"action": first|canary|switch|update|unchanged|rollback|nothing_to_roll_back,
"deployment", "model", "traffic", "previous_traffic", "retired", "monitored", "message"}.
"""
RUN_LOCAL_EPILOG = """\
examples:
  amlkit azure run-local .amlkit/azure-plan/pipelines/training.yml \\
      --set inputs.search_iterations=2 --set inputs.cv_folds=3
  amlkit azure run-local .amlkit/azure-plan/sweeps/training.yml --trials 2
  amlkit azure run-local .amlkit/azure-plan/endpoints/batch/deployment.yml --data rows.csv
Each step's own command runs in bash from its code folder, in this Python's environment,
as Azure ML runs it: its MLflow run created first on a tracking server (MLFLOW_RUN_ID ...),
its data inputs downloaded read-only from the datastore (Azurite), its outputs uploaded
there after it; outputs and logs (<step>/user_logs/std_log.txt) go to --out, with run.json.
"""


def default_plan_dir() -> Path:
    """Return where plans go unless ``--out`` says otherwise: ``.amlkit/azure-plan``."""
    return paths.state_dir() / "azure-plan"


def _skipped(reason: Any) -> int:
    print(f"skipped: {reason}")
    return SKIPPED


def _write_plan(out: Path, *, table: bool = True) -> list[Any]:
    from amlkit.azure.plan import format_plan, write_plan

    entries = write_plan(out)
    if table:
        print(format_plan(entries) + "\n")
    written = sum(1 for e in entries if e.file != "-")
    print(f"{written} specs written to {out} and validated with the azure-ai-ml loaders")
    return entries


def cmd_plan(args: argparse.Namespace) -> int:
    """Write and validate every spec; print the plan."""
    try:
        _write_plan(Path(args.out) if args.out else default_plan_dir())
    except ValueError as exc:
        print(f"amlkit: plan failed: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    """Submit the training pipeline (or another planned job) to the workspace."""
    from amlkit.azure import live
    from amlkit.config import AzureConfig

    if not AzureConfig.load().workspace_configured:
        return _skipped("config/azure_config.json names no workspace; nothing submitted")
    out = Path(args.out) if args.out else default_plan_dir()
    with contextlib.redirect_stdout(sys.stderr if args.json else sys.stdout):
        _write_plan(out)  # with --json, stdout holds the job's JSON alone
    try:
        job = live.submit(out, args.pipeline, wait=args.wait)
    except live.Skipped as exc:
        return _skipped(exc)
    except PermissionError as exc:
        print(f"amlkit: submit refused: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(job))
    else:
        print(f"job {job['name']}: {job['status']}  {job['studio_url'] or ''}".rstrip())
    return 1 if job["status"] in ("Failed", "Canceled", "NotResponding") else 0


STILL_RUNNING = 75
"""``amlkit azure wait``'s exit status when the time ran out and the job is still going."""


def cmd_wait(args: argparse.Namespace) -> int:
    """Wait for a submitted job with the credentials of now; exit 75 while it still runs."""
    from amlkit.azure import live
    from amlkit.config import AzureConfig

    if not AzureConfig.load().workspace_configured:
        return _skipped("config/azure_config.json names no workspace; no job to wait for")
    try:
        job = live.wait(args.job, timeout_s=args.timeout, poll_s=args.poll)
    except live.Skipped as exc:
        return _skipped(exc)
    print(f"job {job['name']}: {job['status']}  {job['studio_url'] or ''}".rstrip())
    if not job["finished"]:
        return STILL_RUNNING
    return 0 if job["status"] == "Completed" else 1


def cmd_champion(args: argparse.Namespace) -> int:
    """Print the registry's champion, its packaged version and the last gate decision."""
    from amlkit.azure import jobs, live
    from amlkit.config import DataConfig

    model = args.model or jobs.model_name(DataConfig.load())
    try:
        found = live.champion(model)
    except live.Skipped as exc:
        return _skipped(exc)
    if args.json:
        print(json.dumps(found, indent=2, default=str))
    else:
        for key, value in found.items():
            print(f"{key:17s} {value}")
    return 0


def print_outcome(outcome: Any, as_json: bool) -> None:
    """Print a deploy's or rollback's outcome: one line, or JSON with ``--json``."""
    if as_json:
        print(json.dumps(outcome.to_dict(), indent=2))
    else:
        print(outcome.message)


def cmd_deploy(args: argparse.Namespace) -> int:
    """Deploy an exact packaged version blue/green, smoke-test it, move traffic; or roll back."""
    from amlkit.azure import delivery, live, rollout

    if args.traffic is not None and not 0 <= args.traffic <= 100:
        raise ValueError(f"--traffic {args.traffic} is not a percentage; give 0 to 100")
    try:
        if args.rollback:
            outcome = delivery.rollback_endpoint(target=args.target, deployment=args.deployment)
        else:
            outcome = delivery.deploy_model(
                target=args.target,
                model=args.model,
                deployment=args.deployment,
                share=args.traffic,
                smoke_test=args.smoke_test,
                plan_dir=args.out,
            )
    except live.Skipped as exc:
        return _skipped(exc)
    except rollout.SmokeTestFailed as exc:
        print(f"amlkit: {exc}", file=sys.stderr)
        return 1
    except LookupError as exc:
        raise ValueError(str(exc)) from None
    print_outcome(outcome, args.json)
    return 0


def cmd_run_local(args: argparse.Namespace) -> int:
    """Run a job, pipeline or batch deployment spec on this machine."""
    from amlkit.azure.twin import Twin, TwinError

    spec = Path(args.spec)
    if not spec.is_file():
        raise FileNotFoundError(f"no spec {spec}; write the plan with `amlkit azure plan`")
    overrides = dict(item.split("=", 1) for item in args.set)
    out = Path(args.out) if args.out else paths.runs_dir() / f"azure-{spec.stem}"
    try:
        twin = Twin(spec, out, overrides, tracking_uri=args.tracking_uri, storage=args.storage)
        summary = twin.run(
            trials=args.trials, seed=args.seed, data=Path(args.data) if args.data else None
        )
    except TwinError as exc:
        print(f"amlkit: run-local failed: {exc}", file=sys.stderr)
        return 1
    for step in summary.get("steps", []) + summary.get("trials", []):
        print(f"  {step['step']:12s} {step['status']:6s} {step['seconds']:7.1f} s")
    if summary.get("best"):
        print(f"best trial: {summary['best']}")
    if "rows" in summary:
        print(f"scored {summary['rows']} rows of {summary['files']} file(s): {summary['output']}")
    for asset in summary.get("registered_data", []):
        print(f"data asset {asset['name']}:{asset['version']} = {asset['path']}")
    print(f"runs and registry: {summary['tracking_uri']} (experiment {summary['experiment']})")
    print(f"outputs and logs: {out}  (run.json)")
    return 0


def _setting(text: str) -> str:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"{text!r} is not inputs.NAME=VALUE (or model=PATH)")
    return text


def add_parsers(sub: Any) -> None:
    """Add ``amlkit azure`` and its subcommands to the ``amlkit`` subparsers ``sub``."""
    azure = sub.add_parser(
        "azure",
        help="Azure ML at scale: plan specs, submit jobs, deploy, run specs locally",
        description="Build the project's Azure ML specs from config/ and run them: on a "
        "workspace (submit, deploy, champion; exit 3 when none is configured) or here "
        "(run-local).",
    )
    commands = azure.add_subparsers(dest="azure_command", required=True)

    plan = commands.add_parser(
        "plan",
        help="write and validate every spec (no workspace needed)",
        epilog=PLAN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    plan.add_argument("--out", help="plan folder (default .amlkit/azure-plan; emptied first)")
    plan.set_defaults(func=cmd_plan)

    submit = commands.add_parser("submit", help="submit the training pipeline to the workspace")
    submit.add_argument(
        "--pipeline", default="training-pipeline", help="planned job (default training-pipeline)"
    )
    submit.add_argument("--wait", action="store_true", help="stream the job until it ends")
    submit.add_argument("--out", help="plan folder (default .amlkit/azure-plan)")
    submit.add_argument("--json", action="store_true", help="print the job as JSON")
    submit.set_defaults(func=cmd_submit)

    wait = commands.add_parser(
        "wait",
        help="wait for a submitted job (exit 0 completed, 1 failed, 75 still running)",
        description="Poll a job's status with the credentials of now until it ends or the "
        "timeout passes. CD signs in again between calls, so no token has to outlive a long "
        "run.",
    )
    wait.add_argument("job", help="the job's name (what `submit --json` prints as name)")
    wait.add_argument("--timeout", type=float, default=600, help="seconds to wait (600)")
    wait.add_argument("--poll", type=float, default=30, help="seconds between polls (30)")
    wait.set_defaults(func=cmd_wait)

    champion = commands.add_parser(
        "champion",
        help="the registry's champion and its packaged version (MLFLOW_TRACKING_URI's "
        "registry when set, else the workspace's)",
    )
    champion.add_argument("--model", help="registered model (default <dataset>-<task>)")
    champion.add_argument("--json", action="store_true", help="print JSON")
    champion.set_defaults(func=cmd_champion)

    deploy = commands.add_parser(
        "deploy",
        help="blue/green deployment of an exact packaged model version",
        description="Deploy NAME:VERSION (a version of <model>-packaged that `amlkit package` "
        "registered; default the registry's packaged champion) to the online endpoint: the "
        "first deployment takes 100%% at once, a canary (--traffic under 100) only beside a "
        "live deployment, a full switch deletes the other deployment, a rollback needs one to "
        "go back to (else it says so and exits 0), and the monitoring schedule follows the "
        "deployment that serves.",
        epilog=DEPLOY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    deploy.add_argument(
        "--deployment",
        choices=["blue", "green", "idle"],
        default="idle",
        help="blue, green, or idle (default): the one already running --model, else the one "
        "serving under half of the traffic, so a canary, the full switch and a rollback find it",
    )
    deploy.add_argument(
        "--model", help="NAME:VERSION, exact (default the packaged champion of the registry)"
    )
    deploy.add_argument("--traffic", type=int, help="percent of traffic to the deployment")
    deploy.add_argument("--smoke-test", action="store_true", help="score test rows first")
    deploy.add_argument("--rollback", action="store_true", help="all traffic to the other one")
    deploy.add_argument(
        "--target",
        choices=["workspace", "local"],
        help="workspace (Azure ML) or local (the twin endpoint); default: see below",
    )
    deploy.add_argument("--json", action="store_true", help="print the outcome as JSON")
    deploy.add_argument("--out", help="plan folder (default .amlkit/azure-plan)")
    deploy.set_defaults(func=cmd_deploy)

    run_local = commands.add_parser(
        "run-local",
        help="run a job, pipeline, sweep or batch deployment spec here",
        epilog=RUN_LOCAL_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run_local.add_argument("spec", help="a spec file written by `amlkit azure plan`")
    run_local.add_argument("--out", help="outputs and logs (default runs/azure-<spec>)")
    run_local.add_argument(
        "--set", action="append", default=[], type=_setting, metavar="inputs.NAME=VALUE",
        help="replace an input's value or path (repeatable)",
    )  # fmt: skip
    run_local.add_argument("--trials", type=int, default=2, help="sweep trials to run (2)")
    run_local.add_argument("--seed", type=int, default=0, help="seed of the sweep's sampling")
    run_local.add_argument("--data", help="batch deployment: a file or folder to score")
    run_local.add_argument(
        "--tracking-uri",
        help="a running MLflow tracking server standing in for the workspace's (default "
        "$AMLKIT_TWIN_TRACKING_URI, else `mlflow server` is started under --out/platform)",
    )
    run_local.add_argument(
        "--storage",
        help="connection string of a running Azurite standing in for the datastore (default "
        "$AMLKIT_TWIN_STORAGE, else Azurite is started under --out/platform)",
    )
    run_local.set_defaults(func=cmd_run_local)
