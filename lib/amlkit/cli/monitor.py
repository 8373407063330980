"""The ``amlkit monitor`` command: watch a deployed model's production data, decide on retraining.

It reads the endpoint's request log (or files of collected production data), compares them
with the training data of the deployed model through
:func:`amlkit.monitoring.monitor.run_monitoring`, writes the report next to the request log
(:func:`amlkit.monitoring.monitor.write_monitoring_report`) and prints the verdict. The exit
status says what to do: 0 nothing, 4 retrain (the rule of deployment_config.json's
``monitoring.retraining`` fired), 2 a missing prerequisite. The scheduled monitoring
workflow (.github/workflows/monitor.yml) opens an issue on 4.

Like the rest of the CLI, this module imports only the standard library at start; pandas and
the monitoring package load when the command runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from amlkit import paths
from amlkit.cli.serving import _rel
from amlkit.names import check_name

EXIT_RETRAIN = 4

EPILOG = """\
production data:
  Without --production, the endpoint's request log (.amlkit/endpoints/<endpoint>/logs/,
  written by `amlkit serve`). With it, a CSV, Parquet or JSON-lines file, or a folder of
  them (Azure ML data collector output: model_inputs, joined with model_outputs).
training data:
  The processed version the deployed model was trained on: the one named in the model of
  the endpoint's packaged service (models/deployed_models/), else the latest processed
  version of --dataset (default: data_config.json's default_dataset).
exit status:
  0 no retraining needed; 4 the retraining rule fired; 2 missing data or bad arguments.
"""


def newest_service(endpoint: str) -> dict[str, Any] | None:
    """Return the endpoint's newest service_metadata.json (its model's under ``model_metadata``).

    None when the endpoint has no packaged service.
    """
    services = []
    for meta in paths.deployed_models_dir().glob("*/service_metadata.json"):
        info = json.loads(meta.read_text(encoding="utf-8"))
        model_meta = meta.parent / "model" / "model_metadata.json"
        if info.get("endpoint_name") == endpoint and model_meta.is_file():
            info["model_metadata"] = json.loads(model_meta.read_text(encoding="utf-8"))
            services.append((info.get("created", ""), info))
    return max(services, key=lambda pair: pair[0])[1] if services else None


def training_data(
    service: dict[str, Any] | None, dataset: str | None, version: str | None
) -> tuple[str, str]:
    """Return the (dataset, processed version) to compare the endpoint's traffic with.

    Explicit arguments win; then the data of the model that the endpoint's newest packaged
    service serves; then data_config.json's default data set, latest version.
    """
    if dataset is None and version is None and service is not None:
        data = service["model_metadata"].get("data", {})
        if data.get("dataset") and data.get("version"):
            return data["dataset"], data["version"]
    from amlkit.config import DataConfig

    return dataset or DataConfig.load().default_dataset, version or "latest"


def watched(service: dict[str, Any] | None, current: Any) -> Any:
    """Return what the report says it watched: the served model and the traffic split.

    The split is the one seen in the production rows' ``deployment`` field when logged. The
    action is "none": exit status 4 asks the caller (the monitor workflow) to act.
    """
    from amlkit.monitoring import verdict

    if service is None:
        return None
    model = service.get("model", {})
    traffic = {service["service"]: 100}
    if "deployment" in getattr(current, "columns", ()):
        shares = current["deployment"].dropna().value_counts(normalize=True)
        traffic = {str(name): round(100 * share) for name, share in shares.items()} or traffic
    baseline: dict[str, float] = {}
    metrics = Path(str(model.get("source", ""))) / "performance_metrics.json"
    if metrics.is_file():
        baseline = json.loads(metrics.read_text(encoding="utf-8")).get("test", {})
    return verdict.Watched(
        model.get("name", "?"), model.get("version", "?"), traffic, "none", baseline
    )


def cmd_monitor(args: argparse.Namespace) -> int:
    """Monitor an endpoint's production data; exit 4 when the retraining rule fires."""
    from amlkit.config import DeploymentConfig
    from amlkit.data.preprocess import load_processed
    from amlkit.monitoring import monitor
    from amlkit.monitoring.collected import read_collected

    config = DeploymentConfig.load()
    endpoint = check_name("endpoint", args.endpoint or config.endpoint_name)
    service = newest_service(endpoint)
    dataset, version = training_data(service, args.dataset, args.data_version)
    processed = load_processed(dataset, version)
    requests = None
    if args.production:
        source = Path(args.production)
        current = read_collected(source)
    else:
        source = monitor.request_log_dir(endpoint)
        if not any(source.glob("*.jsonl")):
            raise FileNotFoundError(
                f"no request log for endpoint {endpoint!r} in {_rel(source)}; serve it "
                "(`amlkit serve`) and send requests, or pass --production FILE|FOLDER"
            )
        current = monitor.read_request_log(source)
        requests = monitor.requests_frame(current)
    result = monitor.run_monitoring(
        current, processed, monitoring_config=config.monitoring, requests=requests
    )
    html, summary_json = monitor.write_monitoring_report(
        result,
        processed,
        monitor.report_dir(endpoint),
        watched=watched(service, current),
        title=f"{endpoint}: monitoring report",
    )
    summary: dict[str, Any] = {
        "endpoint": endpoint,
        "production": _rel(source),
        "training_data": {"dataset": dataset, "version": processed.manifest.version},
        **result.summary(),
        "report": _rel(html),
        "report_json": _rel(summary_json),
    }
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(f"{endpoint}: {summary['verdict']}")
        print(f"  production     {summary['production']}  ({summary['rows']} rows)")
        print(f"  training data  {dataset} {processed.manifest.version}")
        print(f"  shifted        {summary['shifted_significantly']}")
        print(f"  report         {summary['report']}")
    return EXIT_RETRAIN if result.decision.retrain else 0


def add_parser(sub: Any) -> None:
    """Add ``monitor`` to the ``amlkit`` subparsers ``sub``."""
    parser = sub.add_parser(
        "monitor",
        help="monitor an endpoint's production data; exit 4 when retraining is due",
        description="Compare an endpoint's production data with its model's training data "
        "(drift, prediction drift, data quality, usage), write the HTML report and its JSON "
        "twin under .amlkit/endpoints/<endpoint>/monitoring/ and print the verdict.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--endpoint", help="endpoint name (default: deployment_config.json's)")
    parser.add_argument(
        "--production", metavar="FILE|FOLDER", help="collected production data (see below)"
    )
    parser.add_argument("--dataset", help="data set the deployed model was trained on")
    parser.add_argument("--data-version", help="its processed version (default: see below)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(func=cmd_monitor)
