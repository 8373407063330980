"""`amlkit monitor`: the verdict on an endpoint's production data, as CD and cron jobs read it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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
    """Run the command as a user does, in its own process (it configures logging)."""
    return subprocess.run(
        [sys.executable, "-m", "amlkit.cli", *args],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        check=False,
    )


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


def test_monitor_reads_the_endpoints_request_log_by_default(penguins_project):
    rows = _rows(penguins_project, drifted=False)
    features = list(penguins_project.manifest.feature_types)
    log = RequestLog(monitor.request_log_dir(ENDPOINT), max_bytes=10_000_000, backup_count=1)
    records = [
        {
            "request_id": f"r{i}",
            "row": 0,
            "time": f"2025-01-01T00:{i // 60:02d}:{i % 60:02d}+00:00",
            "latency_ms": 1.5,
            "status": 200,
            "error": None,
            "prediction": row["species"],
            "inputs": {name: row[name] for name in features},
        }
        for i, row in rows.iterrows()
    ]
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
    assert training_data(served, None, None) == ("cars", "v2")
    assert newest_service("another-endpoint") is None
    assert training_data(None, None, None) == ("penguins", "latest")
    assert training_data(served, "penguins", None) == ("penguins", "latest")
