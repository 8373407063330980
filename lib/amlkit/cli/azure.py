"""The ``amlkit azure`` commands: plan, submit, champion, deploy and run-local.

:func:`add_parsers` adds the group to the ``amlkit`` parser. The command line is a contract
with the CI/CD workflows (``plan --out DIR``, ``submit [--pipeline NAME] [--wait] [--json]``,
``wait JOB [--timeout S] [--poll S]``,
``champion [--model NAME] [--json]``, ``deploy [--deployment blue|green|idle] [--model
NAME[:VERSION]] [--traffic N] [--smoke-test] [--rollback]``, ``run-local SPEC [--out DIR]``).
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
RUN_LOCAL_EPILOG = """\
examples:
  amlkit azure run-local .amlkit/azure-plan/pipelines/training.yml \\
      --set inputs.search_iterations=2 --set inputs.cv_folds=3
  amlkit azure run-local .amlkit/azure-plan/sweeps/training.yml --trials 2
  amlkit azure run-local .amlkit/azure-plan/endpoints/batch/deployment.yml --data rows.csv
Each step's own command runs in bash from its code folder, in this Python's environment;
outputs and logs (<step>/user_logs/std_log.txt) go to --out, with run.json.
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
    """Print the workspace registry's champion and the last gate decision."""
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


def cmd_deploy(args: argparse.Namespace) -> int:
    """Deploy the champion blue/green, smoke-test it and move traffic; or roll back."""
    from amlkit.azure import live
    from amlkit.config import AzureConfig, DeploymentConfig

    if args.traffic is not None and not 0 <= args.traffic <= 100:
        raise ValueError(f"--traffic {args.traffic} is not a percentage; give 0 to 100")
    dep = DeploymentConfig.load()
    try:
        client = live.connect(AzureConfig.load())
    except live.Skipped as exc:
        return _skipped(exc)
    current = live.current_traffic(client, dep.endpoint_name)
    if args.deployment == "idle":
        args.deployment = live.idle_deployment(current)
        print(f"idle deployment of {dep.endpoint_name}: {args.deployment} (traffic {current})")
    if args.rollback:
        traffic = live.rollback(client, dep.endpoint_name, args.deployment)
        print(f"rolled back {dep.endpoint_name}: traffic {traffic}")
        return 0
    from amlkit.azure import specs

    out = default_plan_dir()
    entries = {e.name: e for e in _write_plan(out, table=False)}
    entities = {
        kind: specs.validate(out / entries[name].file, entries[name].kind)
        for kind, name in (
            ("endpoint", dep.endpoint_name),
            (args.deployment, f"{dep.endpoint_name}/{args.deployment}"),
        )
    }
    if args.model:
        name, _, version = args.model.partition(":")
        model = f"azureml:{name}:{version}" if version else f"azureml:{name}@latest"
        entities[args.deployment].model = model
    share = 100 if args.traffic is None else args.traffic
    traffic = live.traffic_split(current, args.deployment, share)
    model_ref = entities[args.deployment].model
    request = None
    if args.smoke_test:
        request = live.smoke_request(client, model_ref if isinstance(model_ref, str) else "")
    result = live.deploy_entities(
        client, entities, deployment=args.deployment, traffic=traffic, smoke_request=request
    )
    print(f"deployed {args.deployment} to {result['endpoint']}; traffic {result['traffic']}")
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
        summary = Twin(spec, out, overrides).run(
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

    champion = commands.add_parser("champion", help="the workspace registry's champion")
    champion.add_argument("--model", help="registered model (default <dataset>-<task>)")
    champion.add_argument("--json", action="store_true", help="print JSON")
    champion.set_defaults(func=cmd_champion)

    deploy = commands.add_parser("deploy", help="blue/green deployment of the champion")
    deploy.add_argument(
        "--deployment",
        choices=["blue", "green", "idle"],
        default="blue",
        help="blue, green, or idle: the one serving under half of the traffic (blue/green "
        "alternation: a new model goes there, and a full switch or rollback finds it again)",
    )
    deploy.add_argument("--model", help="NAME or NAME:VERSION (default the packaged champion)")
    deploy.add_argument("--traffic", type=int, help="percent of traffic to the deployment")
    deploy.add_argument("--smoke-test", action="store_true", help="score test rows first")
    deploy.add_argument("--rollback", action="store_true", help="all traffic to the other one")
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
    run_local.set_defaults(func=cmd_run_local)
