"""What notebook 06 shows, checked on real servers: the request log, stopping, batch scoring
that answers as the endpoint does, and a blue/green rollout (a share, then all) between the
pickled pipeline and its ONNX conversion."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from amlkit.monitoring import traffic

pytestmark = pytest.mark.slow


def body(frame: pd.DataFrame, columns: list[str]) -> dict:
    return json.loads(traffic.request_body(frame, columns))


def test_request_log_holds_scored_rows_and_refused_requests_but_not_unauthorised_ones(
    endpoint, penguins_frame, penguin_features
):
    from amlkit.serving.requestlog import read_log

    rows = penguins_frame.head(2)
    assert endpoint.score(body(rows, penguin_features), request_id="log-ok")[0] == 200
    missing = body(rows.head(1), penguin_features[:-1])
    assert endpoint.score(missing, request_id="log-bad")[0] == 422
    status, answer = endpoint.score(body(rows, penguin_features), auth=False, request_id="log-401")
    assert status == 401 and "Bearer" in answer["error"]
    assert endpoint.alive()
    log = [r for r in read_log(endpoint.request_log_dir) if r["request_id"].startswith("log-")]
    by_id = {}
    for record in log:
        by_id.setdefault(record["request_id"], []).append(record)
    assert set(by_id) == {"log-ok", "log-bad"}
    scored = sorted(by_id["log-ok"], key=lambda r: r["row"])
    assert [r["row"] for r in scored] == [0, 1] and {r["status"] for r in scored} == {200}
    assert [r["prediction"] for r in scored] == rows["species"].tolist()
    assert scored[0]["inputs"]["island"] == rows["island"].iloc[0]
    assert {"time", "latency_ms", "probabilities"} <= set(scored[0])
    (refused,) = by_id["log-bad"]
    assert refused["status"] == 422 and "missing columns" in refused["error"]


def test_batch_scoring_answers_as_the_endpoint(
    endpoint, penguins_service, penguins_frame, penguin_features, tmp_path
):
    from amlkit.serving.batch import score_file

    rows = penguins_frame.head(40)
    rows.to_parquet(tmp_path / "rows.parquet")
    scored = pd.read_parquet(
        score_file(tmp_path / "rows.parquet", service=penguins_service.folder, progress=False)
    )
    status, answer = endpoint.score(body(rows, penguin_features))
    assert status == 200
    assert scored["prediction"].tolist() == answer["predictions"]
    columns = [f"probability_{c}" for c in answer["classes"]]
    np.testing.assert_allclose(scored[columns].to_numpy(), answer["probabilities"], atol=1e-6)


def test_a_stopped_server_no_longer_listens(penguins_service, monkeypatch):
    from amlkit.serving.server import listening_addresses, start_server

    monkeypatch.setenv("AMLKIT_ROOT", str(penguins_service.root))
    handle = start_server(penguins_service.folder, port=0, workers=1)
    assert handle.alive() and listening_addresses(handle.port) == ["127.0.0.1"]
    handle.stop()
    assert not handle.alive()
    assert listening_addresses(handle.port) == []


def test_rollout_gives_green_its_share_then_all_without_a_failed_request(
    penguins_service, penguins_frame, penguin_features, monkeypatch
):
    from amlkit.serving import bluegreen
    from amlkit.serving.package import package_service, service_info
    from amlkit.serving.server import start_server

    monkeypatch.setenv("AMLKIT_ROOT", str(penguins_service.root))
    blue_dir = package_service(penguins_service.version, service="svc-blue", fast_path=False)
    assert service_info(blue_dir)["backend"] == "sklearn"
    assert service_info(penguins_service.folder)["backend"] == "onnx"
    blue = start_server(blue_dir, port=0, workers=1)
    green = start_server(penguins_service.folder, port=0, workers=1)
    try:
        sample = body(penguins_frame.head(60), penguin_features)
        blue_answer, green_answer = blue.score(sample)[1], green.score(sample)[1]
        assert blue_answer["predictions"] == green_answer["predictions"]
        np.testing.assert_allclose(
            green_answer["probabilities"], blue_answer["probabilities"], atol=1e-5
        )
        rows = penguins_frame[penguin_features].head(100)
        with bluegreen.Router(headers=blue.headers()) as router:
            router.add_deployment("blue", blue.port)
            router.add_deployment("green", green.port)
            router.set_traffic({"blue": 90, "green": 10})
            canary = traffic.simulate_traffic(router, rows, feature_columns=penguin_features)
            assert canary.errors == 0, canary.error_samples
            assert router.served == {"blue": 90, "green": 10}
            router.set_traffic({"green": 100})
            assert router.drain("blue", timeout_s=10)
            router.remove_deployment("blue")
            blue.stop()
            after = traffic.simulate_traffic(router, rows, feature_columns=penguin_features)
            assert after.errors == 0, after.error_samples
            assert router.served == {"blue": 90, "green": 110}
            assert router.traffic() == {"green": 100}
    finally:
        blue.stop()
        green.stop()
