"""Endpoint keys: the checker reads a real keys file; refusals are counted, rate-limited."""

from __future__ import annotations

import json
import logging

import pytest

from amlkit.serving.auth import KeyChecker, KeysFileError

KEYS = {"primary": "p-key", "secondary": "s-key"}


@pytest.fixture
def keys_file(tmp_path):
    path = tmp_path / "endpoints" / "demo" / "keys.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(KEYS))
    return path


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        ("Bearer p-key", True),
        ("bearer s-key", True),
        ("BEARER p-key", True),
        ("Bearer  p-key ", True),
        ("Bearer wrong", False),
        ("Basic p-key", False),
        ("Bearer", False),
        ("p-key", False),
        (None, False),
    ],
)
def test_key_checker_takes_the_bearer_scheme_in_any_case(keys_file, header, ok):
    assert KeyChecker(keys_file).check(header) is ok


@pytest.mark.parametrize(
    ("content", "words"),
    [(None, "cannot be read"), ("{not json", "not readable JSON"), ("{}", "holds no keys")],
    ids=["missing", "corrupt", "empty"],
)
def test_key_checker_refuses_to_start_on_a_broken_keys_file(keys_file, content, words):
    if content is None:
        keys_file.unlink()
    else:
        keys_file.write_text(content)
    with pytest.raises(KeysFileError, match=words) as info:
        KeyChecker(keys_file)
    assert str(keys_file) in str(info.value)


def test_keys_file_broken_while_serving_keeps_the_last_keys_and_logs_it(keys_file, caplog):
    checker = KeyChecker(keys_file)
    keys_file.unlink()
    with caplog.at_level(logging.ERROR, logger="amlkit.serving.auth"):
        assert checker.check("Bearer p-key") and checker.check("Bearer p-key")
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "the keys read before stay in force" in errors[0]


def test_refusals_are_counted_in_one_warning_not_one_line_each(keys_file, caplog):
    checker = KeyChecker(keys_file)
    with caplog.at_level(logging.WARNING, logger="amlkit.serving.auth"):
        for _ in range(500):
            assert not checker.check("Bearer wrong")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "requests refused for a missing or wrong key: 1 so far (latest: a key "
        "that is not the endpoint's)"
    ]
    assert checker.refusals.count == 500
