"""Generated request bodies against a real azmlinfsrv: never a 500.

Every valid body (any accepted shape, any encoding json reads, NaN as a missing number,
unseen categories) gets a 200 with one prediction per row; every invalid one (arbitrary JSON,
wrong value types, huge numbers, Infinity, deep nesting, broken bytes, wrong shapes) gets a
4xx JSON answer that says what is wrong. The cases Hypothesis found stay as ``@example``s.
The pickled pipeline (the backend when ONNX is refused) answers valid bodies with a 200, or a
422 for values its own checks refuse (a forest past float32), never a 500.
"""

from __future__ import annotations

import http.client
import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.slow

NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
CATEGORICAL = ["island", "sex"]
FEATURES = NUMERIC + CATEGORICAL
SHAPE_KEYS = {"input_data", "dataframe_split", "dataframe_records", "data"}
ROW = [39.1, 18.7, 181.0, 3750.0, "Torgersen", "male"]
FUZZ = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

numbers = st.one_of(
    st.none(),
    st.floats(allow_infinity=False),  # NaN is a missing number, as null is
    st.integers(min_value=-(10**300), max_value=10**300),
)
categories = st.one_of(st.none(), st.text(max_size=12))
rows = st.lists(
    st.tuples(*[numbers] * len(NUMERIC), *[categories] * len(CATEGORICAL)).map(list),
    min_size=1,
    max_size=12,
)
shapes = st.sampled_from(["records", "input_data", "index", "split", "data", "nested_records"])
encodings = st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-32"])


def shaped(shape: str, values: list[list]) -> object:
    """A JSON value in one of the accepted request shapes."""
    if shape in ("records", "nested_records"):
        records = [dict(zip(FEATURES, row, strict=True)) for row in values]
        return records if shape == "records" else {"dataframe_records": records}
    if shape == "data":
        return {"data": values}
    index = {"index": list(range(len(values)))} if shape == "index" else {}
    key = "dataframe_split" if shape == "split" else "input_data"
    return {key: {"columns": FEATURES, "data": values, **index}}


def post(endpoint, body: bytes) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=30)
    try:
        conn.request("POST", "/score", body=body, headers=endpoint.headers())
        resp = conn.getresponse()
        status, raw = resp.status, resp.read()
    finally:
        conn.close()
    assert resp.getheader("Content-Type") == "application/json", (status, raw[:300])
    return status, json.loads(raw)


def assert_refused(endpoint, body: bytes) -> None:
    status, answer = post(endpoint, body)
    assert 400 <= status < 500, (status, answer, body[:200])
    assert answer["error"], answer


@pytest.fixture(scope="module")
def endpoint(penguins_service):
    from amlkit.serving.server import serve

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AMLKIT_ROOT", str(penguins_service.root))
        with serve(penguins_service.folder, port=0, workers=1) as handle:
            yield handle


@FUZZ
@given(values=rows, shape=shapes, encoding=encodings)
@example(values=[ROW], shape="records", encoding="utf-8")
def test_valid_bodies_get_200(endpoint, values, shape, encoding):
    body = json.dumps(shaped(shape, values)).encode(encoding)
    status, answer = post(endpoint, body)
    assert status == 200, (answer, body[:300])
    assert len(answer["predictions"]) == len(values)
    assert all(len(p) == 3 for p in answer["probabilities"])


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.text(max_size=8).filter(lambda k: k not in SHAPE_KEYS), inner, max_size=4
        )
    ),
    max_leaves=20,
)
wrong_numbers = st.one_of(
    st.text(max_size=5),
    st.booleans(),
    st.sampled_from([float("inf"), float("-inf"), 10**400, -(10**309)]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
wrong_categories = st.one_of(
    st.floats(), st.integers(), st.booleans(), st.lists(st.text(), max_size=2)
)


@FUZZ
@given(value=json_values)
@example(value={"input_data": None})
@example(value=[{}])  # records without columns: a 500 once the records became tuples
@example(value=[{"island": "Dream"}])  # records of a single column
def test_arbitrary_json_gets_4xx(endpoint, value):
    assert_refused(endpoint, json.dumps(value).encode())


@FUZZ
@given(values=rows, shape=shapes, data=st.data())
@example(values=[ROW], shape="records", data=None)  # filled in below: a 10**400 body mass
def test_wrong_value_types_get_4xx(endpoint, values, shape, data):
    if data is None:
        row, col, bad = 0, 3, 10**400
    else:
        row = data.draw(st.integers(0, len(values) - 1))
        col = data.draw(st.integers(0, len(FEATURES) - 1))
        bad = data.draw(wrong_numbers if col < len(NUMERIC) else wrong_categories)
    values[row][col] = bad
    assert_refused(endpoint, json.dumps(shaped(shape, values)).encode())


def with_columns(shape: str, values: list[list], columns: list[str]) -> object:
    """A body in ``shape`` whose rows hold ``columns`` instead of the model's features."""
    if shape in ("records", "nested_records"):
        records = [dict(zip(columns, row, strict=True)) for row in values]
        return records if shape == "records" else {"dataframe_records": records}
    body = shaped(shape, values)
    if shape != "data":
        next(iter(body.values()))["columns"] = columns  # type: ignore[attr-defined]
    return body


@FUZZ
@given(values=rows, shape=shapes, data=st.data())
def test_wrong_shapes_get_4xx(endpoint, values, shape, data):
    how = data.draw(st.sampled_from(["drop", "extra", "ragged", "scalar_rows", "truncate"]))
    if how == "drop":
        col = data.draw(st.integers(0, len(FEATURES) - 1))
        cut = [r[:col] + r[col + 1 :] for r in values]
        body = with_columns(shape, cut, FEATURES[:col] + FEATURES[col + 1 :])
    elif how == "extra":
        body = with_columns(shape, [[*r, 1.0] for r in values], [*FEATURES, "colour"])
    elif how == "ragged":
        values[-1] = values[-1][:-1]
        body = {"data": values}
    elif how == "scalar_rows":
        body = {"data": [data.draw(st.integers() | st.text(max_size=3) | st.none())]}
    else:
        raw = json.dumps(shaped(shape, values)).encode()
        assert_refused(endpoint, raw[: data.draw(st.integers(0, len(raw) - 1))])
        return
    assert_refused(endpoint, json.dumps(body).encode())


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 200_000 + b"]" * 200_000,  # deeper than json's recursion limit
        b'{"data": [[' + b"[" * 5_000 + b"1" + b"]" * 5_000 + b', 1, 1, 1, "a", "b"]]}',
        b'{"data": [[' + b"9" * 5_000 + b', 1, 1, 1, "a", "b"]]}',  # over int digit limit
        b'{"data": [[1e999, 1, 1, 1, "a", "b"]]}',
        b'{"data": [[Infinity, 1, 1, 1, "a", "b"]]}',
        b'{"data": [[1, 1, 1, 1, NaN, "b"]]}',
        b'{"data": [[1, 1, 1, 1, "\\ud800", "b"]]}',  # a lone surrogate
        b'{"data": [[1, 1, 1, 1, "\xe9", "b"]]}',  # latin-1, not UTF-8
        b"\xff\xfe\x00\x00",
        b"\x00" * 16,
        b"   \n\t ",
        b"null",
        b'"a"',
        b"1e999",
    ],
    ids=lambda b: repr(b[:24]),
)
def test_malformed_bytes_get_4xx(endpoint, body):
    assert_refused(endpoint, body)


# --- the pickled pipeline (the backend when ONNX is refused): the same contract ---


@pytest.fixture(scope="module")
def pickled_endpoint(penguins_service, tmp_path_factory):
    from amlkit.serving.package import package_service, service_info
    from amlkit.serving.server import serve

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AMLKIT_ROOT", str(penguins_service.root))
        folder = package_service(penguins_service.version, service="pickled", fast_path=False)
        assert service_info(folder)["backend"] == "sklearn"
        with serve(folder, port=0, workers=1) as handle:
            yield handle


float32_numbers = st.one_of(
    st.none(),
    st.floats(min_value=-1e30, max_value=1e30),
    st.integers(min_value=-(10**30), max_value=10**30),
)
float32_rows = st.lists(
    st.tuples(*[float32_numbers] * len(NUMERIC), *[categories] * len(CATEGORICAL)).map(list),
    min_size=1,
    max_size=12,
)


@FUZZ
@given(values=rows, shape=shapes)
@example(values=[[1e300, 18.7, 181.0, 3750.0, "Torgersen", "male"]], shape="data")
def test_pickled_pipeline_answers_valid_bodies_without_a_500(pickled_endpoint, values, shape):
    status, answer = post(pickled_endpoint, json.dumps(shaped(shape, values)).encode())
    if status == 200:
        assert len(answer["predictions"]) == len(values)
    else:  # scikit-learn's forest refuses values past float32: the service says so
        assert status == 422 and "the model cannot score these rows" in answer["error"], answer


@FUZZ
@given(values=float32_rows, shape=shapes)
def test_pickled_pipeline_scores_values_within_float32(pickled_endpoint, values, shape):
    status, answer = post(pickled_endpoint, json.dumps(shaped(shape, values)).encode())
    assert status == 200, answer
    assert len(answer["predictions"]) == len(values)
