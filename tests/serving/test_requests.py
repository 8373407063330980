"""Request parsing and validation (no server), request log rotation, key handling."""

from __future__ import annotations

import json
import math

import pytest

from amlkit.serving.requests import RequestError, parse_request

COLS = ["x", "colour", "flag", "day"]
TYPES = {"x": "numeric", "colour": "categorical", "flag": "boolean", "day": "datetime"}


def parse(body, content_type="application/json", max_rows=10):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_request(
        raw,
        content_type=content_type,
        feature_columns=COLS,
        feature_types=TYPES,
        max_body_bytes=500,
        max_rows=max_rows,
    )


def test_parse_converts_values_column_by_column():
    values, n = parse(
        [
            {"x": 1, "colour": None, "flag": True, "day": "2024-01-02"},
            {"x": None, "colour": "red", "flag": "false", "day": None},
        ]
    )
    assert n == 2
    assert values["x"][0] == 1.0 and math.isnan(values["x"][1])
    assert values["colour"] == [None, "red"]
    assert values["flag"] == ["true", "false"]


@pytest.mark.parametrize(
    ("body", "ctype", "status", "words"),
    [
        (b"", "application/json", 400, "empty"),
        (b"[1,", "application/json", 400, "not valid JSON"),
        (b'["\xc3\x28"]', "application/json", 400, "UTF-8"),
        (b"x" * 501, "application/json", 413, "over the limit"),
        ([{"x": 1}], "text/plain", 415, "Content-Type"),
        ({"data": [[1, "a", "true", "2024-01-01"]] * 11}, "application/json", 413, "rows"),
        ({"data": [[1, "a", "true", "yesterday"]]}, "application/json", 422, "'day'"),
        ({"data": [[1, "a", "true", "2024-01-01", 5]]}, "application/json", 422, "4 values"),
        ({"input_data": {"columns": ["x"], "data": [[1]]}}, "application/json", 422, "missing"),
        (
            {"input_data": {"columns": COLS, "data": [[1, "a", "t", None]], "index": [1, 2]}},
            "application/json",
            422,
            "index",
        ),
        ({"data": [[math.inf, "a", "t", None]]}, "application/json", 422, "'x'"),
        (
            [{"x": 1, "colour": "a", "flag": "t", "day": None}, {"x": 1}],
            "application/json",
            422,
            "different columns",
        ),
    ],
)
def test_bad_requests_raise_with_status(body, ctype, status, words):
    with pytest.raises(RequestError) as info:
        parse(body, ctype)
    assert info.value.status == status
    assert words in info.value.message


def test_request_log_rotates_by_size(tmp_path):
    from amlkit.serving.requestlog import RequestLog, read_log

    log = RequestLog(tmp_path, max_bytes=300, backup_count=2)
    for i in range(30):
        log.write([{"request_id": str(i), "row": 0, "value": math.nan}])
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 3 and all(f.startswith("requests-") for f in files)
    records = list(read_log(tmp_path))
    assert records[-1]["value"] is None
    assert all(p.stat().st_size <= 300 for p in tmp_path.iterdir())
    other = RequestLog(tmp_path / "surrogate", max_bytes=300, backup_count=0)
    other.write([{"request_id": "s", "error": "got 'x\ud800'"}])  # json, not orjson, writes it
    assert list(read_log(tmp_path / "surrogate"))[-1]["error"] == "got 'x\ud800'"


@pytest.mark.parametrize(
    ("inputs", "preds", "probs"),
    [
        (
            {"x": [1.5, math.nan, 2e300], "s": ["a", None, 'q,"]']},
            ["a", "b", "c"],
            [[0.1, 0.9]] * 3,
        ),
        ({"x": [-math.inf, 1.0, 3.0], "%s": ["],[", "{}", "\u00e9"]}, [1, None, 2.5], None),
        ({"image": [0, 1, 2]}, [[1, [2]], [3], {"k": 1}], [[[1.0]], [2.0, 3.0], [1.0, "s"]]),
    ],
)
def test_request_line_reads_back_as_the_records_of_its_rows(tmp_path, inputs, preds, probs):
    from amlkit.serving.requestlog import RequestLog, json_bytes, read_log

    common = {"request_id": "r%s", "latency_ms": 1.5, "status": 200}
    records = [{"row": i, "inputs": {c: v[i] for c, v in inputs.items()}} for i in range(3)]
    for i, record in enumerate(records):
        record["prediction"] = preds[i]
        if probs is not None:
            record["probabilities"] = probs[i]
    encoded = {"prediction": json_bytes(preds)}  # as the scoring script: encoded for the answer
    if probs is not None:
        encoded["probabilities"] = json_bytes(probs)
    by_rows = RequestLog(tmp_path / "rows", max_bytes=10**6, backup_count=1)
    by_request = RequestLog(tmp_path / "request", max_bytes=10**6, backup_count=1)
    by_rows.write(records, common)
    by_request.write_columns(common, 3, {"inputs": inputs}, encoded)
    assert len(by_request.path.read_text().splitlines()) == 1
    assert list(read_log(tmp_path / "request")) == list(read_log(tmp_path / "rows"))
    first = next(read_log(tmp_path / "request"))
    assert list(first)[:4] == ["request_id", "latency_ms", "status", "row"]


def test_key_checker_accepts_only_bearer_keys(tmp_path, monkeypatch):
    from amlkit.serving import auth

    monkeypatch.setenv("AMLKIT_ROOT", str(tmp_path))
    keys = auth.show_keys("ep")
    checker = auth.KeyChecker(auth.keys_path("ep"))
    assert checker.check(f"Bearer {keys['primary']}")
    assert checker.check(f"Bearer {keys['secondary']}")
    assert not checker.check(keys["primary"])
    assert not checker.check("Bearer nope")
    assert (auth.keys_path("ep").stat().st_mode & 0o777) == 0o600
    with pytest.raises(ValueError, match="primary or secondary"):
        auth.regenerate_key("ep", "tertiary")
