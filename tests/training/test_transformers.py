"""The transformers that travel inside every model, alone and in notebook 04's preprocessing.

The preprocessing tests use ``feature_preprocessor``, the ColumnTransformer notebook 04 builds:
what the web service receives (unseen categories, numbers as strings, ISO dates) must encode
as training did.
"""

import cloudpickle
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from amlkit.training import transformers

FEATURE_TYPES = {
    "x": "numeric",
    "n": "integer",
    "color": "categorical",
    "flag": "boolean",
    "when": "datetime",
}


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "x": [1.0, np.nan, 3.0, 4.0, 5.0, 6.0],
            "n": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            "color": ["red", "blue", None, "red", "blue", "green"],
            "flag": ["true", "false", "true", np.nan, "false", "true"],
            "when": pd.to_datetime(
                ["2020-01-01", "2020-02-03", None, "2021-06-30", "2019-12-31", "2020-03-15"]
            ),
            "ignored": ["a", "b", "c", "d", "e", "f"],
        }
    )


@pytest.fixture
def fitted(feature_preprocessor, frame):
    return feature_preprocessor(FEATURE_TYPES).fit(frame)


def test_preprocessing_output_is_dense_float_without_nan(fitted, frame):
    out = fitted.transform(frame)
    assert isinstance(out, np.ndarray) and out.dtype == np.float64
    assert not np.isnan(out).any()


def test_preprocessing_ignores_unseen_categories_and_imputes_missing(fitted, frame):
    names = fitted.get_feature_names_out()
    request = pd.DataFrame(
        {"x": [np.nan], "n": [None], "color": ["purple"], "flag": [None], "when": [None]}
    )
    out = pd.Series(fitted.transform(request)[0], index=names)
    assert not out.isna().any()
    assert (out[["color_blue", "color_green", "color_missing", "color_red"]] == 0).all()
    assert out["flag_missing"] == 1.0
    # The indicator is scaled with the numeric block: compare with the training row lacking x.
    trained = pd.Series(fitted.transform(frame)[1], index=names)
    assert out["missingindicator_x"] == trained["missingindicator_x"] > 0
    # Missing x is imputed with the training median (4.0), then scaled.
    scaler = fitted.named_transformers_["num"].named_steps["scale"]
    assert out["x"] == pytest.approx((4.0 - scaler.mean_[0]) / scaler.scale_[0])


def test_preprocessing_accepts_request_types_that_differ_from_training(fitted, frame):
    trained = frame.drop(columns="ignored").iloc[[0, 1]].copy()
    request = pd.DataFrame(
        {
            "x": [1.0, None],
            "n": ["1", 2],
            "color": ["red", "blue"],
            "flag": [True, "False"],
            "when": ["2020-01-01", "2020-02-03T00:00:00"],
        }
    )
    np.testing.assert_allclose(fitted.transform(request), fitted.transform(trained))


def test_preprocessing_ignores_column_order_and_extra_columns(fitted, frame):
    shuffled = frame[["when", "ignored", "flag", "color", "n", "x"]]
    np.testing.assert_allclose(fitted.transform(shuffled), fitted.transform(frame))


def test_fitted_preprocessing_survives_a_cloudpickle_round_trip(fitted, frame):
    restored = cloudpickle.loads(cloudpickle.dumps(fitted))
    np.testing.assert_array_equal(restored.transform(frame), fitted.transform(frame))
    assert list(restored.get_feature_names_out()) == list(fitted.get_feature_names_out())


@pytest.mark.parametrize(
    ("value", "boolean", "expected"),
    [
        (3, False, "3"),
        (3.0, False, "3"),
        (np.int64(3), False, "3"),
        (2.5, False, "2.5"),
        (" Biscoe ", False, "Biscoe"),
        (True, False, "true"),
        (np.bool_(False), False, "false"),
        ("TRUE", True, "true"),
        ("yes", True, "true"),
        (0, True, "false"),
        ("maybe", True, "maybe"),
    ],
)
def test_category_normalizer_casts_values_to_strings(value, boolean, expected):
    norm = transformers.CategoryNormalizer(boolean=boolean).fit(pd.DataFrame({"c": ["a"]}))
    assert norm.transform(pd.DataFrame({"c": [value]}))[0, 0] == expected


@pytest.mark.parametrize("missing", [None, np.nan, pd.NA])
def test_category_normalizer_keeps_missing_values_missing(missing):
    norm = transformers.CategoryNormalizer().fit(pd.DataFrame({"c": ["a"]}))
    out = norm.transform(pd.DataFrame({"c": pd.Series(["a", missing], dtype=object)}))
    assert out[0, 0] == "a"
    assert pd.isna(out[1, 0])


def test_categorical_numbers_encode_like_their_training_strings(feature_preprocessor):
    pre = feature_preprocessor({"cyl": "categorical"}).fit(pd.DataFrame({"cyl": ["4", "6", "8"]}))
    as_numbers = pre.transform(pd.DataFrame({"cyl": [4, 6.0, 8]}))
    np.testing.assert_array_equal(as_numbers, np.eye(3))


def test_datetime_features_extracts_calendar_parts():
    dates = pd.DataFrame({"d": pd.to_datetime(["2024-03-01", "2023-12-31"])})
    out = transformers.DatetimeFeatures().fit(dates).transform(dates)
    # 2024-03-01 is a Friday (dayofweek 4), day 61 of a leap year.
    np.testing.assert_array_equal(out, [[2024, 3, 1, 4, 61], [2023, 12, 31, 6, 365]])


def test_datetime_features_reads_iso_strings_and_time_zones_like_datetime64():
    dates = pd.DataFrame(
        {"d": pd.to_datetime(["2024-03-01 10:00", "2023-12-31"], format="ISO8601")}
    )
    tfm = transformers.DatetimeFeatures().fit(dates)
    strings = pd.DataFrame({"d": ["2024-03-01T10:00:00", "2023-12-31"]})
    zoned = pd.DataFrame({"d": ["2024-03-01T12:00:00+02:00", "2023-12-31T00:00:00Z"]})
    np.testing.assert_array_equal(tfm.transform(strings), tfm.transform(dates))
    np.testing.assert_array_equal(tfm.transform(zoned), tfm.transform(dates))


def test_datetime_features_fills_missing_and_unparseable_with_fit_medians():
    dates = pd.DataFrame({"d": pd.to_datetime(["2020-01-10", "2022-01-20", "2024-01-30", None])})
    tfm = transformers.DatetimeFeatures(parts=("year", "day")).fit(dates)
    np.testing.assert_array_equal(tfm.fill_values_, [2022, 20])
    out = tfm.transform(pd.DataFrame({"d": [None, "not a date"]}))
    np.testing.assert_array_equal(out, [[2022, 20], [2022, 20]])


def test_datetime_features_rejects_non_dates_in_fit():
    bad = pd.DataFrame({"d": ["2020-01-01", "n/a", "soon"]})
    with pytest.raises(ValueError, match=r"column 'd' has 2 values that are not dates.*'n/a'"):
        transformers.DatetimeFeatures().fit(bad)


def test_datetime_features_follows_the_sklearn_estimator_contract():
    tfm = transformers.DatetimeFeatures(parts=("month",))
    assert clone(tfm).get_params() == {"parts": ("month",)}
    with pytest.raises(NotFittedError):
        tfm.transform(pd.DataFrame({"d": ["2020-01-01"]}))
    dates = pd.DataFrame({"d": ["2020-01-01"]})
    assert tfm.fit(dates) is tfm
    assert list(tfm.get_feature_names_out()) == ["d_month"]
    with pytest.raises(TypeError):
        transformers.DatetimeFeatures(("month",))  # keyword-only
    # Validation happens in fit, not in __init__.
    unknown = transformers.DatetimeFeatures(parts=("week",))
    with pytest.raises(ValueError, match="week"):
        unknown.fit(dates)


def test_datetime_features_rejects_a_different_number_of_columns():
    tfm = transformers.DatetimeFeatures().fit(pd.DataFrame({"a": ["2020-01-01"]}))
    with pytest.raises(ValueError, match="fitted on 1 columns"):
        tfm.transform(pd.DataFrame({"a": ["2020-01-01"], "b": ["2020-01-01"]}))
