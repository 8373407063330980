"""Local blue/green: a real router in front of real loopback servers, switched under load."""

from __future__ import annotations

import http.client
import json
import threading
import time

import pandas as pd
import pytest

from amlkit.monitoring import traffic
from amlkit.serving import bluegreen

ROWS = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0]})


def post(router: bluegreen.Router, headers: dict | None = None) -> tuple[int, dict, str]:
    conn = http.client.HTTPConnection("127.0.0.1", router.port, timeout=10)
    conn.request(
        "POST",
        "/score",
        body=traffic.request_body(ROWS[:1], ["x"]),
        headers={**router.headers(), **(headers or {})},
    )
    resp = conn.getresponse()
    body = json.loads(resp.read())
    conn.close()
    return resp.status, body, resp.getheader(bluegreen.DEPLOYMENT_HEADER)


@pytest.fixture
def pair(stub_deployment):
    blue, green = stub_deployment("blue", delay_s=0.005), stub_deployment("green", delay_s=0.005)
    with bluegreen.Router() as router:
        router.add_deployment("blue", blue.port)
        router.add_deployment("green", green.port)
        yield router, blue, green


def test_router_splits_traffic_by_weight(pair):
    router, _, _ = pair
    router.set_traffic({"blue": 90, "green": 10})
    served = [post(router)[2] for _ in range(100)]
    assert served.count("green") == 10 and served.count("blue") == 90
    assert router.traffic() == {"blue": 90, "green": 10}


def test_router_honours_a_pinned_deployment(pair):
    router, _, _ = pair
    router.set_traffic({"blue": 100})
    status, body, served = post(router, {bluegreen.DEPLOYMENT_HEADER: "green"})
    assert (status, body["predictions"], served) == (200, ["green"], "green")


@pytest.mark.parametrize(
    "weights", [{"blue": 50}, {"blue": 120, "green": -20}, {"red": 100}], ids=str
)
def test_set_traffic_rejects_bad_splits(pair, weights):
    router, _, _ = pair
    with pytest.raises(ValueError):
        router.set_traffic(weights)


def test_router_answers_503_without_traffic(pair):
    router, _, _ = pair
    assert post(router)[0] == 503


def test_drain_waits_for_requests_in_flight(pair):
    router, blue, _ = pair
    router.set_traffic({"blue": 100})
    blue.gate.clear()  # hold blue's answers
    client = threading.Thread(target=post, args=(router,))
    client.start()
    deadline = time.monotonic() + 5
    while router.in_flight("blue") == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    router.set_traffic({"green": 100})
    assert router.drain("blue", timeout_s=0.2) is False  # still one in flight
    blue.gate.set()
    assert router.drain("blue", timeout_s=5) is True
    client.join(5)
    assert router.in_flight("blue") == 0


def test_switch_under_load_fails_no_request(pair):
    router, blue, _ = pair
    router.set_traffic({"blue": 100})
    stop = threading.Event()
    box = {}

    def load():
        box["result"] = traffic.simulate_traffic(
            router, ROWS, feature_columns=["x"], concurrency=4, until=stop, max_seconds=20
        )

    client = threading.Thread(target=load)
    client.start()
    time.sleep(0.4)
    router.set_traffic({"blue": 50, "green": 50})
    time.sleep(0.3)
    router.set_traffic({"green": 100})
    assert router.drain("blue", timeout_s=10)
    router.remove_deployment("blue")
    blue.stop()
    time.sleep(0.4)
    stop.set()
    client.join(30)
    result = box["result"]
    assert result.errors == 0, result.error_samples
    assert result.requests > 50
    served = set(result.sent["prediction"])
    assert served == {"blue", "green"}
    assert result.sent["prediction"].iloc[-1] == "green"


@pytest.mark.slow
def test_switch_traffic_between_real_inference_servers(
    tmp_path, monkeypatch, penguins_frame, penguin_features, make_version, new_project
):

    from amlkit.serving import package, server

    root = new_project(tmp_path / "root", monkeypatch)
    models = root / "models" / "trained_models"
    frame = penguins_frame.copy()
    blue_dir = package.package_service(
        make_version(models), service="svc-blue", parity_rows=frame.head(40)
    )
    green_dir = package.package_service(
        make_version(models, version=2), service="svc-green", parity_rows=frame.head(40)
    )
    blue = server.start_server(blue_dir, port=0, workers=1)
    live = blue
    try:
        with bluegreen.Router(headers=blue.headers()) as router:
            router.add_deployment("blue", blue.port)
            router.set_traffic({"blue": 100})
            stop = threading.Event()
            rows = frame[penguin_features].head(30)
            smoke = json.loads(traffic.request_body(rows.head(2), penguin_features))
            box = {}
            client = threading.Thread(
                target=lambda: box.update(
                    result=traffic.simulate_traffic(
                        router, rows, feature_columns=penguin_features, until=stop, max_seconds=90
                    )
                )
            )
            client.start()
            live, switch = bluegreen.switch_traffic(
                router,
                old="blue",
                old_endpoint=blue,
                new="green",
                new_service_dir=green_dir,
                smoke_payload=smoke,
            )
            time.sleep(0.3)
            stop.set()
            client.join(120)
    finally:
        live.stop()
        blue.stop()
    result = box["result"]
    assert result.errors == 0, result.error_samples
    assert switch.drained and switch.traffic == {"green": 100} and switch.smoke_predictions == 2
    assert not blue.alive()
    assert router.served["blue"] > 0 and router.served["green"] > 0
    from amlkit.monitoring.monitor import read_request_log

    log = read_request_log(blue.request_log_dir)  # both deployments log to their endpoint
    answered = log[log["status"] == 200].groupby(["deployment", "model_version"]).size()
    assert answered.index.tolist() == [("svc-blue", 1), ("svc-green", 2)]
    assert set(log["model_name"]) == {log["model_name"].iloc[0]}
