"""The request log survives torn writes: a damaged line is skipped with a warning naming the
file and line, and a record written after a failed or partial write starts on a fresh line."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import pytest

from amlkit.serving.requestlog import RequestLog, read_log

A = b'{"request_id":"a","status":200}\n'
B = b'{"request_id":"b","status":200}\n'
C = b'{"request_id":"c","status":200}\n'
TORN = b'{"request_id":"torn","status":2'  # a write the disk cut short


@pytest.mark.parametrize(
    ("content", "ids", "damaged"),
    [
        (A + TORN + B + C, ["a", "c"], 2),  # what the old writer did: the next line glued on
        (A + TORN + b"\n" + B, ["a", "b"], 2),
        (A + b"\x00\x00 not json\n" + B, ["a", "b"], 2),
        (A + b"[1, 2]\n" + B, ["a", "b"], 2),
        (A + b'{"request_id":"x","rows":3,"columns":{"prediction":[1]}}\n' + B, ["a", "b"], 2),
        (A + B + TORN, ["a", "b"], None),  # a torn last line: maybe being written now
    ],
    ids=["glued", "torn-middle", "garbage", "not-an-object", "broken-columns", "torn-last"],
)
def test_read_log_skips_a_damaged_line_naming_file_and_line(
    tmp_path, caplog, content, ids, damaged
):
    (tmp_path / "requests-7.jsonl").write_bytes(content)

    records = list(read_log(tmp_path))

    assert [r["request_id"] for r in records] == ids
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    if damaged is None:
        assert warnings == []
    else:
        assert len(warnings) == 1
        assert f"requests-7.jsonl line {damaged} is damaged" in warnings[0]


# A child process writes under a file-size limit (RLIMIT_FSIZE) set just past the log's end:
# the kernel writes part of the next line, then refuses (EFBIG), as a full disk does (ENOSPC).
UNDER_A_LIMIT = """
import resource, sys
from amlkit.serving.requestlog import RequestLog

log = RequestLog(sys.argv[1], max_bytes=10**6, backup_count=1)
log.write([{"request_id": "before", "status": 200}])
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (log.path.stat().st_size + 10, hard))
errors = []
for request_id in ("torn", "refused"):
    try:
        log.write([{"request_id": request_id, "status": 200, "error": "x" * 100}])
    except OSError as exc:
        errors.append(exc.errno)
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
log.write([{"request_id": "after", "status": 200}])
print(errors)
"""


def test_a_write_after_a_partial_write_starts_a_fresh_line(tmp_path, caplog):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", UNDER_A_LIMIT, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [errno.EFBIG, errno.EFBIG]
    (path,) = tmp_path.glob("requests-*.jsonl")
    lines = path.read_bytes().split(b"\n")
    assert len(lines[1]) == 10 and lines[2].startswith(b'{"request_id":"after"')
    assert [r["request_id"] for r in read_log(tmp_path)] == ["before", "after"]
    assert f"{path.name} line 2 is damaged" in caplog.text
    # the server's own log says so once per outage, and when the log takes lines again
    assert done.stderr.count("cannot write the request log") == 1, done.stderr
    assert "takes lines again, after 2 failed writes" in done.stderr


def test_a_log_left_ending_mid_line_gets_the_next_record_on_a_fresh_line(tmp_path):
    log = RequestLog(tmp_path, max_bytes=10**6, backup_count=1)
    log.path.write_bytes(A + TORN)  # a worker of the same pid was killed mid-write

    log.write([{"request_id": "next", "status": 200}])
    log.close()

    assert [r["request_id"] for r in read_log(tmp_path)] == ["a", "next"]


def test_read_log_gives_each_request_its_own_line_key_even_when_ids_repeat(tmp_path):
    log = RequestLog(tmp_path, max_bytes=10**6, backup_count=1)
    for _ in range(3):
        log.write_columns({"request_id": "same", "status": 200}, 2, {"prediction": [1, 2]})
    log.write([{"request_id": "old", "row": i, "status": 200} for i in range(2)])  # a line a row
    log.close()

    keys = [r["log_line"] for r in read_log(tmp_path)]

    name = log.path.name
    assert keys == [f"{name}:{n}" for n in (1, 1, 2, 2, 3, 3, 4, 4)]
