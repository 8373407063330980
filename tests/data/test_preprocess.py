"""Preprocessing: the cleaning rules, content-named processed versions, and notebook 03 itself."""

import json

import numpy as np
import pandas as pd
import pytest

from amlkit import paths
from amlkit.data import ingest, preprocess, profile
from amlkit.data.manifests import ColumnInfo, RawManifest


def raw_manifest(frame: pd.DataFrame, column_kinds: dict[str, str], target: str) -> RawManifest:
    """The manifest 01 would write for ``frame`` (kinds declared, nulls counted)."""
    columns = [
        ColumnInfo(name=c, kind=k, nullable=True, null_count=int(frame[c].isna().sum()))
        for c, k in column_kinds.items()
    ]
    return RawManifest(
        dataset="tiny",
        version="0" * 12,
        sha256="0" * 64,
        size_bytes=1,
        format="csv",
        file="data.csv",
        source="inline",
        rows=len(frame),
        columns=columns,
        target=target,
        task="classification",
        classes=None,
        schema={c: {"type": k} for c, k in column_kinds.items()},
        schema_origin="declared",
        ingested_at="2024-01-01T00:00:00+00:00",
        amlkit_version="0",
    )


TINY = pd.DataFrame(
    {
        "id": [f"row-{i}" for i in range(6)],
        "flag": ["Yes", " no", None, "TRUE", "false", "y"],
        "grade": [1.0, 2.0, 3.0, np.nan, 1.0, 2.0],
        "x": [1.0, 2.0, 3.0, None, 5.0, 6.0],
        "empty": [np.nan] * 6,
        "y": [" a", "b", None, "a", "b", "a"],
    }
)
TINY_KINDS = {
    "id": "text",
    "flag": "boolean",
    "grade": "categorical",
    "x": "numeric",
    "empty": "numeric",
    "y": "categorical",
}


def test_clean_keeps_features_and_says_why_other_columns_are_left_out():
    cleaned = preprocess.clean(TINY, raw_manifest(TINY, TINY_KINDS, "y"))
    assert cleaned.feature_types == {"flag": "boolean", "grade": "categorical", "x": "numeric"}
    assert cleaned.excluded == {
        "id": "ID-like or free text (many distinct values)",
        "empty": "all values missing",
    }
    assert list(cleaned.frame.columns) == ["flag", "grade", "x", "y"]


def test_clean_trims_normalises_labels_and_drops_rows_without_a_target():
    cleaned = preprocess.clean(TINY, raw_manifest(TINY, TINY_KINDS, "y"))
    assert cleaned.dropped_missing_target == 1
    assert cleaned.frame["flag"].tolist() == ["true", "false", "true", "false", "true"]
    assert cleaned.frame["grade"].fillna("-").tolist() == ["1", "2", "-", "1", "2"]
    assert cleaned.frame["y"].tolist() == ["a", "b", "a", "b", "a"]
    effects = cleaned.effects
    assert effects.loc["flag", preprocess.TRIM] == 1
    assert effects.loc["flag", preprocess.BOOLEANS] == 4  # Yes, no, TRUE, y
    assert effects.loc["grade", preprocess.LABELS] == 5  # every number present
    assert effects.loc["y", preprocess.TRIM] == 1
    assert effects.loc["y", preprocess.NO_TARGET] == 1
    assert pd.isna(effects.loc["grade", preprocess.BOOLEANS])


def test_clean_leaves_out_drop_columns_and_refuses_unknown_ones():
    raw = raw_manifest(TINY, TINY_KINDS, "y")
    cleaned = preprocess.clean(TINY, raw, ["x"])
    assert cleaned.excluded["x"] == "listed in drop_columns"
    with pytest.raises(ValueError, match=r"drop_columns \['nope'\] are not columns of 'tiny'"):
        preprocess.clean(TINY, raw, ["nope"])


def test_clean_gives_every_chunk_the_same_columns():
    raw = raw_manifest(TINY, TINY_KINDS, "y")
    chunks = [preprocess.clean(TINY.iloc[i : i + 2], raw) for i in (0, 2, 4)]
    assert {tuple(c.frame.columns) for c in chunks} == {("flag", "grade", "x", "y")}
    whole = preprocess.clean(TINY, raw).frame
    pd.testing.assert_frame_equal(pd.concat([c.frame for c in chunks], ignore_index=True), whole)


@pytest.fixture
def penguin_splits(project):
    ingest.ingest("penguins", progress=False)
    frame, raw = ingest.load_raw("penguins")
    cleaned = preprocess.clean(frame, raw)
    rows = cleaned.frame.sample(frac=1.0, random_state=0).reset_index(drop=True)
    splits = {"train": rows[:200], "validation": rows[200:270], "test": rows[270:]}
    return raw, cleaned, {k: v.reset_index(drop=True) for k, v in splits.items()}


def write(raw, cleaned, splits, params=None):
    params = {"random_state": 0} if params is None else params
    baseline = profile.build_profile(
        splits["train"], feature_types=cleaned.feature_types, target=raw.target, task=raw.task
    )
    return preprocess.write_processed(
        splits, raw=raw, cleaned=cleaned, params=params, stratified=False, profile=baseline
    )


def test_same_content_gives_the_same_version_written_once(penguin_splits):
    first, created = write(*penguin_splits)
    again, created_again = write(*penguin_splits)
    assert created and not created_again
    assert again.manifest == first.manifest
    assert len(preprocess.list_processed("penguins")) == 1
    pd.testing.assert_frame_equal(again.test, first.test)


def test_version_names_the_content_not_the_index_or_the_call(penguin_splits):
    raw, cleaned, splits = penguin_splits
    shifted = {name: part.set_axis(part.index + 1000) for name, part in splits.items()}
    args = {"raw_version": raw.version, "feature_types": cleaned.feature_types, "params": {}}
    assert preprocess.content_version(splits, **args) == preprocess.content_version(shifted, **args)
    assert len(preprocess.content_version(splits, **args)) == 12


@pytest.mark.parametrize("change", ["rows", "values", "params"])
def test_changed_content_or_parameters_give_a_new_version_and_keep_the_old(penguin_splits, change):
    raw, cleaned, splits = penguin_splits
    first, _ = write(raw, cleaned, splits)
    params = None
    if change == "rows":
        splits = {**splits, "train": splits["train"].iloc[::-1].reset_index(drop=True)}
    elif change == "values":
        train = splits["train"].copy()
        train.loc[0, "body_mass_g"] += 1
        splits = {**splits, "train": train}
    else:
        params = {"random_state": 1}
    other, created = write(raw, cleaned, splits, params)
    assert created and other.manifest.version != first.manifest.version
    assert preprocess.load_processed("penguins", first.manifest.version).manifest == (
        first.manifest
    )


def test_written_version_holds_splits_manifest_and_stamped_profile(penguin_splits):
    processed, _ = write(*penguin_splits)
    m = processed.manifest
    assert sorted(p.name for p in processed.path.iterdir()) == [
        "baseline_profile.json",
        "manifest.json",
        "test.parquet",
        "train.parquet",
        "validation.parquet",
    ]
    assert m.rows == {"train": 200, "validation": 70, "test": 74}
    assert m.classes == ["Adelie", "Chinstrap", "Gentoo"]
    assert m.raw_version == penguin_splits[0].version
    assert processed.profile["data_version"] == m.version
    assert processed.profile["reference"] == "train.parquet"
    assert not list(processed.path.parent.glob(".*"))  # no temporary folder left


def test_load_processed_takes_a_processed_version_a_raw_version_or_latest(penguin_splits):
    raw, cleaned, splits = penguin_splits
    first, _ = write(raw, cleaned, splits)
    second, _ = write(raw, cleaned, splits, {"random_state": 1})
    assert preprocess.load_processed("penguins", first.manifest.version).manifest == (
        first.manifest
    )
    assert preprocess.load_processed("penguins", raw.version).manifest == second.manifest
    assert preprocess.load_processed("penguins").manifest == second.manifest


def test_unknown_version_says_what_exists_and_what_to_run(penguin_splits):
    processed, _ = write(*penguin_splits)
    with pytest.raises(FileNotFoundError, match=processed.manifest.version) as err:
        preprocess.load_processed("penguins", "abcdef123456")
    assert "Run 03_data_preprocessing with data_version='abcdef123456'" in str(err.value)


def test_no_processed_data_says_to_run_03(project):
    with pytest.raises(FileNotFoundError, match="run 03_data_preprocessing first"):
        preprocess.load_processed("penguins")


def test_tampered_split_is_refused(penguin_splits):
    processed, _ = write(*penguin_splits)
    (processed.path / "test.parquet").write_bytes(b"changed")
    with pytest.raises(ValueError, match="does not match the sha256"):
        preprocess.load_processed("penguins")


def test_splits_that_do_not_match_the_cleaned_columns_are_refused(penguin_splits):
    raw, cleaned, splits = penguin_splits
    with pytest.raises(ValueError, match="split 'test' is missing"):
        write(raw, cleaned, {**splits, "test": splits["test"].drop(columns="year")})
    assert not (paths.processed_dir() / "penguins").exists()


def test_baseline_profile_has_quantiles_bounds_categories_and_null_rates(penguin_splits):
    raw, cleaned, splits = penguin_splits
    train = splits["train"]
    cols = profile.build_profile(
        train, feature_types=cleaned.feature_types, target=raw.target, task=raw.task
    )["columns"]
    bill = cols["bill_length_mm"]
    assert bill["min"] == train["bill_length_mm"].min()
    assert bill["quantiles"]["0.5"] == pytest.approx(train["bill_length_mm"].median())
    assert sum(bill["bin_counts"]) == train["bill_length_mm"].notna().sum()
    assert set(cols["island"]["categories"]) == {"Biscoe", "Dream", "Torgersen"}
    assert cols["sex"]["null_rate"] == pytest.approx(train["sex"].isna().mean())
    assert cols["species"]["role"] == "target"


@pytest.mark.slow
def test_03_default_run_is_stratified_complete_and_reproducible(
    processed_penguins, execute_notebook, tmp_path
):
    m = processed_penguins.manifest
    assert m.stratified and m.rows == {"train": 206, "validation": 69, "test": 69}
    shares = processed_penguins.train["species"].value_counts(normalize=True)
    test_shares = processed_penguins.test["species"].value_counts(normalize=True)
    assert (shares - test_shares).abs().max() < 0.03
    assert set(processed_penguins.train.columns) == {*m.feature_types, "species"}
    execute_notebook("03_data_preprocessing.ipynb", tmp_path / "again.ipynb")
    assert [v.version for v in preprocess.list_processed("penguins")] == [m.version]


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["seattle_weather", "cars"])
def test_02_and_03_run_on_other_real_datasets(project, execute_notebook, tmp_path, dataset):
    ingest.ingest(dataset, progress=False)
    execute_notebook("02_exploratory_analysis.ipynb", tmp_path / "02.ipynb", dataset=dataset)
    execute_notebook("03_data_preprocessing.ipynb", tmp_path / "03.ipynb", dataset=dataset)
    processed = preprocess.load_processed(dataset)
    m = processed.manifest
    if dataset == "cars":
        assert m.task == "regression" and not m.stratified
        assert m.dropped_missing_target == 8
        assert m.excluded_columns == {"Name": "ID-like or free text (many distinct values)"}
        assert m.feature_types["Year"] == "datetime"
    else:
        assert m.stratified and m.feature_types["date"] == "datetime"
        assert m.classes == ["drizzle", "fog", "rain", "snow", "sun"]
    datetime = next(c for c, k in m.feature_types.items() if k == "datetime")
    assert str(processed.train.dtypes[datetime]).startswith("datetime64")
    summary = json.loads((tmp_path / "03.ipynb").read_text())["cells"][-1]["outputs"][0]
    assert m.version in "".join(summary["data"]["text/plain"])


def test_a_processed_version_without_its_manifest_is_named_not_skipped(penguin_splits):
    from amlkit.data.manifests import IncompleteVersionError

    raw, cleaned, splits = penguin_splits
    older, _ = write(raw, cleaned, splits, {"random_state": 1})
    newest, _ = write(raw, cleaned, splits)
    (newest.path / "manifest.json").unlink()
    hint = rf"{newest.path} has no manifest\.json.*Remove the folder .* run 03_data_preprocessing"

    for version in ("latest", raw.version):  # what 04 and 07 ask for
        with pytest.raises(IncompleteVersionError, match=hint):
            preprocess.load_processed("penguins", version)
    with pytest.raises(IncompleteVersionError, match=hint):  # 03 again, same content
        write(raw, cleaned, splits)
    assert preprocess.load_processed("penguins", older.manifest.version).path == older.path
