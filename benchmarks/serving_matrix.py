"""Parity and speed of the endpoint, by model family, against MLServer and `mlflow models serve`.

Run: .venv/bin/python benchmarks/serving_matrix.py [--seconds 2] [--rounds 2]
     [--datasets penguins,seattle_weather,cars] [--families linear,random_forest,...]
     [--preprocessing notebook04,plain] [--servers amlkit,mlserver,mlflow] [--out PATH]

For each bundled data set (penguins and seattle_weather: classification, the second with a
date column; cars: regression on miles per gallon), notebooks 01 and 03 ingest and split the
rows in a temporary project root. Each model family (LogisticRegression or Ridge, random
forest, extra trees, gradient boosting, histogram gradient boosting; scikit-learn's defaults,
seeded, one job) is fitted on the training split behind one of two preprocessings:

- ``notebook04``: notebook 04's default ColumnTransformer (the project's label cleaning,
  "missing" for absent categories, median imputation with indicators, datetime parts);
- ``plain``: the steps a data scientist writes first: SimpleImputer (median) and
  StandardScaler for numbers, SimpleImputer (most frequent) and OneHotEncoder for labels;
  a date goes through the project's ``DatetimeFeatures`` (scikit-learn has no date step).

The fitted pipeline is registered with the project's registry
(:func:`amlkit.registry.store.register_sklearn_model`, as notebook 04 does) and packaged with
:func:`amlkit.serving.package.package_service` (ONNX when its parity check on the test split
passes). The table reports the backend packaging chose and its parity figure, or its reason.

The same fitted pipeline is then served three ways at once, each with one worker process:
amlkit's endpoint (azmlinfsrv on the packaged folder), MLServer 1.7's scikit-learn runtime
(the pipeline saved with joblib; V2 inference protocol, columns sent with the pandas codec;
MLServer runs in an environment of its own, see ``peers.py``) and `mlflow models serve
--env-manager local` on the registered version (an MLflow model). Each server's answers to
the 100 request rows are checked against the pipeline's own predictions, then the servers
take turns in ``--rounds`` short windows (``--seconds`` in all per server and request size)
so a shared machine's load falls on all alike. 1-row and 100-row requests come from the test
split; the client is serving_benchmark's keep-alive one.

Prints one table (throughput in requests per second, p50 in ms) and writes it as JSON and
Markdown to ``--out`` (``.json`` and ``.md`` beside each other, rewritten after each model).
The whole matrix (30 models) took 58 minutes on a shared 2-core machine under a load of 7 to
16, most of it the three servers starting for each model; ``--datasets``, ``--families`` and
``--preprocessing`` pick a part of it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from performance_estimation_benchmark import preprocessor as notebook04_preprocessor
from serving_benchmark import Client, measure, mlflow_serve, summary, wait_http
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from amlkit.training.transformers import DatetimeFeatures

REPO = Path(__file__).resolve().parents[1]
DATASETS = ("penguins", "seattle_weather", "cars")
SERVERS = ("amlkit", "mlserver", "mlflow")
SIZES = {"1 row": 1, "100 rows": 100}
SEED = 0

# family: (classifier, regressor), scikit-learn's defaults, seeded, one job
FAMILIES: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
    "linear": (lambda: LogisticRegression(max_iter=2000), lambda: Ridge()),
    "random_forest": (
        lambda: RandomForestClassifier(random_state=SEED, n_jobs=1),
        lambda: RandomForestRegressor(random_state=SEED, n_jobs=1),
    ),
    "extra_trees": (
        lambda: ExtraTreesClassifier(random_state=SEED, n_jobs=1),
        lambda: ExtraTreesRegressor(random_state=SEED, n_jobs=1),
    ),
    "gradient_boosting": (
        lambda: GradientBoostingClassifier(random_state=SEED),
        lambda: GradientBoostingRegressor(random_state=SEED),
    ),
    "hist_gradient_boosting": (
        lambda: HistGradientBoostingClassifier(random_state=SEED),
        lambda: HistGradientBoostingRegressor(random_state=SEED),
    ),
}


def plain_preprocessor(feature_types: dict[str, str]) -> ColumnTransformer:
    """The preprocessing a data scientist writes first, from scikit-learn's own steps."""

    def of(*kinds: str) -> list[str]:
        return [c for c, k in feature_types.items() if k in kinds]

    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    labels = Pipeline(
        [
            ("impute", SimpleImputer(strategy="most_frequent")),
            ("onehot", OneHotEncoder(handle_unknown="ignore")),
        ]
    )
    dates = Pipeline([("parts", DatetimeFeatures()), ("scale", StandardScaler())])
    groups = [
        ("num", numeric, of("numeric", "integer")),
        ("cat", labels, of("categorical", "boolean")),
        ("date", dates, of("datetime")),
    ]
    return ColumnTransformer([g for g in groups if g[2]])


def notebook04(feature_types: dict[str, str]) -> ColumnTransformer:
    """Notebook 04's default preprocessing, with its feature names."""
    return notebook04_preprocessor(feature_types).set_params(verbose_feature_names_out=False)


PREPROCESSING: dict[str, Callable[[dict[str, str]], ColumnTransformer]] = {
    "notebook04": notebook04,
    "plain": plain_preprocessor,
}


@dataclass
class Data:
    """A processed data set: its splits, features, target and task."""

    name: str
    processed: Any  # amlkit.data.preprocess.Processed

    @property
    def task(self) -> str:
        return str(self.processed.manifest.task)

    @property
    def target(self) -> str:
        return str(self.processed.manifest.target)

    @property
    def features(self) -> list[str]:
        return list(self.processed.manifest.feature_types)

    def requests(self) -> tuple[list[dict[str, Any]], pd.DataFrame]:
        """Return 100 request records from the test split (JSON values) and them as a frame."""
        test = self.processed.test[self.features]
        frame = pd.concat([test] * (100 // len(test) + 1), ignore_index=True).head(100)
        records = json.loads(frame.to_json(orient="records", date_format="iso"))
        return records, pd.DataFrame.from_records(records, columns=self.features)


def prepare_data(names: list[str]) -> dict[str, Data]:
    """Ingest and split each data set with notebooks 01 and 03 in the current project root."""
    from amlkit.data import preprocess
    from amlkit.pipeline import runner

    out = {}
    for name in names:
        started = time.perf_counter()
        runner.run_pipeline(["01", "03"], {"dataset": name}, progress=False)
        out[name] = Data(name, preprocess.load_processed(name))
        print(f"[{name}] ingested and split in {time.perf_counter() - started:.0f}s", flush=True)
    return out


def fit_and_package(data: Data, prep: str, family: str) -> tuple[Any, Path, Path, dict[str, Any]]:
    """Fit, register and package one pipeline; return (pipeline, version, service, metadata)."""
    from amlkit.registry import store
    from amlkit.serving.package import package_service, service_info
    from amlkit.training import evaluate

    types = dict(data.processed.manifest.feature_types)
    classifier, regressor = FAMILIES[family]
    estimator = classifier() if data.task == "classification" else regressor()
    pipeline = Pipeline([("preprocess", PREPROCESSING[prep](types)), ("model", estimator)])
    train, test = data.processed.train, data.processed.test
    X, y = train[data.features], train[data.target]
    pipeline.fit(X, y)
    name = f"{data.name}-{prep}-{family}".replace("_", "-")
    metrics = {
        "test": evaluate.evaluate_model(pipeline, test[data.features], test[data.target], data.task)
    }
    version = store.register_sklearn_model(
        pipeline,
        name=name,
        task=data.task,
        target=data.target,
        feature_types=types,
        classes=pipeline.classes_.tolist() if data.task == "classification" else None,
        data=data.processed.manifest.ref(),
        metrics=metrics,
        hyperparameters={"family": family, "preprocessing": prep},
        input_example=X.head(5),
        description=f"serving matrix: {type(estimator).__name__} behind {prep} on {data.name}",
    )
    folder = package_service(version.path, service=name, parity_rows=test)
    return pipeline, version.path, folder, service_info(folder)


def parity_figure(info: dict[str, Any]) -> str:
    """The packaging's parity figure (largest difference, label mismatches) or its reason."""
    parity = info.get("parity") or {}
    if info.get("backend") == "onnx":
        diff = parity.get("max_probability_diff", parity.get("max_abs_diff"))
        return f"max diff {diff:.1e} on {parity.get('rows')} rows"
    return str(info.get("backend_reason") or "no reason recorded")


# --- MLServer -----------------------------------------------------------------------------


def mlserver_inputs(records: list[dict[str, Any]], types: dict[str, str]) -> dict[str, Any]:
    """A V2 inference request carrying ``records`` column by column (MLServer's pandas codec)."""
    inputs = []
    for column, kind in types.items():
        values = [r.get(column) for r in records]
        if kind in ("numeric", "integer"):
            spec = {"datatype": "FP64", "data": values}
        else:  # labels and ISO dates travel as strings; None stays a missing value
            spec = {"datatype": "BYTES", "data": values}
        inputs.append({"name": column, "shape": [len(values)], **spec})
    return {"parameters": {"content_type": "pd"}, "inputs": inputs}


def mlserver_folder(pipeline: Any, folder: Path, ports: tuple[int, int, int]) -> Path:
    """Write MLServer's settings.json, model-settings.json and model.joblib into ``folder``."""
    import joblib

    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(pipeline, folder / "model.joblib")
    http, grpc, metrics = ports
    settings = {"debug": False, "host": "127.0.0.1", "http_port": http, "grpc_port": grpc}
    settings |= {"metrics_port": metrics, "parallel_workers": 0}
    (folder / "settings.json").write_text(json.dumps(settings), encoding="utf-8")
    model = {"name": "model", "implementation": "mlserver_sklearn.SKLearnModel"}
    model |= {"parameters": {"uri": "./model.joblib", "version": "v1"}}
    (folder / "model-settings.json").write_text(json.dumps(model), encoding="utf-8")
    return folder


@contextlib.contextmanager
def mlserver_serve(python: Path, folder: Path, port: int) -> Iterator[None]:
    """Run `mlserver start` (the peer's environment) on ``folder``; the model's amlkit
    transformers import from this checkout's lib/."""
    from peers import peer_env

    env = peer_env() | {"PYTHONPATH": str(REPO / "lib"), "OMP_NUM_THREADS": "1"}
    cmd = [str(python.parent / "mlserver"), "start", str(folder)]
    with open(folder / "mlserver.log", "wb") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
        try:
            try:
                wait_http(port, "/v2/models/model/ready", 120)
            except RuntimeError:
                tail = (folder / "mlserver.log").read_text(errors="replace")[-1500:]
                raise RuntimeError(f"MLServer did not start; its log ends:\n{tail}") from None
            yield
        finally:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=20)


# --- answers ------------------------------------------------------------------------------


def post_json(client: Client, body: Any) -> Any:
    """POST ``body`` through ``client``'s connection and return the parsed JSON answer."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", client.port, timeout=30)
    try:
        conn.request("POST", client.path, body=json.dumps(body).encode(), headers=client.headers)
        resp = conn.getresponse()
        payload = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"status {resp.status}: {payload[:500]!r}")
        return json.loads(payload)
    finally:
        conn.close()


def served_predictions(server: str, answer: Any) -> list[Any]:
    """The predictions in a server's answer."""
    if server == "mlserver":
        return list(answer["outputs"][0]["data"])
    if server == "mlflow":
        return list(answer["predictions"])
    return [row["prediction"] if isinstance(row, dict) else row for row in answer["predictions"]]


def check_answers(server: str, answer: Any, expected: np.ndarray, task: str) -> None:
    """Raise when a server's predictions for the request rows differ from the pipeline's."""
    got = served_predictions(server, answer)
    if task == "regression":
        worst = float(np.max(np.abs(np.asarray(got, dtype=float) - expected.astype(float))))
        if worst > 1e-4:
            raise RuntimeError(f"{server} predictions differ from the pipeline's by {worst:.3g}")
    else:
        wrong = int(sum(str(a) != str(b) for a, b in zip(got, expected, strict=True)))
        if wrong:
            raise RuntimeError(f"{server} predicts another label on {wrong} of {len(got)} rows")


@contextlib.contextmanager
def amlkit_serve(folder: Path, port: int) -> Iterator[Any]:
    """Run amlkit's endpoint (azmlinfsrv, one worker) on a packaged service folder."""
    from amlkit.serving.server import serve

    with serve(folder, port=port, workers=1) as endpoint:
        yield endpoint


def enter_together(
    stack: contextlib.ExitStack, contexts: dict[str, contextlib.AbstractContextManager[Any]]
) -> dict[str, Any]:
    """Enter the servers' contexts in threads (they start at once); ``stack`` exits them."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(contexts)) as pool:
        futures = {name: pool.submit(cm.__enter__) for name, cm in contexts.items()}
    entered, failures = {}, []
    for name, future in futures.items():
        if future.exception() is None:
            stack.push(contexts[name].__exit__)
            entered[name] = future.result()
        else:
            failures.append(f"{name}: {future.exception()}")
    if failures:
        raise RuntimeError("a server did not start: " + "; ".join(failures))
    return entered


# --- one cell of the matrix ---------------------------------------------------------------


def run_cell(
    data: Data, prep: str, family: str, args: argparse.Namespace, work: Path
) -> dict[str, Any]:
    """Fit, package and serve one pipeline three ways; return its row of the table."""
    from amlkit.serving.server import free_port

    started = time.perf_counter()
    pipeline, version, folder, info = fit_and_package(data, prep, family)
    row: dict[str, Any] = {"dataset": data.name, "preprocessing": prep, "family": family}
    row |= {"model": type(pipeline[-1]).__name__, "backend": info.get("backend")}
    row |= {"parity": parity_figure(info), "parity_detail": info.get("parity") or {}}
    records, frame = data.requests()
    expected = pipeline.predict(frame)
    types = dict(data.processed.manifest.feature_types)
    wraps: dict[str, Callable[[list[dict[str, Any]]], Any]] = {
        "amlkit": lambda r: r,
        "mlserver": lambda r: mlserver_inputs(r, types),
        "mlflow": lambda r: {"dataframe_records": r},
    }
    contexts: dict[str, contextlib.AbstractContextManager[Any]] = {}
    ports = {server: free_port() for server in args.servers}
    for server in args.servers:
        if server == "amlkit":
            contexts[server] = amlkit_serve(folder, ports[server])
        elif server == "mlserver":
            more = (ports[server], free_port(), free_port())
            cell = mlserver_folder(pipeline, work / f"mlserver-{folder.name}", more)
            contexts[server] = mlserver_serve(args.mlserver_python, cell, ports[server])
        else:
            contexts[server] = mlflow_serve(version, ports[server], 1, work)
    row["prepare_s"] = time.perf_counter() - started
    with contextlib.ExitStack() as stack:
        entered = enter_together(stack, contexts)
        row["start_s"] = time.perf_counter() - started - row["prepare_s"]
        json_only = {"Content-Type": "application/json"}
        clients = {
            "amlkit": lambda: Client(ports["amlkit"], "/score", entered["amlkit"].headers()),
            "mlserver": lambda: Client(ports["mlserver"], "/v2/models/model/infer", json_only),
            "mlflow": lambda: Client(ports["mlflow"], "/invocations", json_only),
        }
        clients = {server: clients[server]() for server in args.servers}
        for server, client in clients.items():
            check_answers(server, post_json(client, wraps[server](records)), expected, data.task)
        lat: dict[tuple[str, str], list[float]] = {}
        errors: dict[tuple[str, str], int] = {}
        bodies = {
            (server, size): json.dumps(wraps[server](records[:n])).encode()
            for server in clients
            for size, n in SIZES.items()
        }
        window = args.seconds / args.rounds
        for _ in range(args.rounds):
            for size in SIZES:
                for server, client in clients.items():
                    key = (server, size)
                    errs = measure(client, bodies[key], window, lat.setdefault(key, []))
                    errors[key] = errors.get(key, 0) + errs
    for (server, size), values in lat.items():
        result = summary(values, errors[(server, size)], args.seconds)
        tag = size.split()[0]
        row[f"{server}_{tag}_rps"] = result["rps"]
        row[f"{server}_{tag}_p50_ms"] = result["p50_ms"]
        row[f"{server}_{tag}_errors"] = result["errors"]
    for tag in ("1", "100"):
        ours, theirs = row.get(f"amlkit_{tag}_rps"), row.get(f"mlserver_{tag}_rps")
        row[f"ratio_{tag}"] = ours / theirs if ours and theirs else None
    row["cell_seconds"] = time.perf_counter() - started
    return row


# --- the table ----------------------------------------------------------------------------

COLUMNS = [
    ("data set", "dataset", "{}"),
    ("preprocessing", "preprocessing", "{}"),
    ("family", "family", "{}"),
    ("backend", "backend", "{}"),
    ("parity (or why not ONNX)", "parity", "{}"),
    ("amlkit 1-row req/s", "amlkit_1_rps", "{:,.0f}"),
    ("amlkit 1-row p50 ms", "amlkit_1_p50_ms", "{:.2f}"),
    ("MLServer 1-row req/s", "mlserver_1_rps", "{:,.0f}"),
    ("mlflow 1-row req/s", "mlflow_1_rps", "{:,.0f}"),
    ("amlkit 100-row req/s", "amlkit_100_rps", "{:,.0f}"),
    ("MLServer 100-row req/s", "mlserver_100_rps", "{:,.0f}"),
    ("mlflow 100-row req/s", "mlflow_100_rps", "{:,.0f}"),
    ("amlkit/MLServer 1 row", "ratio_1", "{:.1f}x"),
    ("amlkit/MLServer 100 rows", "ratio_100", "{:.1f}x"),
]


def cells(row: dict[str, Any]) -> list[str]:
    out = []
    for _, key, fmt in COLUMNS:
        value = row.get(key)
        missing = value is None or (isinstance(value, float) and math.isnan(value))
        out.append("-" if missing else fmt.format(value))
    return out


def markdown(rows: list[dict[str, Any]]) -> str:
    """The table as GitHub Markdown (a refusal reason is cut to its first 120 characters)."""
    lines = ["| " + " | ".join(title for title, _, _ in COLUMNS) + " |"]
    lines.append("|" + "|".join("---" for _ in COLUMNS) + "|")
    for row in rows:
        values = [v.replace("|", "\\|")[:120] for v in cells(row)]
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


def print_table(rows: list[dict[str, Any]]) -> None:
    """Print the figures, then each parity figure or refusal reason in full below."""
    keep = [i for i, (_, key, _) in enumerate(COLUMNS) if key != "parity"]
    heads = [COLUMNS[i][0] for i in keep]
    table = [[cells(row)[i] for i in keep] for row in rows]
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(heads)]
    print("  ".join(h.rjust(w) for h, w in zip(heads, widths, strict=True)))
    for t in table:
        print("  ".join(v.rjust(w) for v, w in zip(t, widths, strict=True)))
    for row in rows:
        print(f"- {row['dataset']} / {row['preprocessing']} / {row['family']}: {row['parity']}")


def write_table(args: argparse.Namespace, rows: list[dict[str, Any]], elapsed: float) -> None:
    """Write the rows to ``args.out`` as JSON (with the run's settings) and as Markdown."""
    meta = {"seconds": args.seconds, "rounds": args.rounds, "servers": args.servers}
    meta |= {"elapsed_s": round(elapsed, 1), "load_average": os.getloadavg()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(
        json.dumps({"run": meta, "rows": rows}, indent=2, default=str), encoding="utf-8"
    )
    args.out.with_suffix(".md").write_text(markdown(rows), encoding="utf-8")


def listed(choices: tuple[str, ...] | list[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        picked = [t.strip() for t in text.split(",") if t.strip()]
        unknown = [t for t in picked if t not in choices]
        if unknown or not picked:
            raise argparse.ArgumentTypeError(
                f"unknown {unknown or 'empty list'}; choose from {', '.join(choices)}"
            )
        return picked

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per server and size")
    parser.add_argument("--rounds", type=int, default=2, help="turns the seconds are split in")
    parser.add_argument(
        "--datasets", type=listed(DATASETS), default=list(DATASETS), help="comma-separated"
    )
    parser.add_argument(
        "--families",
        type=listed(list(FAMILIES)),
        default=list(FAMILIES),
        help=f"comma-separated, of {', '.join(FAMILIES)}",
    )
    parser.add_argument(
        "--preprocessing",
        type=listed(list(PREPROCESSING)),
        default=list(PREPROCESSING),
        help="comma-separated, of notebook04 and plain",
    )
    parser.add_argument(
        "--servers",
        type=listed(SERVERS),
        default=list(SERVERS),
        help="comma-separated; MLServer is left out, with a note, when its environment "
        "cannot be built",
    )
    parser.add_argument("--out", type=Path, help="write the table to OUT.json and OUT.md")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the matrix; return its rows."""
    args = parse_args(argv)
    began = time.perf_counter()
    print(f"load average before: {tuple(round(x, 2) for x in os.getloadavg())}", flush=True)
    args.mlserver_python = None
    if "mlserver" in args.servers:
        from peers import peer_python

        try:
            args.mlserver_python = peer_python("mlserver")
        except RuntimeError as exc:
            print(f"MLServer left out: {exc}", flush=True)
            args.servers = [s for s in args.servers if s != "mlserver"]
    root = Path(tempfile.mkdtemp(prefix="amlkit-matrix-"))
    shutil.copytree(REPO / "config", root / "config")
    (root / "work").mkdir()
    previous = os.environ.get("AMLKIT_ROOT")
    os.environ["AMLKIT_ROOT"] = str(root)
    rows = []
    try:
        datasets = prepare_data(args.datasets)
        for name in args.datasets:
            for prep in args.preprocessing:
                for family in args.families:
                    try:
                        row = run_cell(datasets[name], prep, family, args, root / "work")
                    except Exception as exc:  # one model's failure leaves the others' figures
                        row = {"dataset": name, "preprocessing": prep, "family": family}
                        row |= {"backend": "failed", "parity": f"{type(exc).__name__}: {exc}"}
                        print(f"[{name} / {prep} / {family}] failed: {exc}", flush=True)
                        rows.append(row)
                        continue
                    rows.append(row)
                    print(
                        f"[{name} / {prep} / {family}] {row['backend']}, "
                        f"amlkit {row.get('amlkit_1_rps', 0):.0f} req/s at 1 row, "
                        f"MLServer {row.get('mlserver_1_rps') or 0:.0f}, "
                        f"mlflow {row.get('mlflow_1_rps') or 0:.0f} "
                        f"(fit+package {row['prepare_s']:.0f}s, servers up {row['start_s']:.0f}s, "
                        f"in all {row['cell_seconds']:.0f}s)",
                        flush=True,
                    )
                    if args.out:  # as it goes, so a run cut short keeps what it measured
                        write_table(args, rows, time.perf_counter() - began)
    finally:
        if previous is None:
            os.environ.pop("AMLKIT_ROOT", None)
        else:
            os.environ["AMLKIT_ROOT"] = previous
        shutil.rmtree(root, ignore_errors=True)
    elapsed = time.perf_counter() - began
    print()
    print_table(rows)
    print(f"\n{len(rows)} models in {elapsed / 60:.1f} min; servers: {', '.join(args.servers)}")
    print(f"load average after: {tuple(round(x, 2) for x in os.getloadavg())}")
    if args.out:
        write_table(args, rows, elapsed)
        print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.md')}")
    return rows


if __name__ == "__main__":
    main()
