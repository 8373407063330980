"""A real azmlinfsrv behind its front: slow clients, the key checked first, framing problems."""

from __future__ import annotations

import contextlib
import gzip
import http.client
import json
import shutil
import socket
import threading
import time

import pytest

pytestmark = pytest.mark.slow

ROW = {
    "bill_length_mm": 39.1,
    "bill_depth_mm": 18.7,
    "flipper_length_mm": 181.0,
    "body_mass_g": 3750.0,
    "island": "Torgersen",
    "sex": "male",
}
SLOW_SCRIPT = """
import time

def init():
    pass

def run(data):
    time.sleep(5)
    return {"slept": 5}
"""


def post(endpoint, body, headers, *, method="POST", timeout=30.0):
    conn = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=timeout)
    try:
        conn.request(method, "/score", body=body, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    return resp.status, json.loads(raw) if raw else None


def raw_exchange(port, data, timeout=10.0):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_endpoint_answers_within_2s_while_50_clients_trickle_headers(endpoint):
    head = f"POST /score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {10**5}\r\n".encode()
    socks = [socket.create_connection(("127.0.0.1", endpoint.port), timeout=5) for _ in range(50)]
    stop = threading.Event()

    def trickle():  # one header byte per second on each connection
        for i in range(len(head)):
            for sock in socks:
                with contextlib.suppress(OSError):
                    sock.send(head[i : i + 1])
            if stop.wait(1.0):
                return

    sender = threading.Thread(target=trickle)
    sender.start()
    try:
        time.sleep(1.5)
        started = time.monotonic()
        status, answer = post(endpoint, json.dumps([ROW]), endpoint.headers(), timeout=2.0)
        waited = time.monotonic() - started
    finally:
        stop.set()
        sender.join()
        for sock in socks:
            sock.close()
    assert status == 200, answer
    assert answer["predictions"] == ["Adelie"]
    assert waited < 2.0


def test_scoring_timeout_still_answers_behind_the_front(tmp_path, penguins_service):
    from amlkit.serving.server import start_server

    folder = tmp_path / "slow"
    folder.mkdir()
    (folder / "scoring_script.py").write_text(SLOW_SCRIPT)
    config = {"endpoint_name": "slow-svc", "auth_mode": "none"}
    config["request_settings"] = {"request_timeout_ms": 300}
    (folder / "deployment_config.json").write_text(json.dumps(config))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AMLKIT_ROOT", str(penguins_service.root))
        with start_server(folder, port=0) as handle:
            started = time.monotonic()
            status, answer = post(handle, b'{"a": 1}', {"Content-Type": "application/json"})
            waited = time.monotonic() - started
    assert status == 500 and answer["message"] == "Scoring timeout after 300 ms"
    assert waited < 3.0


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_request_without_key_is_counted_in_server_log_not_request_log(endpoint, method):
    from amlkit.serving.requestlog import read_log

    rid = f"nokey-{method}"
    headers = {"Content-Type": "application/json", "x-request-id": rid}
    status, answer = post(endpoint, json.dumps([ROW]), headers, method=method)
    assert status == 401 and "Bearer" in answer["error"]
    assert [r for r in read_log(endpoint.request_log_dir) if r["request_id"] == rid] == []
    assert "requests refused for a missing or wrong key" in endpoint.log_path.read_text()


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR"])
def test_bearer_scheme_is_accepted_in_any_case(endpoint, scheme):
    headers = {"Content-Type": "application/json", "Authorization": f"{scheme} {endpoint.key}"}
    status, answer = post(endpoint, json.dumps([ROW]), headers)
    assert status == 200, answer


def test_gzip_body_gets_415_naming_the_encoding(endpoint):
    headers = endpoint.headers() | {"Content-Encoding": "gzip"}
    status, answer = post(endpoint, gzip.compress(json.dumps([ROW]).encode()), headers)
    assert status == 415
    assert "Content-Encoding 'gzip' is not supported" in answer["error"]


def test_body_shorter_than_its_content_length_gets_408_naming_both_sizes(endpoint):
    head = (
        f"POST /score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {endpoint.key}\r\nContent-Length: 100\r\n\r\n"
    ).encode()
    started = time.monotonic()
    answer = raw_exchange(endpoint.port, head + b'[{"a": 1}]')
    assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
    assert b"stopped after 10 bytes of the 100 bytes its Content-Length declared" in answer
    assert time.monotonic() - started < 5
    assert "requests refused by the front" in endpoint.log_path.read_text()


def test_body_cut_off_before_its_content_length_gets_400(endpoint):
    head = (
        f"POST /score HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {endpoint.key}\r\n"
        "Content-Length: 100\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", endpoint.port), timeout=10) as sock:
        sock.sendall(head + b"[1, 2")
        sock.shutdown(socket.SHUT_WR)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:300]
    assert b"the body ended after 5 of the 100 bytes" in answer


def test_chunked_body_is_scored(endpoint):
    body = json.dumps([ROW]).encode()
    head = (
        f"POST /score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {endpoint.key}\r\nTransfer-Encoding: chunked\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:20], body[20:]))
    answer = raw_exchange(endpoint.port, head + chunks + b"0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    assert b'"predictions":["Adelie"]' in answer


def test_front_keeps_a_client_connection_open_between_requests(endpoint):
    body = json.dumps([ROW]).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {endpoint.key}"}
    conn = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=10)
    try:
        answers = []
        for _ in range(3):
            conn.request("POST", "/score", body=body, headers=headers)
            resp = conn.getresponse()
            answers.append((resp.status, resp.getheader("Connection"), json.loads(resp.read())))
            port = conn.sock.getsockname()[1]  # the same client socket every time
            answers[-1] += (port,)
    finally:
        conn.close()
    assert [a[0] for a in answers] == [200, 200, 200]
    assert {a[1] for a in answers} == {"keep-alive"}
    assert len({a[3] for a in answers}) == 1
    assert all(a[2]["predictions"] == ["Adelie"] for a in answers)
    # a client that asks to close gets its answer and the end of the connection
    head = (
        f"POST /score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {endpoint.key}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    started = time.monotonic()
    answer = raw_exchange(endpoint.port, head + body)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    assert b"Connection: close" in answer
    assert time.monotonic() - started < 3  # closed at once, not after the idle timeout


def copy_service(penguins_service, tmp_path, **changes):
    folder = tmp_path / "svc"
    shutil.copytree(penguins_service.folder, folder)
    path = folder / "deployment_config.json"
    config = json.loads(path.read_text())
    path.write_text(json.dumps(config | changes))
    return folder


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"auth_mode": "Key"}, "auth_mode' must be one of key, aml_token, none; got 'Key'"),
        ({"limits": {"max_body_bytes": 2**20, "max_rows": -5}}, "limits.max_rows"),
    ],
    ids=["auth_mode", "max_rows"],
)
def test_serve_refuses_a_service_config_with_a_wrong_value(
    penguins_service, tmp_path, changes, words
):
    from amlkit.config import ConfigError
    from amlkit.serving.server import start_server

    folder = copy_service(penguins_service, tmp_path, **changes)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AMLKIT_ROOT", str(penguins_service.root))
        with pytest.raises(ConfigError, match=r"svc/deployment_config\.json") as info:
            start_server(folder, port=0).stop()
    assert words in str(info.value)


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"auth_mode": "Key"}, "auth_mode 'Key' is not one of ['key', 'aml_token', 'none']"),
        ({"limits": {"max_rows": -5}}, "limits.max_rows is -5"),
        ({"limits": {"max_body_bytes": True}}, "limits.max_body_bytes is True"),
        ({"request_log": {"max_bytes": "10"}}, "request_log.max_bytes is '10'"),
    ],
    ids=["auth_mode", "max_rows", "bool", "string"],
)
def test_scoring_script_init_refuses_a_wrong_config_value(
    penguins_service, tmp_path, monkeypatch, changes, words
):
    import importlib.util

    folder = copy_service(penguins_service, tmp_path, **changes)
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(folder / "model"))
    monkeypatch.setenv("AMLKIT_AUTH", "endpoint")
    spec = importlib.util.spec_from_file_location("svc_script", folder / "scoring_script.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    with pytest.raises(ValueError) as info:
        script.init()
    assert words in str(info.value) and "deployment_config.json" in str(info.value)


def test_serve_refuses_a_corrupt_keys_file(penguins_service, tmp_path):
    from amlkit.serving.auth import KeysFileError, keys_path
    from amlkit.serving.server import start_server

    folder = copy_service(penguins_service, tmp_path, endpoint_name="broken-keys")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AMLKIT_ROOT", str(penguins_service.root))
        keys_path("broken-keys").write_text("{not json")
        with pytest.raises(KeysFileError, match="is not readable JSON") as info:
            start_server(folder, port=0).stop()
    assert "amlkit keys broken-keys" in str(info.value)
