"""The deployment commands of the ``amlkit`` CLI: package, serve, keys, score, deploy.

Exit status: 0 on success, 1 when the server stopped on its own, 2 for a bad argument.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

from amlkit import paths
from amlkit.names import check_name

SERVE_EPILOG = """\
The server listens on 127.0.0.1 only and runs until Ctrl-C (or SIGTERM), then stops its
workers. With auth_mode "key" in deployment_config.json, send 'Authorization: Bearer <key>'
with a key from `amlkit keys <endpoint>`.
"""


def _rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(paths.project_root()))
    except ValueError:
        return str(path)


def _choose(name: str, version: str | None) -> Path:
    """Return the folder of the version asked for, printing which one and why."""
    from amlkit.registry.store import ModelNotFoundError
    from amlkit.serving.package import choose_version  # the registry: MLflow, seconds

    try:
        chosen, why = choose_version(name, version)
    except ModelNotFoundError as exc:
        raise FileNotFoundError(str(exc)) from None
    print(f"model    {name} version {chosen.version} ({why})", flush=True)
    return chosen.path


def cmd_package(args: argparse.Namespace) -> int:
    """Package a registered model version as a service folder."""
    from amlkit.names import check_name
    from amlkit.serving.package import package_service, service_info

    if args.service is not None:  # the name first: it is refused before a model is looked up
        check_name("service", args.service)
    folder = package_service(
        _choose(args.model, args.version),
        service=args.service,
        fast_path=not args.no_onnx,
        register=not args.no_register,
    )
    info = service_info(folder)
    model, endpoint = info["model"], info["endpoint_name"]
    print(f"packaged {model['name']} version {model['version']} as service {info['service']}")
    print(f"  folder   {_rel(folder)}")
    if info.get("registered"):
        registered = info["registered"]
        print(f"  registry {registered['name']}:{registered['version']}  (deploy --model takes it)")
    parity = info.get("parity") or {}
    figure = parity.get("max_probability_diff", parity.get("max_abs_diff"))
    if info["backend"] == "onnx":
        print(f"  backend  onnx ({info['backend_reason']})")
        if figure is not None:
            print(f"  parity   largest difference {figure:.1e} on {parity.get('rows')} rows")
    elif info["backend"] == "sklearn":
        print("  backend  sklearn (the pickled pipeline; the ONNX fast path was not taken)")
        print(f"  why      {info['backend_reason']}")
    else:
        print(f"  backend  {info['backend']} ({info['backend_reason']})")
    print(f"  endpoint {endpoint}  (keys: amlkit keys {endpoint})")
    return 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def cmd_serve(args: argparse.Namespace) -> int:
    """Run a packaged service on loopback until Ctrl-C or SIGTERM."""
    from amlkit.serving.server import service_folder, start_server

    folder = service_folder(args.service)
    endpoint = start_server(folder, port=args.port, workers=args.workers)
    # SIGINT too: a shell starts background jobs with SIGINT ignored
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(f"serving {folder.name} at {endpoint.url}  (pid {endpoint.pid})", flush=True)
        if endpoint.key:
            print(f"auth: key; show the keys with `amlkit keys {endpoint.endpoint}`", flush=True)
        print(f"request log: {_rel(endpoint.request_log_dir)}", flush=True)
        print("press Ctrl-C to stop", flush=True)
        code = endpoint.process.wait()  # returns only if the server stops by itself
    except KeyboardInterrupt:
        endpoint.stop()
        print("stopped", flush=True)
        return 0
    finally:
        endpoint.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(f"amlkit: the server exited with code {code}; see {endpoint.log_path}", file=sys.stderr)
    return 1


def _known_endpoints() -> list[str]:
    from amlkit import io

    configs = paths.deployed_models_dir().glob("*/deployment_config.json")
    names = {io.read_json(config).get("endpoint_name") for config in configs}
    names |= {p.parent.name for p in (paths.state_dir() / "endpoints").glob("*/keys.json")}
    return sorted(n for n in names if n)


def cmd_keys(args: argparse.Namespace) -> int:
    """Show (or regenerate) an endpoint's keys."""
    from amlkit.serving import auth

    endpoint, known = check_name("endpoint", args.endpoint), _known_endpoints()
    if endpoint not in known:
        raise ValueError(
            f"no endpoint {endpoint!r}; known endpoints: {known or 'none'} (package a service "
            "first: its deployment_config.json names the endpoint)"
        )
    if args.regenerate:
        keys = auth.regenerate_key(endpoint, args.regenerate)
        print(f"regenerated the {args.regenerate} key of {endpoint}")
    else:
        keys = auth.show_keys(endpoint)
    print(f"endpoint  {endpoint}")
    print(f"primary   {keys['primary']}")
    print(f"secondary {keys['secondary']}")
    print(f"file      {_rel(auth.keys_path(endpoint))}  (mode 600, git-ignored state folder)")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    """Score a CSV or Parquet file with a service or a registered model."""
    from amlkit.serving.batch import score_file
    from amlkit.serving.server import service_folder

    kwargs: dict[str, Any] = {}
    if args.service:
        kwargs["service"] = service_folder(args.service)
    else:
        name, _, version = args.model.partition(":")
        kwargs["model_dir"] = _choose(name, version or None)
    out = score_file(
        args.input,
        output_path=args.output,
        chunk_rows=args.chunk_rows,
        progress=not args.no_progress,
        **kwargs,
    )
    print(f"wrote predictions to {out}")
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    """Write and validate a service's Azure specs; without --dry-run, deploy it blue/green.

    The deploy is ``amlkit azure deploy --model <the service's registered version>``: one
    path for both commands.
    """
    from amlkit.azure import endpoints as azure
    from amlkit.serving.package import service_info
    from amlkit.serving.server import service_folder

    folder = service_folder(args.service)
    for kind, path in azure.write_specs(folder).items():
        print(f"{kind:9s} {_rel(path)}  (validated with the azure-ai-ml loaders)")
    if args.dry_run:
        print("dry run: nothing sent to Azure")
        return 0
    registered = service_info(folder).get("registered")
    if not registered:
        raise ValueError(
            f"service {folder.name} is not registered (package it with `amlkit package`, which "
            "registers <model>-packaged), so there is no exact version to deploy"
        )
    from amlkit.cli import azure as azure_cli

    return azure_cli.cmd_deploy(
        argparse.Namespace(
            traffic=None,
            rollback=False,
            target=args.target,
            model=f"{registered['name']}:{registered['version']}",
            deployment=args.deployment,
            smoke_test=False,
            out=None,
            json=False,
        )
    )


def add_parsers(sub: Any) -> None:
    """Add the deployment subcommands to the ``amlkit`` subparsers ``sub``."""
    pkg = sub.add_parser(
        "package",
        help="package a registered model version as a service folder",
        description="Build models/deployed_models/<service>/ (scoring_script.py, the model, "
        "environment.yml, deployment_config.json) from a registered version; converts to "
        "ONNX when the parity check passes, else serves the pickled pipeline and says why. "
        "Then registers the folder in the MLflow registry (MLFLOW_TRACKING_URI, else the "
        "project's store) as <model>-packaged, from runs:/, reusing the version that holds "
        "the same packaging: the exact version `amlkit azure deploy --model` takes.",
    )
    pkg.add_argument("model", help="registered model name (models/trained_models/<name>)")
    pkg.add_argument(
        "--version",
        default="champion",
        help="version number, 'champion' (default; refused when none was promoted) or 'latest'",
    )
    pkg.add_argument(
        "--service",
        help="service name (default: the config's endpoint_name for this model, e.g. "
        "amlkit-<dataset>)",
    )
    pkg.add_argument("--no-onnx", action="store_true", help="serve the pickled pipeline")
    pkg.add_argument(
        "--no-register",
        action="store_true",
        help="do not register the service in the MLflow registry as <model>-packaged",
    )
    pkg.set_defaults(func=cmd_package)

    serve = sub.add_parser(
        "serve",
        help="run a packaged service locally (azmlinfsrv on 127.0.0.1)",
        description="Run azmlinfsrv for a packaged service on 127.0.0.1; wait until healthy.",
        epilog=SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("service", help="service name under models/deployed_models/")
    serve.add_argument("--port", type=int, help="port (default: config local.port; 0: free)")
    serve.add_argument("--workers", type=int, help="worker processes (default: config)")
    serve.set_defaults(func=cmd_serve)

    keys = sub.add_parser("keys", help="show or regenerate an endpoint's keys")
    keys.add_argument("endpoint", help="endpoint name (deployment_config.json endpoint_name)")
    keys.add_argument("--regenerate", choices=["primary", "secondary"], help="replace a key")
    keys.set_defaults(func=cmd_keys)

    score = sub.add_parser(
        "score",
        help="batch-score a CSV or Parquet file",
        description="Score a file in chunks; write <input>_predictions.<csv|parquet> with the "
        "input columns, 'prediction' and one 'probability_<class>' column per class.",
    )
    score.add_argument("input", help="a .csv or .parquet file")
    which = score.add_mutually_exclusive_group(required=True)
    which.add_argument("--service", help="a packaged service (uses its ONNX fast path)")
    which.add_argument(
        "--model",
        help="NAME (its champion), NAME:VERSION or NAME:latest of a registered model; its files "
        "are checked against model_metadata.json first",
    )
    score.add_argument("--output", help="output file (default: beside the input)")
    score.add_argument("--chunk-rows", type=int, default=50_000, help="rows per chunk")
    score.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    score.set_defaults(func=cmd_score)

    deploy = sub.add_parser(
        "deploy",
        help="Azure ML managed online endpoint: write and validate specs, or deploy",
        description="Write endpoint.yml, blue.yml and green.yml into <service>/azure/ and "
        "validate them offline with the azure-ai-ml loaders. Without --dry-run, deploy the "
        "service's registered version as `amlkit azure deploy --model NAME:VERSION` does "
        "(workspace, or the local twin; exit 3 when neither is there).",
    )
    deploy.add_argument("service", help="service name under models/deployed_models/")
    deploy.add_argument("--dry-run", action="store_true", help="only write and validate specs")
    deploy.add_argument("--deployment", choices=["blue", "green", "idle"], default="idle")
    deploy.add_argument("--target", choices=["workspace", "local"], help="see azure deploy")
    deploy.set_defaults(func=cmd_deploy)
