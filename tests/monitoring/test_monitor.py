"""Monitoring: request log reading, the retraining rule, and the loop on real penguin data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from amlkit.config import DeploymentConfig, MonitoringConfig
from amlkit.monitoring import monitor, traffic, verdict


def write_log(folder):
    from amlkit.serving.requestlog import RequestLog

    log = RequestLog(folder, max_bytes=10_000, backup_count=2)
    stamp = "2024-05-01T10:00:0{}.000000+00:00"
    log.write(
        [
            {
                "request_id": "a-0",
                "row": i,
                "time": stamp.format(0),
                "latency_ms": 2.0,
                "status": 200,
                "inputs": {"x": float(i), "c": "u"},
                "prediction": "p",
            }
            for i in range(3)
        ]
    )
    log.write(
        [
            {
                "request_id": "b-1",
                "time": stamp.format(5),
                "latency_ms": 1.0,
                "status": 422,
                "error": "bad row",
            }
        ]
    )
    log.close()


def test_read_request_log_flattens_inputs_and_filters_by_time_and_prefix(tmp_path):
    write_log(tmp_path)
    log = monitor.read_request_log(tmp_path)
    assert list(log["request_id"]) == ["a-0", "a-0", "a-0", "b-1"]
    assert list(log["x"][:3]) == [0.0, 1.0, 2.0] and log["error"].iloc[3] == "bad row"
    assert len(monitor.read_request_log(tmp_path, since="2024-05-01T10:00:03Z")) == 1
    assert len(monitor.read_request_log(tmp_path, request_prefix="a-")) == 3
    requests = monitor.requests_frame(log)
    assert requests[["request_id", "status", "n_rows"]].values.tolist() == [
        ["a-0", 200, 3],
        ["b-1", 422, 0],
    ]


def test_requests_that_reuse_an_id_each_count_in_usage(tmp_path):
    from amlkit.monitoring.usage import usage_summary
    from amlkit.serving.requestlog import RequestLog

    log = RequestLog(tmp_path, max_bytes=10**6, backup_count=1)
    for i in range(30):
        common = {"request_id": "same", "time": f"2024-05-01T10:00:{i:02d}+00:00", "status": 200}
        log.write_columns(common | {"latency_ms": 1.0}, 2, {"inputs": {"x": [1.0, 2.0]}})
    log.close()

    requests = monitor.requests_frame(monitor.read_request_log(tmp_path))

    assert len(requests) == 30 and requests["n_rows"].tolist() == [2] * 30
    summary = usage_summary(requests)
    assert (summary["requests"], summary["rows_scored"]) == (30, 60)


@pytest.mark.parametrize("name", ["data.csv", "data.parquet"])
def test_read_production_file_reads_csv_and_parquet(tmp_path, name):
    frame = pd.DataFrame({"x": [1.0, 2.0], "c": ["a", "b"]})
    path = tmp_path / name
    frame.to_csv(path, index=False) if name.endswith("csv") else frame.to_parquet(path)
    pd.testing.assert_frame_equal(monitor.read_production_file(path), frame)


def drift_frame(drifted: list[bool], p_values: list[float]) -> pd.DataFrame:
    n = len(drifted)
    return pd.DataFrame(
        {
            "column": [f"f{i}" for i in range(n)],
            "metric": ["normalized_wasserstein_distance"] * n,
            "value": [0.5 if d else 0.01 for d in drifted],
            "drifted": drifted,
            "two_sample_kolmogorov_smirnov_test": p_values,
            "pearsons_chi_squared_test": [np.nan] * n,
        }
    )


QUALITY = pd.DataFrame(
    {
        "column": ["f0"],
        "null_value_rate": [0.0],
        "data_type_error_rate": [0.0],
        "out_of_bounds_rate": [0.0],
    }
)


@pytest.mark.parametrize(
    ("drifted", "p_values", "ranking", "fires"),
    [
        ([False] * 4, [0.9] * 4, ["f0", "f1"], False),
        ([True, False, False, False], [0.001, 0.9, 0.9, 0.9], ["f0"], True),  # a top feature
        ([True, False, False, False], [0.001, 0.9, 0.9, 0.9], ["f3"], False),  # share 0.25
        ([True, True, False, False], [0.001, 0.001, 0.9, 0.9], ["f3"], True),  # share 0.5
        ([True, True, False, False], [0.4, 0.4, 0.9, 0.9], ["f0"], False),  # not significant
    ],
)
def test_decide_retraining_fires_on_the_configured_checks(drifted, p_values, ranking, fires):
    decision = monitor.decide_retraining(
        drift_frame(drifted, p_values),
        QUALITY,
        n_rows=100,
        config=MonitoringConfig.model_validate({"retraining": {"top_n_features": 1}}),
        ranking=ranking,
    )
    assert decision.retrain is fires, decision.reasons


def test_decide_retraining_fires_on_quality_and_needs_enough_rows():
    bad = QUALITY.assign(null_value_rate=0.5)
    rules = MonitoringConfig()
    fired = monitor.decide_retraining(drift_frame([False], [0.9]), bad, n_rows=100, config=rules)
    assert fired.retrain and fired.reasons == ["null_value_rate 0.5 > 0.1"]
    few = monitor.decide_retraining(drift_frame([False], [0.9]), bad, n_rows=10, config=rules)
    assert not few.retrain and "min_rows" in few.reasons[0]


@pytest.fixture
def penguins(processed_penguins):
    return processed_penguins


def window(processed, intensity: float, seed: int) -> pd.DataFrame:
    rows = traffic.sample_rows(traffic.held_out_rows(processed), 300, seed=seed)
    spec = traffic.default_drift(processed.manifest.feature_types, processed.profile, intensity)
    return traffic.apply_drift(rows, spec, processed.profile, seed=seed)


@pytest.mark.parametrize("seed", [0, 1])
def test_plain_replay_does_not_fire_and_drifted_replay_does(penguins, seed):
    cfg = DeploymentConfig.load().monitoring
    target = penguins.manifest.target
    ranking = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm"]
    calm = window(penguins, 0.0, seed)
    calm_result = monitor.run_monitoring(
        calm, penguins, monitoring_config=cfg, predictions=calm[target], ranking=ranking
    )
    assert not calm_result.decision.retrain, calm_result.decision.checks
    assert calm_result.performance["realized"]["metrics"]["accuracy"] == 1.0
    drifted = window(penguins, 1.0, seed)
    result = monitor.run_monitoring(drifted, penguins, monitoring_config=cfg, ranking=ranking)
    assert result.decision.retrain
    assert result.decision.checks["drifted_top_features"]["value"] == 3


@pytest.fixture
def forest(penguins, feature_preprocessor):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline

    types = penguins.manifest.feature_types
    model = Pipeline(
        [
            ("preprocess", feature_preprocessor(types)),
            ("model", RandomForestClassifier(n_estimators=30, random_state=0, n_jobs=1)),
        ]
    )
    return model.fit(penguins.train[list(types)], penguins.train["species"])


def test_reports_history_and_index_are_written(penguins, forest, tmp_path):
    folder = tmp_path / "m"
    watched = verdict.Watched(
        "penguins-classification", 4, {"blue": 100}, "none", {"accuracy": 0.98}
    )
    for seed, intensity in enumerate((0.0, 1.0)):
        rows = window(penguins, intensity, seed)
        rows["prediction"] = forest.predict(rows[list(penguins.manifest.feature_types)])
        rows["time"] = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(
            np.arange(len(rows)) + 3600 * seed, unit="s"
        )
        result = monitor.run_monitoring(rows, penguins, model=forest)
        html_path, json_path = monitor.write_monitoring_report(
            result, penguins, folder, watched=watched
        )
    twin = json.loads(json_path.read_text())
    assert html_path.parent == folder / "reports" and json_path == html_path.with_suffix(".json")
    assert twin["sentence"].startswith("Retraining recommended: 4 of 7 inputs shifted")
    assert (twin["model"], twin["version"], twin["action"]) == (
        "penguins-classification",
        4,
        "none",
    )
    assert twin["window"] == {
        "start": "2026-01-01T01:00:00+00:00",
        "end": "2026-01-01T01:04:59+00:00",
    }
    assert twin["reference_rows"] == len(penguins.train) and twin["rows"] == 300
    realized = twin["performance"]["realized"]["metrics"]["accuracy"]
    estimated = twin["performance"]["estimated"]["accuracy"]
    assert realized < 0.99 and 0.5 < estimated <= 1.0
    assert twin["performance"]["baseline"] == {"accuracy": 0.98}
    history = [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines()]
    assert [h["retrain"] for h in history] == [False, True]
    assert history[1]["performance"]["realized"] == pytest.approx(realized)
    assert history[1]["report"] == f"reports/{html_path.name}"
    index = (folder / "index.html").read_text()
    assert index.index(history[1]["report"]) < index.index(history[0]["report"])  # newest first
    assert "Retraining recommended: 4 of 7" in index and "No action needed" in index
    assert "Trends over time" in html_path.read_text()


def test_retraining_source_is_written(penguins):
    from amlkit import paths
    from amlkit.data import ingest

    drifted = window(penguins, 1.0, 0)
    source = monitor.write_retraining_source("penguins", drifted)
    assert source.parent == paths.data_dir() / "external"
    combined = pd.read_csv(source)
    raw, _ = ingest.load_raw("penguins")
    assert len(combined) == len(raw) + drifted["source_row"].nunique()
    assert (combined["island"] == traffic.NEW_CATEGORY).any()
    ingested = ingest.ingest("penguins", source=str(source), progress=False)
    assert ingested.created and ingested.manifest.rows == len(combined)


@pytest.mark.slow
def test_logged_traffic_from_a_real_server_is_read_back(
    tmp_path, monkeypatch, penguins_frame, penguin_features, make_version, new_project
):

    from amlkit.serving import package, server

    root = new_project(tmp_path / "root", monkeypatch)
    frame = penguins_frame.copy()
    folder = package.package_service(
        make_version(root / "models" / "trained_models"),
        service="svc",
        parity_rows=frame.head(40),
    )
    rows = frame.head(40)
    with server.serve(folder, port=0, workers=1) as endpoint:
        sent = traffic.simulate_traffic(
            endpoint, rows, feature_columns=penguin_features, batch_size=2
        )
        log = monitor.read_request_log(endpoint.request_log_dir, request_prefix="sim-")
    assert sent.errors == 0 and len(log) == 40
    merged = log.merge(sent.sent[["request_id", "row", "species"]], on=["request_id", "row"])
    assert len(merged) == 40
    assert (merged["prediction"] == merged["species"]).mean() > 0.9
    assert monitor.requests_frame(log)["n_rows"].tolist() == [2] * 20


MODEL = "penguins-classification"


def _answered_by(rows: pd.DataFrame, versions: list[object]) -> pd.DataFrame:
    """The rows as the request log gives them back: each names the version that answered."""
    deployments = {1: "blue", 2: "green"}  # the version a deployment serves
    return rows.assign(
        model_name=MODEL,
        model_version=versions,
        deployment=[deployments.get(int(str(v).split(".")[0]), "blue") for v in versions],
    )


@pytest.fixture
def two_references(penguins, processed_subset):
    """Version 1 trained on the penguins' processed version, version 2 on an 80-row subset."""
    from amlkit.monitoring.served import Reference

    small = processed_subset(penguins, 80)
    return {
        (MODEL, "1"): Reference(penguins, MODEL, "1", baseline={"accuracy": 0.97}),
        (MODEL, "2"): Reference(small, MODEL, "2", baseline={"accuracy": 0.91}),
    }


@pytest.mark.parametrize("logged", [1, 1.0, "1"])
def test_rows_answered_by_version_1_are_compared_with_version_1s_data(
    penguins, two_references, logged
):
    rows = _answered_by(window(penguins, 0.0, 0), [logged] * 300)

    result = monitor.run_monitoring_by_version(rows, two_references)

    assert result.sections == []
    assert result.served == [
        {
            "model": MODEL,
            "version": "1",
            "rows": 300,
            "deployments": ["blue"],
            "training_data": {"dataset": "penguins", "version": penguins.manifest.version},
            "reference_rows": len(penguins.train),
        }
    ]
    data = {"dataset": "penguins", "version": penguins.manifest.version}
    assert result.summary()["served"] == [
        {"model": MODEL, "version": "1", "rows": 300, "training_data": data}
    ]


def test_a_window_two_versions_served_has_a_section_per_version(penguins, two_references, tmp_path):
    rows = _answered_by(window(penguins, 0.0, 0), [1] * 200 + [2] * 100)
    rows["time"] = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(np.arange(300), unit="s")

    result = monitor.run_monitoring_by_version(rows, two_references)
    watched = verdict.Watched(MODEL, "1 and 2", {"blue": 67, "green": 33}, "none", {})
    html_path, json_path = monitor.write_monitoring_report(
        result, penguins, tmp_path / "m", watched=watched
    )

    sections = [(s["version"], s["rows"], s["reference_rows"]) for s in result.served]
    assert sections == [("1", 200, len(penguins.train)), ("2", 100, 80)]
    assert [len(part.current) for part in result.sections] == [200, 100]
    assert "2 versions served this window: version 1 (200 rows) and version 2 (100 rows)" in (
        result.decision.verdict
    )
    assert set(result.summary()["versions"]) == {f"{MODEL} version 1", f"{MODEL} version 2"}
    twin = json.loads(json_path.read_text())
    assert [(s["version"], s["rows"], s["reference_rows"]) for s in twin["sections"]] == sections
    assert [s["performance"]["baseline"] for s in twin["sections"]] == [
        {"accuracy": 0.97},
        {"accuracy": 0.91},
    ]
    page = html_path.read_text()
    assert f"{MODEL} version 1: 200 rows" in page and f"{MODEL} version 2: 100 rows" in page
    assert page.count("<h3>Drift per feature</h3>") == 2 and "<h2>Drift per feature" not in page
    assert "version 1: 200 rows on blue; version 2: 100 rows on green" in page


def test_a_version_without_a_reference_is_named(penguins, two_references):
    rows = _answered_by(window(penguins, 0.0, 0), [1] * 290 + [3] * 10)

    with pytest.raises(ValueError, match=f"no reference data for {MODEL} version 3 \\(10 rows\\)"):
        monitor.run_monitoring_by_version(rows, two_references)


def test_rows_without_a_version_are_given_one_with_a_warning(caplog):
    from amlkit.monitoring import served

    rows = pd.DataFrame({"model_name": [MODEL, None], "model_version": [1, None], "x": [0, 1]})

    filled = served.assign_version(rows, MODEL, 2, "the model of svc")

    assert list(served.served_versions(filled)) == [(MODEL, "1"), (MODEL, "2")]
    assert "1 of 2 production rows name no model version" in caplog.text
    assert f"comparing them with {MODEL} version 2, the model of svc" in caplog.text
    unlogged = served.served_versions(pd.DataFrame({"x": [1]}))
    assert [(key, list(rows)) for key, rows in unlogged.items()] == [(served.UNLOGGED, [0])]
