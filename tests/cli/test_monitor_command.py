"""`amlkit monitor`: the verdict on an endpoint's production data, as CD and cron jobs read it."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
from typing import Any

import pandas as pd
import pytest

from amlkit import paths
from amlkit.monitoring import monitor
from amlkit.serving.requestlog import RequestLog

ENDPOINT = "amlkit-penguins"


@pytest.fixture
def penguins_project(processed_penguins):
    """A project root holding one processed penguins version (no model, no endpoint)."""
    return processed_penguins


def _rows(processed, *, drifted: bool) -> pd.DataFrame:
    rows = pd.concat([processed.validation, processed.test, processed.validation])
    rows = rows.reset_index(drop=True)
    if drifted:
        for column in ("bill_length_mm", "flipper_length_mm", "body_mass_g", "bill_depth_mm"):
            rows[column] = rows[column] * 1.6
    return rows


def _amlkit(*args: str) -> subprocess.CompletedProcess:
    """Run the command as a user does, in this process (a subprocess costs seconds of imports).

    Its output is captured as a user's terminal sees it: what it prints and what it logs.
    """
    from amlkit.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code if isinstance(exc.code, int) else 2
    return subprocess.CompletedProcess(["amlkit", *args], code, out.getvalue(), err.getvalue())


def _monitor(*args: str) -> tuple[int, dict]:
    out = _amlkit("monitor", "--json", *args)
    assert out.returncode in (0, 4), out.stderr
    return out.returncode, json.loads(out.stdout)


def test_monitor_exits_4_and_writes_the_report_when_production_rows_drift(
    penguins_project, tmp_path
):
    drifted = tmp_path / "drifted.csv"
    _rows(penguins_project, drifted=True).to_csv(drifted, index=False)

    code, summary = _monitor("--production", str(drifted))

    assert code == 4
    assert summary["retrain"] is True
    assert summary["training_data"]["version"] == penguins_project.manifest.version
    assert len(summary["shifted_significantly"]) >= 3
    assert summary["verdict"].startswith("Retraining recommended:")
    report = paths.project_root() / summary["report"]
    assert report.is_file() and report.parent == monitor.report_dir(ENDPOINT) / "reports"
    assert (monitor.report_dir(ENDPOINT) / "index.html").is_file()


def test_monitor_exits_0_when_production_rows_look_like_the_training_data(
    penguins_project, tmp_path
):
    calm = tmp_path / "calm.parquet"
    _rows(penguins_project, drifted=False).to_parquet(calm)

    code, summary = _monitor("--production", str(calm))

    assert (code, summary["retrain"]) == (0, False)
    assert summary["rows"] == len(_rows(penguins_project, drifted=False))


def test_monitor_reads_the_azure_data_collector_folders_and_joins_the_outputs(
    penguins_project, tmp_path
):
    rows = _rows(penguins_project, drifted=True)
    features = list(penguins_project.manifest.feature_types)
    hour = tmp_path / "collected" / ENDPOINT / "blue"
    inputs, outputs = [], []
    for start in range(0, len(rows), 10):
        chunk = rows.iloc[start : start + 10]
        base = {"specversion": "1.0", "correlationid": f"c{start}", "time": "2025-01-01T00:00Z"}
        records = json.loads(chunk[features].to_json(orient="records"))
        inputs.append({**base, "data": records})
        outputs.append({**base, "data": [{"species": s} for s in chunk["species"]]})
    for kind, records in (("model_inputs", inputs), ("model_outputs", outputs)):
        folder = hour / kind / "2025" / "01" / "01" / "00"
        folder.mkdir(parents=True)
        lines = "".join(json.dumps(r) + "\n" for r in records)
        (folder / "part.jsonl").write_text(lines, encoding="utf-8")

    code, summary = _monitor("--production", str(tmp_path / "collected"))

    assert code == 4 and summary["rows"] == len(rows)
    # the outputs joined as predictions: the served species, distributed as in training
    assert summary["prediction_drift"] < 0.1


def _logged(i: int, row: pd.Series, features: list[str], **answered: Any) -> dict[str, Any]:
    """One scored row as the request log records it (``answered``: model, version, deployment)."""
    return {
        "request_id": f"r{i}",
        "row": 0,
        "time": f"2025-01-01T00:{i // 60:02d}:{i % 60:02d}+00:00",
        "latency_ms": 1.5,
        "status": 200,
        "error": None,
        "prediction": row["species"],
        "inputs": {name: row[name] for name in features},
        **answered,
    }


def test_monitor_reads_the_endpoints_request_log_by_default(penguins_project):
    rows = _rows(penguins_project, drifted=False)
    features = list(penguins_project.manifest.feature_types)
    log = RequestLog(monitor.request_log_dir(ENDPOINT), max_bytes=10_000_000, backup_count=1)
    records = [_logged(i, row, features) for i, row in rows.iterrows()]
    log.write(records)
    log.close()

    done = _amlkit("monitor")

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{ENDPOINT}: No action needed")
    assert f"({len(rows)} rows)" in done.stdout


def test_monitor_reads_a_request_log_with_a_torn_line_in_the_middle(penguins_project):
    rows = _rows(penguins_project, drifted=False)
    features = list(penguins_project.manifest.feature_types)
    log = RequestLog(monitor.request_log_dir(ENDPOINT), max_bytes=10_000_000, backup_count=1)
    for i, row in rows.iterrows():
        common = {"request_id": "same", "time": f"2025-01-01T00:{i // 60:02d}:{i % 60:02d}+00:00"}
        common |= {"latency_ms": 1.5, "status": 200}
        inputs = {name: [row[name]] for name in features}
        log.write_columns(common, 1, {"inputs": inputs, "prediction": [row["species"]]})
        if i == 10:  # the disk filled: the next line was cut short, and the one after glued on
            with open(log.path, "ab") as handle:
                handle.write(b'{"request_id":"same","time":"2025-01-01T00:00:11+00:00","lat')
    log.close()

    done = _amlkit("monitor", "--json")

    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["rows"] == len(rows) - 1  # the glued row is lost with the torn one
    assert summary["requests"] == len(rows) - 1  # one id reused: each request counts
    assert f"{log.path.name} line 12 is damaged" in done.stderr


def test_monitor_says_how_to_get_data_when_the_endpoint_has_no_request_log(penguins_project):
    done = _amlkit("monitor", "--endpoint", "never-served")

    assert done.returncode == 2
    assert "no request log for endpoint 'never-served'" in done.stderr


def test_monitor_compares_with_the_data_of_the_model_the_endpoint_serves(project):
    from amlkit import io, paths
    from amlkit.cli.monitor import newest_service, training_data

    for service, version, created in (("old", "v1", "2025-01-01"), ("new", "v2", "2025-02-01")):
        folder = paths.deployed_models_dir() / service
        io.write_json_atomic(
            folder / "service_metadata.json",
            {"service": service, "endpoint_name": ENDPOINT, "created": created},
        )
        io.write_json_atomic(
            folder / "model" / "model_metadata.json",
            {"data": {"dataset": "cars", "version": version, "sha256": "0"}},
        )

    served = newest_service(ENDPOINT)
    assert served is not None
    assert training_data(served["model_metadata"], None, None) == ("cars", "v2")
    assert newest_service("another-endpoint") is None
    assert training_data(None, None, None) == ("penguins", "latest")
    assert training_data(served["model_metadata"], "penguins", None) == ("penguins", "latest")


MODEL = "penguins-classification"


@pytest.fixture
def two_versions(root, processed_penguins_data, processed_subset, feature_preprocessor):
    """Version 1 trained on the processed penguins, version 2 on an 80-row subset of them.

    Both are registered; version 2, the newer, is packaged as the endpoint's service.
    Returns the two processed versions, version 1's first.
    """
    import shutil

    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline

    from amlkit.data import preprocess
    from amlkit.registry import store
    from amlkit.serving.package import package_service

    shutil.copytree(processed_penguins_data, root / "data")
    first = preprocess.load_processed("penguins")
    second = processed_subset(first, 80)
    features = list(first.manifest.feature_types)
    for number, (processed, accuracy) in enumerate(((first, 0.97), (second, 0.91)), start=1):
        model = Pipeline(
            [
                ("preprocess", feature_preprocessor(processed.manifest.feature_types)),
                ("model", RandomForestClassifier(n_estimators=5, random_state=0, n_jobs=1)),
            ]
        ).fit(processed.train[features], processed.train["species"])
        version = store.register_sklearn_model(
            model,
            name=MODEL,
            task="classification",
            target="species",
            feature_types=processed.manifest.feature_types,
            classes=sorted(processed.train["species"].unique()),
            data=processed.manifest.ref(),
            metrics={"test": {"accuracy": accuracy}},
            hyperparameters={},
            input_example=processed.train[features].head(3),
        )
        assert version.version == number
    package_service(version.path, service=ENDPOINT, fast_path=False)
    return first, second


def _log(processed, versions: list[int | None]) -> None:
    """Write the endpoint's request log: a request a row, answered by ``versions[i]``."""
    rows = _rows(processed, drifted=False).head(len(versions))
    features = list(processed.manifest.feature_types)
    log = RequestLog(monitor.request_log_dir(ENDPOINT), max_bytes=10_000_000, backup_count=1)
    records = []
    for i, (version, (_, row)) in enumerate(zip(versions, rows.iterrows(), strict=True)):
        answered = {"model_name": MODEL, "model_version": version} if version else {}
        answered |= {"deployment": "green" if version == 2 else "blue"} if version else {}
        records.append(_logged(i, row, features, **answered))
    log.write(records)
    log.close()


def test_monitor_compares_with_the_version_that_answered_not_the_newest_packaged(two_versions):
    first, second = two_versions  # version 2, trained on `second`, is the packaged service
    _log(first, [1] * 150)

    _, summary = _monitor()

    data = {"dataset": "penguins", "version": first.manifest.version}
    assert (
        summary["training_data"]
        == data
        != {"dataset": "penguins", "version": second.manifest.version}
    )
    twin = json.loads((paths.project_root() / summary["report_json"]).read_text())
    assert twin["reference_rows"] == len(first.train) != len(second.train)
    assert (twin["model"], str(twin["version"])) == (MODEL, "1")
    assert twin["performance"]["baseline"] == {"accuracy": 0.97}
    assert summary["served"] == [
        {"model": MODEL, "version": "1", "rows": 150, "training_data": data}
    ]
    assert "sections" not in twin


def test_monitor_gives_each_version_that_served_its_own_section(two_versions):
    first, second = two_versions
    _log(first, [1] * 120 + [2] * 30)

    _, summary = _monitor()

    assert [(s["version"], s["rows"]) for s in summary["served"]] == [("1", 120), ("2", 30)]
    assert "version 1 (120 rows) and version 2 (30 rows)" in summary["verdict"]
    twin = json.loads((paths.project_root() / summary["report_json"]).read_text())
    assert [(s["version"], s["rows"], s["training_data"]["version"]) for s in twin["sections"]] == [
        ("1", 120, first.manifest.version),
        ("2", 30, second.manifest.version),
    ]
    assert [s["reference_rows"] for s in twin["sections"]] == [len(first.train), 80]
    page = (paths.project_root() / summary["report"]).read_text()
    assert f"{MODEL} version 1: 120 rows" in page and f"{MODEL} version 2: 30 rows" in page


def test_monitor_takes_rows_logged_without_a_version_as_the_services_model(two_versions):
    first, second = two_versions
    _log(first, [None] * 150)

    out = _amlkit("monitor", "--json")

    assert out.returncode in (0, 4), out.stderr
    summary = json.loads(out.stdout)
    data = {"dataset": "penguins", "version": second.manifest.version}
    assert summary["served"] == [
        {"model": MODEL, "version": "2", "rows": 150, "training_data": data}
    ]
    assert summary["training_data"] == data
    assert "150 of 150 production rows name no model version" in out.stderr
    assert f"comparing them with {MODEL} version 2, the model of {ENDPOINT}" in out.stderr


def test_monitor_names_a_version_it_cannot_find(two_versions):
    first, _ = two_versions
    _log(first, [1] * 99 + [7])

    done = _amlkit("monitor")

    assert done.returncode == 2
    assert f"{MODEL} version 7 answered 1 of the rows, but it is neither registered" in done.stderr


@pytest.mark.parametrize("missing", [["bill_length_mm"], ["island", "sex"]])
def test_monitor_refuses_a_production_file_without_a_model_input(
    penguins_project, tmp_path, missing
):
    rows = _rows(penguins_project, drifted=False).drop(columns=missing)
    path = tmp_path / "rows.csv"
    rows.to_csv(path, index=False)

    done = _amlkit("monitor", "--production", str(path))

    assert done.returncode == 2
    names = ", ".join(repr(c) for c in missing)
    assert f"production data {path} has no column{'s' * (len(missing) > 1)} {names}" in done.stderr
    assert "expects the inputs " + ", ".join(penguins_project.manifest.feature_types) in done.stderr
    assert "Retraining" not in done.stdout
    assert not monitor.report_dir(ENDPOINT).exists()
