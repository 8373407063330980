"""A real azmlinfsrv on loopback: answers, bad inputs, auth, loopback binding, log durability."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import threading
import time

import pytest

pytestmark = pytest.mark.slow

FEATURES = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "island", "sex"]
ROW = {
    "bill_length_mm": 39.1,
    "bill_depth_mm": 18.7,
    "flipper_length_mm": 181.0,
    "body_mass_g": 3750.0,
    "island": "Torgersen",
    "sex": "male",
}


def post(endpoint, body, headers=None, *, auth=True, method="POST"):
    conn = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=30)
    hdrs = {"Content-Type": "application/json"}
    if auth:
        hdrs["Authorization"] = f"Bearer {endpoint.key}"
    hdrs.update(headers or {})
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    conn.request(method, "/score", body=data, headers=hdrs)
    resp = conn.getresponse()
    raw = resp.read()
    conn.close()
    return resp.status, json.loads(raw) if raw else None


@pytest.mark.parametrize(
    "body",
    [
        {"input_data": {"columns": FEATURES, "data": [[ROW[c] for c in FEATURES]]}},
        {
            "input_data": {
                "columns": FEATURES,
                "index": [7],
                "data": [[ROW[c] for c in FEATURES]],
            }
        },
        {"data": [[ROW[c] for c in FEATURES]]},
        [ROW],
    ],
    ids=["input_data", "with_index", "data", "records"],
)
def test_score_accepts_each_shape(endpoint, body):
    status, answer = post(endpoint, body)
    assert status == 200, answer
    assert answer["predictions"] == ["Adelie"]
    assert answer["classes"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert len(answer["probabilities"][0]) == 3
    assert abs(sum(answer["probabilities"][0]) - 1) < 1e-5
    assert answer["model"]["backend"] == "onnx"


def test_score_handles_missing_values_and_many_rows(endpoint, penguins_frame, penguin_features):
    rows = penguins_frame.copy().head(50)[FEATURES]
    records = json.loads(rows.to_json(orient="records"))
    records[0]["sex"] = None
    records[1]["body_mass_g"] = None
    status, answer = post(endpoint, records)
    assert status == 200, answer
    assert len(answer["predictions"]) == 50


BAD = [
    (b"{not json", 400, "not valid JSON"),
    (b"", 400, "empty"),
    ({"rows": []}, 422, "unrecognised request shape"),
    ({"data": [[1, 2]]}, 422, "row 0 has 2 values"),
    ({"data": "x"}, 422, '"data" must be a list'),
    ([{k: v for k, v in ROW.items() if k != "sex"}], 422, "missing columns ['sex']"),
    ([ROW | {"colour": "red"}], 422, "unknown columns ['colour']"),
    ([ROW | {"body_mass_g": "heavy"}], 422, "'body_mass_g'"),
    ([ROW | {"island": 3}], 422, "'island'"),
    ([], 422, "no rows"),
    ([ROW] * 1001, 413, "over the limit of 1000"),
]


@pytest.mark.parametrize(("body", "status", "words"), BAD)
def test_bad_input_gets_4xx_json_error(endpoint, body, status, words):
    got, answer = post(endpoint, body)
    assert got == status, answer
    assert words in answer["error"]
    assert endpoint.alive()


def test_every_log_row_names_the_model_version_and_deployment(endpoint):
    from amlkit.serving.requestlog import read_log

    assert post(endpoint, [ROW, ROW], {"x-request-id": "named-ok"})[0] == 200
    assert post(endpoint, [ROW | {"sex": 1}], {"x-request-id": "named-bad"})[0] == 422
    rows = [r for r in read_log(endpoint.request_log_dir) if r["request_id"].startswith("named")]
    assert len(rows) == 3
    for row in rows:
        assert (row["model_name"], row["model_version"], row["deployment"]) == (
            "penguins",
            1,
            "svc",
        )


@pytest.mark.parametrize("rows", [[ROW], [ROW | {"sex": 1}]], ids=["scored", "refused"])
def test_a_request_without_an_id_has_one_id_in_header_body_and_log(endpoint, rows):
    from amlkit.serving.requestlog import read_log

    conn = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=30)
    conn.request("POST", "/score", body=json.dumps(rows), headers=endpoint.headers())
    resp = conn.getresponse()
    answer = json.loads(resp.read())
    conn.close()

    request_id = resp.getheader("x-request-id")
    assert request_id and answer["request_id"] == request_id
    assert resp.getheader("x-ms-request-id") == request_id  # the server's legacy header
    logged = [r for r in read_log(endpoint.request_log_dir) if r["request_id"] == request_id]
    assert len(logged) == 1 and logged[0]["status"] == resp.status


def test_oversized_body_gets_413(endpoint):
    body = b'{"data": [' + b"[" + b"1," * 600_000 + b"1]]}"
    status, answer = post(endpoint, body)
    assert status == 413 and "over the limit" in answer["error"]


def test_oversized_body_is_read_so_a_slow_client_still_gets_its_413(endpoint):
    size = 2 * 2**20
    head = (
        f"POST /score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {endpoint.key}\r\nContent-Length: {size}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", endpoint.port), timeout=30) as sock:
        sock.sendall(head + b"1" * (size // 2))
        time.sleep(0.5)  # the server has refused by now; a closed socket would reset the rest
        sock.sendall(b"1" * (size - size // 2))
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"over the limit" in answer


def test_non_json_content_type_gets_415(endpoint):
    status, answer = post(endpoint, b"a,b\n1,2", {"Content-Type": "text/csv"})
    assert status == 415 and "application/json" in answer["error"]


def test_get_score_gets_405(endpoint):
    status, answer = post(endpoint, b"", method="GET")
    assert status == 405 and "POST" in answer["error"]


@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong-key", "Basic abc", "Bearer "],
    ids=["none", "wrong", "basic", "blank"],
)
def test_requests_without_valid_key_get_401(endpoint, header):
    headers = {"Authorization": header} if header else {}
    status, answer = post(endpoint, [ROW], headers, auth=False)
    assert status == 401 and "Bearer" in answer["error"]


def test_secondary_key_and_regenerated_key(endpoint):
    from amlkit.serving.auth import regenerate_key, show_keys

    keys = show_keys(endpoint.endpoint)
    status, _ = post(endpoint, [ROW], {"Authorization": f"Bearer {keys['secondary']}"}, auth=False)
    assert status == 200
    time.sleep(0.01)
    new = regenerate_key(endpoint.endpoint, "secondary")
    status, _ = post(endpoint, [ROW], {"Authorization": f"Bearer {keys['secondary']}"}, auth=False)
    assert status == 401
    status, _ = post(endpoint, [ROW], {"Authorization": f"Bearer {new['secondary']}"}, auth=False)
    assert status == 200


def test_keys_file_is_private(endpoint):
    from amlkit.serving.auth import keys_path

    assert (keys_path(endpoint.endpoint).stat().st_mode & 0o777) == 0o600


def test_server_listens_on_loopback_only(endpoint):
    from amlkit.serving.server import listening_addresses

    assert listening_addresses(endpoint.port) == ["127.0.0.1"]
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.connect(("10.255.255.255", 1))  # no packet is sent: picks the outward interface
    outward = probe.getsockname()[0]
    probe.close()
    if outward != "127.0.0.1":
        with pytest.raises(OSError):
            socket.create_connection((outward, endpoint.port), timeout=2).close()


def test_swagger_and_health_routes_answer(endpoint):
    conn = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=10)
    conn.request("GET", "/")
    assert conn.getresponse().read() == b"Healthy"
    conn.close()


def test_server_runs_the_amlkit_modules_of_the_service_folder(endpoint):
    log = endpoint.log_path.read_text()
    assert f"(amlkit {endpoint.service_dir / 'amlkit'})" in log


def test_start_refuses_wide_host(penguins_service):
    from amlkit.serving.server import start_server

    with pytest.raises(ValueError, match=r"127\.0\.0\.1 only"):
        start_server(penguins_service.folder, host="0.0.0.0")


def test_log_holds_every_answered_request_after_sigkill(penguins_service):
    from amlkit.serving.requestlog import read_log
    from amlkit.serving.server import start_server

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AMLKIT_ROOT", str(penguins_service.root))
        handle = start_server(penguins_service.folder, port=0, workers=2)
    answered: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(n: int) -> None:
        i = 0
        while not stop.is_set() and i < 2000:
            rid = f"kill-{n}-{i}"
            i += 1
            try:
                status, _ = post(handle, [ROW, ROW], {"x-request-id": rid})
            except (OSError, http.client.HTTPException, json.JSONDecodeError):
                continue
            if status == 200:
                with lock:
                    answered.append(rid)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    os.killpg(handle.pid, signal.SIGKILL)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    handle.stop(timeout=5)
    logged = {}
    for rec in read_log(handle.request_log_dir):
        if rec.get("status") == 200:
            logged.setdefault(rec["request_id"], set()).add(rec["row"])
    assert len(answered) > 20
    missing = [rid for rid in answered if logged.get(rid) != {0, 1}]
    assert missing == []


@pytest.mark.parametrize("name", ["model.pkl", "model.onnx", "MLmodel"])
def test_server_refuses_to_start_when_a_model_file_changed(penguins_service, tmp_path, name):
    import shutil

    from amlkit.serving.server import start_server

    folder = tmp_path / "svc"
    shutil.copytree(penguins_service.folder, folder)
    changed = folder / "model" / name
    data = bytearray(changed.read_bytes())
    data[len(data) // 2] ^= 1
    changed.write_bytes(bytes(data))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AMLKIT_ROOT", str(penguins_service.root))
        with pytest.raises(RuntimeError, match=f"model file {changed} has sha256"):
            start_server(folder, port=0, startup_timeout_s=60).stop()


@pytest.fixture
def tiny_disk(tmp_path):
    """A 64 KiB tmpfs to hold a request log, filled up on demand (needs mount rights)."""
    import subprocess

    folder = tmp_path / "tiny"
    folder.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(folder)]
    done = subprocess.run(mount, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _fill(folder):
    """Write a file in ``folder`` until its file system has no space left (ENOSPC)."""
    import errno

    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


def test_a_full_disk_gets_503_withholding_the_prediction_and_the_service_recovers(
    penguins_service, tiny_disk
):
    from amlkit.serving.requestlog import read_log
    from amlkit.serving.server import start_server

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AMLKIT_ROOT", str(penguins_service.root))
        env = {"AMLKIT_REQUEST_LOG_DIR": str(tiny_disk)}
        handle = start_server(penguins_service.folder, port=0, workers=1, env=env)
    with handle:
        assert post(handle, [ROW], {"x-request-id": "before"})[0] == 200
        _fill(tiny_disk)
        # 500 rows: the line fills what is left of the log's last page, then the disk refuses
        full = [post(handle, rows, {"x-request-id": "full"}) for rows in ([ROW] * 500, [ROW])]
        (tiny_disk / "filler").unlink()
        after = post(handle, [ROW], {"x-request-id": "after"})
        server_log = handle.log_path.read_text()

    for status, answer in full:
        assert status == 503, answer
        assert "cannot write its request log (No space left on device)" in answer["error"]
        assert "predictions" not in answer
    assert after[0] == 200 and after[1]["predictions"] == ["Adelie"]
    (path,) = tiny_disk.glob("requests-*.jsonl")
    lines = path.read_bytes().split(b"\n")
    assert len(lines) == 4 and lines[1].startswith(b'{"request_id":"full"')  # torn, apart
    assert [r["request_id"] for r in read_log(tiny_disk)] == ["before", "after"]
    assert server_log.count("cannot write the request log") == 1, server_log[-3000:]
    assert "takes lines again, after" in server_log
