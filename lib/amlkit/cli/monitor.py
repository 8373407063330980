"""The ``amlkit monitor`` command: watch a deployed model's production data, decide on retraining.

It reads the endpoint's request log (or files of collected production data), compares the
rows of each model version that answered with the data that version was trained on
(:func:`amlkit.monitoring.monitor.run_monitoring_by_version`), writes the report next to the
request log (:func:`amlkit.monitoring.monitor.write_monitoring_report`) and prints the
verdict. The exit status says what to do: 0 nothing, 4 retrain (the rule of
deployment_config.json's ``monitoring.retraining`` fired), 2 a missing prerequisite or a
production file without a model input. The scheduled monitoring workflow
(.github/workflows/monitor.yml) opens an issue on 4.

Like the rest of the CLI, this module imports only the standard library at start; pandas and
the monitoring package load when the command runs.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from amlkit import paths
from amlkit.cli.serving import _rel
from amlkit.names import check_name

logger = logging.getLogger(__name__)

EXIT_RETRAIN = 4

EPILOG = """\
production data:
  Without --production, the endpoint's request log (.amlkit/endpoints/<endpoint>/logs/,
  written by `amlkit serve`). With it, a CSV, Parquet or JSON-lines file, or a folder of
  them (Azure ML data collector output: model_inputs, joined with model_outputs).
training data:
  Each model version that answered rows (the request log names it per row) is compared
  with the processed version it was trained on, found in the registry
  (models/trained_models/) or a packaged service (models/deployed_models/); a window that
  several versions served gets one section per version. Rows that name no version (older
  logs, --production files) are taken as the model of the endpoint's newest packaged
  service, with a warning. --dataset and --data-version name the data for all versions
  (default data set: data_config.json's default_dataset, latest version).
streaming (--streaming):
  For production files larger than memory (Parquet or CSV, or a folder of them): data drift
  only, each feature counted chunk by chunk in the bins of the training data's stored
  profile (baseline_profile.json, no training rows read); 10M rows in under 1 GiB. Prints
  the drifted features and writes the table under .amlkit/endpoints/<endpoint>/monitoring/
  streaming/. Quality, prediction drift and the retraining rule need the in-memory run.
exit status:
  0 no retraining needed (with --streaming: always, drift is reported); 4 the retraining
  rule fired; 2 missing data or bad arguments.
"""


def packaged_services(endpoint: str | None = None) -> list[dict[str, Any]]:
    """Return the packaged services' service_metadata.json, oldest first.

    Each has its model's metadata under ``model_metadata`` and its folder under ``folder``;
    ``endpoint`` keeps only that endpoint's services.
    """
    services = []
    for meta in paths.deployed_models_dir().glob("*/service_metadata.json"):
        info = json.loads(meta.read_text(encoding="utf-8"))
        model_meta = meta.parent / "model" / "model_metadata.json"
        if endpoint not in (None, info.get("endpoint_name")) or not model_meta.is_file():
            continue
        info["model_metadata"] = json.loads(model_meta.read_text(encoding="utf-8"))
        info["folder"] = str(meta.parent)
        services.append(info)
    return sorted(services, key=lambda info: str(info.get("created", "")))


def newest_service(endpoint: str) -> dict[str, Any] | None:
    """Return the endpoint's newest service_metadata.json (its model's under ``model_metadata``).

    None when the endpoint has no packaged service.
    """
    services = packaged_services(endpoint)
    return services[-1] if services else None


def training_data(
    model_metadata: dict[str, Any] | None, dataset: str | None, version: str | None
) -> tuple[str, str]:
    """Return the (dataset, processed version) to compare a model version's rows with.

    Explicit arguments win; then the data the model was trained on (its
    ``model_metadata.json``); then data_config.json's default data set, latest version.
    """
    if dataset is None and version is None and model_metadata is not None:
        data = model_metadata.get("data", {})
        if data.get("dataset") and data.get("version"):
            return data["dataset"], data["version"]
    from amlkit.config import DataConfig

    return dataset or DataConfig.load().default_dataset, version or "latest"


def find_version(name: str, version: str) -> tuple[dict[str, Any], Path] | None:
    """Return a model version's metadata and folder: from the registry, else a packaged service.

    None when neither holds it.
    """
    from amlkit.registry import store

    try:
        found = store.get_version(name, version)
        return found.metadata.model_dump(mode="json"), found.path
    except (store.ModelNotFoundError, store.ModelIntegrityError, ValueError) as exc:
        logger.info("%s version %s not read from the registry: %s", name, version, exc)
    for info in reversed(packaged_services()):
        meta = info["model_metadata"]
        if str(meta.get("name")) == name and str(meta.get("version")) == version:
            return meta, Path(info["folder"]) / "model"
    return None


def references(
    current: Any, service: dict[str, Any] | None, dataset: str | None, version: str | None
) -> dict[Any, Any]:
    """Return the reference of every model version that answered rows of ``current``.

    Each version is compared with the data it was trained on (``--dataset`` and
    ``--data-version`` override it for all); rows that name no version are the newest
    packaged service's model's (:func:`amlkit.monitoring.served.assign_version` says so).

    Raises:
        ValueError: a version is neither registered nor packaged, and no data was named.
    """
    from amlkit.data.preprocess import load_processed
    from amlkit.monitoring import served

    groups: dict[Any, Any] = {served.UNLOGGED: ()}  # no rows: the service's model, if any
    groups = served.served_versions(current) or groups
    loaded: dict[tuple[str, str], Any] = {}
    out = {}
    for key, rows in groups.items():
        found = None
        if key == served.UNLOGGED:
            if service is not None:
                found = service["model_metadata"], Path(service["folder"]) / "model"
        elif (
            (found := find_version(str(key[0]), str(key[1]))) is None
            and dataset is None
            and version is None
        ):
            raise ValueError(
                f"{served.label(key)} answered {len(rows)} of the rows, but it is neither "
                f"registered ({_rel(paths.trained_models_dir())}) nor packaged "
                f"({_rel(paths.deployed_models_dir())}), so the data it was trained on is not "
                "known; restore it, or name that data with --dataset and --data-version"
            )
        data = training_data(found[0] if found else None, dataset, version)
        if data not in loaded:
            loaded[data] = load_processed(*data)
        metrics = found[1] / "performance_metrics.json" if found else None
        baseline = {}
        if metrics is not None and metrics.is_file():
            baseline = json.loads(metrics.read_text(encoding="utf-8")).get("test", {})
        out[key] = served.Reference(loaded[data], key[0], key[1], baseline=baseline)
    return out


def watched(result: Any, service: dict[str, Any] | None) -> Any:
    """Return what the report says it watched: the versions that served and the traffic split.

    The split is the one seen in the production rows' ``deployment`` field when logged, else
    the endpoint's newest packaged ``service`` at 100%. The action is "none": exit status 4
    asks the caller (the monitor workflow) to act.
    """
    from amlkit.monitoring import verdict

    current, served = result.current, result.served
    traffic = {service["service"]: 100} if service else {}
    if "deployment" in current.columns:
        shares = current["deployment"].dropna().value_counts(normalize=True)
        traffic = {str(name): round(100 * share) for name, share in shares.items()} or traffic
    versions = [str(entry["version"]) for entry in served if entry["version"] is not None]
    if not versions:
        return None
    label = versions[0] if len(versions) == 1 else f"{', '.join(versions[:-1])} and {versions[-1]}"
    baseline = dict(result.reference.baseline) if result.reference else {}
    return verdict.Watched(served[0]["model"] or "?", label, traffic, "none", baseline)


def cmd_monitor(args: argparse.Namespace) -> int:
    """Monitor an endpoint's production data; exit 4 when the retraining rule fires."""
    from amlkit.config import DeploymentConfig
    from amlkit.monitoring import collected, monitor, served

    config = DeploymentConfig.load()
    # default: the endpoint of the data set's model (--dataset, else the default data set)
    endpoint = check_name("endpoint", args.endpoint or config.endpoint_for(dataset=args.dataset))
    service = newest_service(endpoint)
    if args.streaming:
        return monitor_streaming(args, config, endpoint, service)
    requests = None
    if args.production:
        source = Path(args.production)
        current = collected.read_collected(source)
    else:
        source = monitor.request_log_dir(endpoint)
        if not any(source.glob("*.jsonl")):
            raise FileNotFoundError(
                f"no request log for endpoint {endpoint!r} in {_rel(source)}; serve it "
                "(`amlkit serve`) and send requests, or pass --production FILE|FOLDER"
            )
        current = monitor.read_request_log(source)
        requests = monitor.requests_frame(current)
    if service is not None:
        model = service.get("model", {})
        why = f"the model of {service['service']}, the endpoint's newest packaged service"
        current = served.assign_version(current, model.get("name"), model.get("version"), why)
    chosen = references(current, service, args.dataset, args.data_version)
    if args.production:
        for key, reference in chosen.items():
            features = list(reference.processed.manifest.feature_types)
            collected.require_inputs(current, features, source=source, model=served.label(key))
    result = monitor.run_monitoring_by_version(
        current, chosen, monitoring_config=config.monitoring, requests=requests
    )
    main = (result.reference or next(iter(chosen.values()))).processed
    html, summary_json = monitor.write_monitoring_report(
        result,
        main,
        monitor.report_dir(endpoint),
        watched=watched(result, service),
        title=f"{endpoint}: monitoring report",
    )
    summary: dict[str, Any] = {
        "endpoint": endpoint,
        "production": _rel(source),
        "training_data": {"dataset": main.manifest.dataset, "version": main.manifest.version},
        **result.summary(),
        "report": _rel(html),
        "report_json": _rel(summary_json),
    }
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(f"{endpoint}: {summary['verdict']}")
        print(f"  production     {summary['production']}  ({summary['rows']} rows)")
        for entry in result.served:
            data = entry["training_data"]
            who = served.label(served.version_key(entry["model"], entry["version"]))
            print(f"  served         {who}: {entry['rows']} rows")
            print(f"  training data  {data['dataset']} {data['version']}")
        print(f"  shifted        {summary['shifted_significantly']}")
        print(f"  report         {summary['report']}")
    return EXIT_RETRAIN if result.decision.retrain else 0


def monitor_streaming(
    args: argparse.Namespace, config: Any, endpoint: str, service: dict[str, Any] | None
) -> int:
    """Stream ``--production`` against the training data's profile; print and write the drift."""
    from datetime import UTC, datetime

    from amlkit.io import write_json_atomic
    from amlkit.monitoring import drift_stream, monitor

    if not args.production:
        raise ValueError(
            "--streaming reads a production file or folder (Parquet or CSV): pass "
            "--production FILE|FOLDER, or leave out --streaming to read the request log"
        )
    model_metadata = service["model_metadata"] if service else None
    dataset, version = training_data(model_metadata, args.dataset, args.data_version)
    profile, manifest = drift_stream.read_profile(dataset, version)
    table, rows = drift_stream.drift_of_file(
        args.production,
        profile,
        manifest.feature_types,
        config.monitoring.thresholds,
        bins=config.monitoring.bins,
    )
    drifted = table.loc[table["drifted"], ["column", "metric", "value", "threshold"]]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = monitor.report_dir(endpoint) / "streaming" / f"drift-{stamp}.json"
    summary: dict[str, Any] = {
        "endpoint": endpoint,
        "production": _rel(Path(args.production)),
        "rows": rows,
        "training_data": {"dataset": manifest.dataset, "version": manifest.version},
        "drifted_features": drifted["column"].tolist(),
        "features": len(table),
        "drift_json": _rel(out),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, {**summary, "drift": json.loads(table.to_json(orient="records"))})
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0
    print(f"{endpoint}: {len(drifted)} of {len(table)} features drifted (streamed)")
    print(f"  production     {summary['production']}  ({rows} rows)")
    print(f"  training data  {manifest.dataset} {manifest.version} (its baseline profile)")
    for row in drifted.itertuples():
        print(f"  drifted        {row.column}: {row.metric} {row.value:.3f} > {row.threshold}")
    print(f"  drift table    {summary['drift_json']}")
    return 0


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
    parser.add_argument(
        "--endpoint",
        help="endpoint name (default: deployment_config.json's endpoint_name for the data set, "
        "e.g. amlkit-penguins)",
    )
    parser.add_argument(
        "--production", metavar="FILE|FOLDER", help="collected production data (see below)"
    )
    parser.add_argument("--dataset", help="data set the deployed model was trained on")
    parser.add_argument("--data-version", help="its processed version (default: see below)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument(
        "--streaming",
        action="store_true",
        help="data drift of a --production file larger than memory, from the stored profile",
    )
    parser.set_defaults(func=cmd_monitor)
