"""Preprocessing: cleaning, seeded splits, immutable processed versions, baseline profile."""

import pandas as pd
import pytest

from amlkit.data import ingest, preprocess
from amlkit.data.preprocess import clean, split


@pytest.fixture
def penguins(project):
    ingest.ingest("penguins", progress=False)
    return project


def test_default_split_is_stratified_and_complete(penguins):
    processed, created = preprocess.preprocess("penguins")
    m = processed.manifest
    assert created and m.stratified
    assert sum(m.rows.values()) == 344
    assert m.rows == {"train": 206, "validation": 69, "test": 69}
    shares = processed.train["species"].value_counts(normalize=True)
    test_shares = processed.test["species"].value_counts(normalize=True)
    assert (shares - test_shares).abs().max() < 0.03
    assert set(processed.train.columns) == {*m.feature_types, "species"}


def test_same_inputs_give_the_same_version_written_once(penguins):
    first, created = preprocess.preprocess("penguins")
    again, created_again = preprocess.preprocess("penguins")
    assert created and not created_again
    assert again.manifest.version == first.manifest.version
    pd.testing.assert_frame_equal(first.test, again.test)


def test_other_parameters_give_a_new_version_and_keep_the_old(penguins):
    first, _ = preprocess.preprocess("penguins")
    other, _ = preprocess.preprocess("penguins", split_params={"random_state": 7})
    assert other.manifest.version != first.manifest.version
    assert preprocess.load_processed("penguins", first.manifest.version).manifest == (
        first.manifest
    )


def test_tampered_split_is_refused(penguins):
    processed, _ = preprocess.preprocess("penguins")
    (processed.path / "test.parquet").write_bytes(b"changed")
    with pytest.raises(ValueError, match="does not match the sha256"):
        preprocess.load_processed("penguins")


def test_baseline_profile_has_quantiles_bounds_categories_and_null_rates(penguins):
    processed, _ = preprocess.preprocess("penguins")
    cols = processed.profile["columns"]
    bill = cols["bill_length_mm"]
    assert bill["min"] == processed.train["bill_length_mm"].min()
    assert bill["quantiles"]["0.5"] == pytest.approx(processed.train["bill_length_mm"].median())
    assert sum(bill["bin_counts"]) == processed.train["bill_length_mm"].notna().sum()
    assert set(cols["island"]["categories"]) == {"Biscoe", "Dream", "Torgersen"}
    assert cols["sex"]["null_rate"] == pytest.approx(processed.train["sex"].isna().mean())
    assert cols["species"]["role"] == "target"


def test_clean_drops_missing_target_excludes_text_and_normalises_booleans():
    frame = pd.DataFrame(
        {
            "id": [f"row-{i}" for i in range(6)],
            "flag": ["Yes", "no", None, "TRUE", "false", "y"],
            "x": [1.0, 2.0, 3.0, None, 5.0, 6.0],
            "y": ["a", "b", None, "a", "b", "a"],
        }
    )
    schema = {
        "id": {"type": "text"},
        "flag": {"type": "boolean"},
        "x": {"type": "numeric"},
        "y": {"type": "categorical"},
    }
    cleaned, features, excluded, dropped = clean(frame, schema, target="y", drop_columns=[])
    assert dropped == 1
    assert features == {"flag": "boolean", "x": "numeric"}
    assert "id" in excluded
    assert cleaned["flag"].tolist() == ["true", "false", "true", "false", "true"]


def test_regression_split_is_plain_and_seeded():
    frame = pd.DataFrame({"x": range(100), "y": [float(i) for i in range(100)]})
    kwargs = dict(target="y", task="regression", test_size=0.2, validation_size=0.2, stratify=True)
    a, stratified = split(frame, random_state=1, **kwargs)
    b, _ = split(frame, random_state=1, **kwargs)
    assert not stratified
    pd.testing.assert_frame_equal(a["test"], b["test"])
    assert [len(a[k]) for k in ("train", "validation", "test")] == [60, 20, 20]


def test_impossible_split_sizes_are_refused():
    frame = pd.DataFrame({"x": range(10), "y": [0, 1] * 5})
    with pytest.raises(ValueError, match="sum to less than 1"):
        split(
            frame,
            target="y",
            task="classification",
            test_size=0.6,
            validation_size=0.5,
            random_state=0,
            stratify=True,
        )


@pytest.mark.parametrize("dataset", ["seattle_weather", "cars"])
def test_other_real_datasets_preprocess(project, dataset):
    ingest.ingest(dataset, progress=False)
    processed, _ = preprocess.preprocess(dataset)
    m = processed.manifest
    if dataset == "cars":
        assert m.task == "regression" and m.dropped_missing_target == 8
        assert m.excluded_columns == {"Name": "ID-like or free text (many distinct values)"}
        assert m.feature_types["Year"] == "datetime"
    else:
        assert m.feature_types["date"] == "datetime"
        assert m.classes == ["drizzle", "fog", "rain", "snow", "sun"]
    assert str(
        processed.train.dtypes[next(c for c, k in m.feature_types.items() if k == "datetime")]
    ).startswith("datetime64")
