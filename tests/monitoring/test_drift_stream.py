import contextlib
import io
import json

import numpy as np
import pandas as pd
import pytest

from amlkit.data import profile
from amlkit.monitoring import drift, drift_stream, quality

KINDS = {
    "shifted": "numeric",
    "rescaled": "numeric",
    "near_threshold": "numeric",
    "calm": "numeric",
    "skewed": "numeric",
    "count": "integer",
    "when": "datetime",
    "colour": "categorical",
    "flag": "boolean",
}
# Stated tolerances against compute_drift on the rows: the decision metric to 1e-3 (its
# threshold is 0.1), KS to one fine bin's share; PSI, Jensen-Shannon, chi-squared exact.
TOLERANCE = {
    "normalized_wasserstein_distance": 1e-3,
    "wasserstein_distance": 1e-3,
    "ks_statistic": 2 / profile.SKETCH_BINS,
    "jensen_shannon_distance": 1e-12,
    "population_stability_index": 1e-12,
    "chi_squared_statistic": 1e-6,
}


def _frame(rng: np.random.Generator, n: int, drifted: bool) -> pd.DataFrame:
    shift = 1.0 if drifted else 0.0
    start = pd.Timestamp("2024-01-01")
    days = rng.uniform(0, 365 + 60 * shift, n)
    frame = pd.DataFrame(
        {
            "shifted": rng.normal(10 + 0.5 * shift, 2, n),
            "rescaled": rng.normal(0, 1 + 0.3 * shift, n),
            "near_threshold": rng.normal(0.12 * shift, 1, n),
            "calm": rng.normal(5, 3, n),
            "skewed": rng.lognormal(0, 1 + 0.05 * shift, n),
            "count": rng.poisson(3 + shift, n).astype(float),
            "when": start + pd.to_timedelta(days, unit="D"),
            "colour": rng.choice(["red", "green", "blue", "1"], n, p=[0.4, 0.3, 0.2, 0.1]),
            "flag": rng.choice([True, False], n, p=[0.5 + 0.2 * shift, 0.5 - 0.2 * shift]),
        }
    )
    frame.loc[::97, "calm"] = np.nan
    frame.loc[::89, "colour"] = None
    if drifted:
        frame.loc[::50, "colour"] = "purple"  # a label the reference never had
    return frame


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    rng = np.random.default_rng(20240601)
    reference, current = _frame(rng, 50_000, False), _frame(rng, 200_000, True)
    return (
        reference,
        current,
        {"rows": len(reference), "columns": quality.build_profile(reference, KINDS)},
    )


def _stream(prof: dict, current: pd.DataFrame, chunk: int = 30_000) -> drift_stream.StreamingDrift:
    counter = drift_stream.StreamingDrift(prof)
    for start in range(0, len(current), chunk):
        counter.update(current.iloc[start : start + chunk])
    return counter


def test_streaming_flags_the_columns_compute_drift_flags_with_close_statistics(data):
    reference, current, prof = data
    expected = drift.compute_drift(reference, current, KINDS).set_index("column")
    got = _stream(prof, current).result().set_index("column")
    assert list(got.columns) == list(expected.columns)
    assert got["drifted"].to_dict() == expected["drifted"].to_dict()
    assert set(got.index[got["drifted"]]) == {
        "shifted",
        "rescaled",
        "near_threshold",
        "count",
        "when",
        "flag",
        "colour",
    }
    assert (got[["n_reference", "n_current"]] == expected[["n_reference", "n_current"]]).all().all()
    for metric, tolerance in TOLERANCE.items():
        gap = (got[metric] - expected[metric]).abs().max()
        assert gap <= tolerance, f"{metric} differs by {gap}"
        assert got[metric].isna().equals(expected[metric].isna())


def test_merging_two_halves_equals_one_pass(data):
    _, current, prof = data
    whole = _stream(prof, current)
    half = len(current) // 2
    merged = _stream(prof, current.iloc[:half]).merge(_stream(prof, current.iloc[half:]))
    assert merged.rows == whole.rows == len(current)
    for column, state in whole.counts.items():
        assert state.labels == merged.counts[column].labels
        if state.numeric is not None:
            assert np.array_equal(state.numeric, merged.counts[column].numeric)
            assert np.allclose(state.offsets, merged.counts[column].offsets, rtol=1e-12)
    pd.testing.assert_frame_equal(merged.result(), whole.result(), rtol=1e-9)


def test_wasserstein_from_the_sketch_is_exact_beyond_the_reference_range():
    ref = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]})
    prof = {"columns": quality.build_profile(ref, {"x": "numeric"})}
    counter = drift_stream.StreamingDrift(prof).update(
        pd.DataFrame({"x": [10.0, 11.0, 12.0, 13.0]})
    )
    row = counter.result().iloc[0]
    # every value moved by 10: W = 10, over the reference's ddof=1 std sqrt(5/3)
    assert row["wasserstein_distance"] == pytest.approx(10.0)
    assert row["normalized_wasserstein_distance"] == pytest.approx(10.0 / np.sqrt(5 / 3))
    assert row["ks_statistic"] == 1.0 and row["drifted"]


def test_files_stream_in_chunks_with_labels_read_as_text(data, tmp_path):
    _, current, prof = data
    part = current.iloc[:40_000]
    in_memory = _stream(prof, part).result()
    part.to_parquet(tmp_path / "rows.parquet", row_group_size=7_000)
    part.to_csv(tmp_path / "rows.csv", index=False)
    for name in ("rows.parquet", "rows.csv"):
        streamed, rows = drift_stream.drift_of_file(tmp_path / name, prof, batch_rows=5_000)
        assert rows == len(part)
        pd.testing.assert_frame_equal(streamed, in_memory, rtol=1e-9, check_exact=False)


def test_a_profile_without_sketches_names_the_fix():
    columns = quality.build_profile(pd.DataFrame({"x": [1.0, 2.0]}), {"x": "numeric"})
    del columns["x"]["sketch"]
    with pytest.raises(ValueError, match=r"no drift sketch .*'x'.*re-run 03_data_preprocessing"):
        drift_stream.StreamingDrift({"columns": columns})


def test_missing_columns_text_and_empty_columns_get_compute_drifts_notes():
    ref = pd.DataFrame({"x": [1.0, 2.0, 3.0], "gone": [np.nan] * 3, "t": ["a", "b", "c"]})
    cur = pd.DataFrame({"gone": [1.0], "t": ["a"], "absent": [2.0]})
    kinds = {"x": "numeric", "gone": "numeric", "t": "text", "absent": "numeric"}
    prof = {"rows": 3, "columns": quality.build_profile(ref.assign(absent=1.0), kinds)}
    del prof["columns"]["absent"]
    streamed = drift_stream.StreamingDrift(prof, kinds).update(cur).result()
    notes = streamed.set_index("column")["note"].to_dict()
    assert notes == {
        "x": "column missing from current data",
        "gone": "no values to compare (all missing)",
        "t": "text: not compared",
        "absent": "column missing from reference data",
    }
    expected = drift.compute_drift(ref, cur, kinds)
    pd.testing.assert_frame_equal(streamed, expected)


def test_psi_bins_other_than_the_profiles_are_refused(data):
    _, current, prof = data
    with pytest.raises(ValueError, match="holds 10 PSI bins, but 20 were asked"):
        _stream(prof, current.iloc[:1000]).result(bins=20)


def test_monitor_streaming_flags_what_the_in_memory_drift_flags(processed_penguins, tmp_path):
    from amlkit import paths
    from amlkit.cli.main import main

    rows = pd.concat([processed_penguins.validation, processed_penguins.test]).reset_index(
        drop=True
    )
    rows["body_mass_g"] = rows["body_mass_g"] * 1.6
    rows["island"] = "Biscoe"
    rows.to_parquet(tmp_path / "production.parquet", row_group_size=50)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(
            [
                "monitor",
                "--streaming",
                "--production",
                str(tmp_path / "production.parquet"),
                "--json",
            ]
        )
    summary = json.loads(out.getvalue())
    features = processed_penguins.manifest.feature_types
    expected = drift.compute_drift(processed_penguins.train, rows, features)
    assert code == 0 and summary["rows"] == len(rows)
    assert summary["drifted_features"] == expected.loc[expected["drifted"], "column"].tolist()
    assert {"body_mass_g", "island"} <= set(summary["drifted_features"])
    written = json.loads((paths.project_root() / summary["drift_json"]).read_text())
    assert [row["column"] for row in written["drift"]] == list(features)


def test_monitor_streaming_needs_a_production_file(processed_penguins):
    from amlkit.cli.main import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["monitor", "--streaming"]) == 2
    assert "--streaming reads a production file" in err.getvalue()
