"""Benchmark: expected error before labels (direct loss estimation) against NannyML's DLE.

The protocol of ``performance_estimation_benchmark.py``, for regression. Bundled data sets
with a numeric target: cars (its configured target, miles per gallon), and two more targets
of the other bundled sets, since no second regression set is bundled: seattle_weather's
``temp_max`` and penguins' ``body_mass_g``. Each is ingested into a throw-away project root
of its own and cleaned as notebook 03 does, split 60/20/20 (train, reference, production;
seeded), and a 200-tree random forest behind notebook 04's default preprocessing (that benchmark's
``preprocessor``) is fitted on the train rows. The error model
(:func:`amlkit.monitoring.expected_error.fit`) and NannyML 0.13's DLE are fitted on the same
reference rows (inputs, prediction, target), and both estimate the same windows drawn from the
production rows by the traffic simulator: undrifted, drifted (its default drift at
intensities 0.5 to 2), label-shifted (rows drawn with weights rising with the target), and
undrifted and drifted windows of 1,000 and 5,000 rows. NannyML runs in its own environment
(``benchmarks/peers.py``), usage analytics off. It prints every window, then the mean
absolute error of estimated against realized MAE per data set and window type for both,
their ratio, and the coverage of amlkit's 95% interval and of NannyML's confidence band.

With ``--keras`` it adds the Keras classifier case: a small Keras network on the penguins'
preprocessed inputs, its probabilities fed to amlkit's estimate
(:mod:`amlkit.monitoring.performance`) and to NannyML's CBPE on the same windows.

    .venv/bin/python benchmarks/regression_estimation_benchmark.py [--windows 8] [--splits 1]
        [--keras]

``--splits`` repeats the whole protocol on further seeded splits: with a few dozen
production rows per data set, every window of one split resamples the same rows, so one
split measures one reference against one production sample.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import peers
from performance_estimation_benchmark import load, preprocessor
from sklearn.ensemble import RandomForestRegressor
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from amlkit.monitoring import expected_error, performance, quality, traffic

ROOT = Path(__file__).resolve().parents[1]
DATASETS = {"cars": "Miles_per_Gallon", "seattle_weather": "temp_max", "penguins": "body_mass_g"}
INTENSITIES = (0.5, 1.0, 1.5, 2.0)
LARGE = (1000, 5000)
SEED = 42

DLE_SCRIPT = r"""
import json, sys, warnings
warnings.filterwarnings("ignore")
import pandas as pd

# NannyML 0.13 encodes labels through numpy object arrays; pandas 3 would make them arrow text
pd.set_option("future.infer_string", False)
import nannyml as nml

payload = json.load(sys.stdin)
features, categorical = payload["features"], payload["categorical"]


def frame(records):
    out = pd.DataFrame(records)
    for column in categorical:
        out[column] = pd.Categorical(out[column], categories=payload["categories"][column])
    return out


estimator = nml.DLE(
    feature_column_names=features, y_pred="y_pred", y_true="y_true",
    metrics=["mae", "rmse"], chunk_number=1, tune_hyperparameters=False,
)
estimator.fit(frame(payload["reference"]))
answers = []
for window in payload["windows"]:
    result = estimator.estimate(frame(window)).to_df()
    result = result[result[("chunk", "period")] == "analysis"]  # the reference chunk comes first
    answers.append({
        "mae": float(result[("mae", "value")].iloc[0]),
        "mae_low": float(result[("mae", "lower_confidence_boundary")].iloc[0]),
        "mae_high": float(result[("mae", "upper_confidence_boundary")].iloc[0]),
        "rmse": float(result[("rmse", "value")].iloc[0]),
    })
print(json.dumps(answers))
"""

CBPE_SCRIPT = r"""
import json, sys, warnings
warnings.filterwarnings("ignore")
import pandas as pd
import nannyml as nml

payload = json.load(sys.stdin)
classes = payload["classes"]
columns = {c: f"p_{i}" for i, c in enumerate(classes)}
estimator = nml.CBPE(
    problem_type="classification_multiclass", y_pred_proba=columns, y_pred="y_pred",
    y_true="y_true", metrics=["accuracy"], chunk_number=1,
)
estimator.fit(pd.DataFrame(payload["reference"]))
answers = []
for window in payload["windows"]:
    result = estimator.estimate(pd.DataFrame(window)).to_df()
    result = result[result[("chunk", "period")] == "analysis"]
    answers.append(float(result[("accuracy", "value")].iloc[0]))
print(json.dumps(answers))
"""


def load_regression(dataset: str, target: str) -> tuple[pd.DataFrame, dict[str, str]]:
    """Ingest a bundled set with ``target`` as a regression target; return rows and kinds.

    ``load`` of the classification benchmark ingests as a classification; a numeric target
    needs the regression task, then the same cleaning.
    """
    from amlkit.data import ingest, preprocess

    ingest.ingest(dataset, target=target, task="regression", progress=False)
    frame, raw = ingest.load_raw(dataset)
    cleaned = preprocess.clean(frame, raw)
    return cleaned.frame, cleaned.feature_types


def window_plan(n_windows: int, n_rows: int) -> list[tuple[str, int, float]]:
    """Return (kind, rows, drift intensity) of every window, in order."""
    plan = [("undrifted", n_rows, 0.0)] * n_windows
    plan += [("drifted", n_rows, INTENSITIES[i % len(INTENSITIES)]) for i in range(n_windows)]
    plan += [("label shift", n_rows, 0.0)] * max(1, n_windows // 2)
    plan += [(f"undrifted {n}", n, 0.0) for n in LARGE]
    plan += [(f"drifted {n}", n, 1.0) for n in LARGE]
    return plan


def draw(
    production: pd.DataFrame, kind: str, n: int, intensity: float, seed: int, **context: Any
) -> pd.DataFrame:
    """Draw one window's rows: sampled, label-shifted (weights rise with the target), drifted."""
    if kind == "label shift":
        rank = production[context["target"]].rank(pct=True).to_numpy()
        weights = np.exp(3 * rank)
        rows = production.sample(n, replace=True, weights=weights, random_state=seed)
        return rows.reset_index(drop=True)
    rows = traffic.sample_rows(production, n, seed=seed)
    spec = traffic.default_drift(context["feature_types"], context["profile"], intensity)
    return traffic.apply_drift(rows, spec, context["profile"], seed=seed)


def peer_records(frame: pd.DataFrame, feature_types: dict[str, str]) -> list[dict[str, Any]]:
    """Return rows as JSON records for the peer: dates as years, labels as text."""
    out = frame.copy()
    for column, kind in feature_types.items():
        if kind == "datetime":
            out[column] = pd.to_datetime(out[column]).dt.year + pd.to_datetime(
                out[column]
            ).dt.dayofyear.div(366)
        elif kind in ("categorical", "boolean"):
            out[column] = out[column].astype("string").fillna("missing").astype(str)
    return out.astype(object).where(out.notna(), None).to_dict(orient="records")


def regression_windows(
    dataset: str, target: str, n_windows: int, n_rows: int, split_seed: int = SEED
) -> pd.DataFrame:
    """Return one row per window: estimated MAE (amlkit, NannyML), interval, realized MAE."""
    frame, feature_types = load_regression(dataset, target)
    frame = frame.dropna(subset=[target]).reset_index(drop=True)
    features = list(feature_types)
    train, rest = train_test_split(frame, test_size=0.4, random_state=split_seed)
    reference, production = train_test_split(rest, test_size=0.5, random_state=split_seed)
    production = production.reset_index(drop=True)
    model = Pipeline(
        [
            ("preprocess", preprocessor(feature_types)),
            ("model", RandomForestRegressor(n_estimators=200, random_state=0, n_jobs=1)),
        ]
    ).fit(train[features], train[target])
    reference_pred = model.predict(reference[features])
    errors = expected_error.fit(
        reference[features], reference[target], reference_pred, feature_types
    )
    profile = {"columns": quality.build_profile(train, feature_types)}
    context = {"feature_types": feature_types, "profile": profile, "target": target}
    out, peer_windows = [], []
    for i, (kind, n, intensity) in enumerate(window_plan(n_windows, n_rows)):
        rows = draw(production, kind, n, intensity, seed=i, **context)
        pred = model.predict(rows[features])
        estimate = errors.estimate(rows[features], pred)
        assert estimate is not None
        realized = np.abs(rows[target].to_numpy(dtype=float) - pred)
        out.append(
            {
                "dataset": dataset,
                "split": split_seed,
                "window": kind,
                "rows": n,
                "drift": intensity,
                "realized": float(realized.mean()),
                "amlkit": estimate["mae"],
                "amlkit_low": estimate["mae_low"],
                "amlkit_high": estimate["mae_high"],
                "reliable": estimate["reliable"],
                "outside": estimate["outside_share"],
            }
        )
        peer_windows.append(peer_records(rows[features].assign(y_pred=pred), feature_types))
    categorical = [c for c, k in feature_types.items() if k in ("categorical", "boolean")]
    reference_records = peer_records(
        reference[features].assign(y_pred=reference_pred, y_true=reference[target].to_numpy()),
        feature_types,
    )
    categories = {c: sorted({str(r[c]) for r in reference_records}) for c in categorical}
    payload = {
        "features": features,
        "categorical": categorical,
        "categories": categories,
        "reference": reference_records,
        "windows": peer_windows,
    }
    nanny = peers.run_json(peers.peer_python("nannyml"), DLE_SCRIPT, payload)
    result = pd.DataFrame(out)
    result["nannyml"] = [w["mae"] for w in nanny]
    result["nannyml_low"] = [w["mae_low"] for w in nanny]
    result["nannyml_high"] = [w["mae_high"] for w in nanny]
    return result


def summarize(results: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per data set and window type: mean absolute error of estimated MAE, ratio, coverage.

    Returns the table per data set (errors in the target's units) and the one over all data
    sets (errors relative to the realized MAE, so that miles per gallon and grams average).
    """
    frame = results.assign(
        group=results["window"],
        amlkit_error=(results["amlkit"] - results["realized"]).abs(),
        nannyml_error=(results["nannyml"] - results["realized"]).abs(),
        amlkit_covered=results["realized"].between(results["amlkit_low"], results["amlkit_high"]),
        nannyml_covered=results["realized"].between(
            results["nannyml_low"], results["nannyml_high"]
        ),
    )
    cols = ["amlkit_error", "nannyml_error", "amlkit_covered", "nannyml_covered", "reliable"]
    table = frame.groupby(["dataset", "group"], sort=False)[cols].mean()
    table.insert(2, "ratio", table["amlkit_error"] / table["nannyml_error"])
    relative = frame.assign(
        amlkit_error=frame["amlkit_error"] / frame["realized"],
        nannyml_error=frame["nannyml_error"] / frame["realized"],
    )
    overall = relative.groupby("group", sort=False)[cols].mean()
    overall.insert(2, "ratio", overall["amlkit_error"] / overall["nannyml_error"])
    return table, overall


def keras_windows(n_windows: int, n_rows: int) -> pd.DataFrame:
    """A Keras classifier on penguins: amlkit's estimate and NannyML's CBPE on its probabilities."""
    from amlkit.deep import determinism, pyfunc

    determinism.set_determinism(SEED)
    import keras

    frame, feature_types, label = load("penguins", None)
    features = list(feature_types)
    train, rest = train_test_split(frame, test_size=0.4, stratify=frame[label], random_state=SEED)
    reference, production = train_test_split(
        rest, test_size=0.5, stratify=rest[label], random_state=SEED
    )
    production = production.reset_index(drop=True)
    classes = np.array(sorted(train[label].astype(str).unique()))
    prep = preprocessor(feature_types).fit(train[features])
    network = keras.Sequential(
        [
            keras.Input((prep.transform(train[features].head(1)).shape[1],)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(len(classes), activation="softmax"),
        ]
    )
    network.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    y_train = np.searchsorted(classes, train[label].astype(str))
    network.fit(prep.transform(train[features]), y_train, epochs=40, verbose=0)

    def proba(rows: pd.DataFrame) -> np.ndarray:
        raw = pyfunc.predict_proba(network, prep.transform(rows[features])).astype(float)
        return raw / raw.sum(axis=1, keepdims=True)

    def records(p: np.ndarray, truth: Any = None) -> list[dict[str, Any]]:
        out = pd.DataFrame(p, columns=[f"p_{i}" for i in range(len(classes))])
        out["y_pred"] = classes[p.argmax(axis=1)]
        if truth is not None:
            out["y_true"] = np.asarray(truth).astype(str)
        return out.to_dict(orient="records")

    reference_proba = proba(reference)
    calibration = performance.calibrate(reference_proba, reference[label].astype(str), classes)
    profile = {"columns": quality.build_profile(train, feature_types)}
    out, peer_windows = [], []
    for i in range(2 * n_windows):
        intensity = 0.0 if i < n_windows else INTENSITIES[i % len(INTENSITIES)]
        rows = traffic.sample_rows(production, n_rows, seed=i)
        spec = traffic.default_drift(feature_types, profile, intensity)
        rows = traffic.apply_drift(rows, spec, profile, seed=i)
        p = proba(rows)
        estimate = performance.estimate(calibration, p)
        assert estimate is not None
        hits = classes[p.argmax(axis=1)] == rows[label].astype(str).to_numpy()
        out.append(
            {
                "window": "drifted" if intensity else "undrifted",
                "realized": float(hits.mean()),
                "amlkit": estimate["accuracy"],
            }
        )
        peer_windows.append(records(p))
    payload = {
        "classes": classes.tolist(),
        "reference": records(reference_proba, reference[label]),
        "windows": peer_windows,
    }
    result = pd.DataFrame(out)
    result["nannyml"] = peers.run_json(peers.peer_python("nannyml"), CBPE_SCRIPT, payload)
    return result


def in_fresh_root(step: Any, *args: Any) -> Any:
    """Run ``step`` in a throw-away project root (each ingests its data sets anew)."""
    folder = Path(tempfile.mkdtemp(prefix="dle-benchmark-"))
    try:
        shutil.copytree(ROOT / "config", folder / "config")
        os.environ["AMLKIT_ROOT"] = str(folder)
        return step(*args)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    """Run the benchmark and print the windows and the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=8, help="undrifted and drifted windows each")
    parser.add_argument("--rows", type=int, default=200, help="rows per small window")
    parser.add_argument("--splits", type=int, default=1, help="seeded 60/20/20 splits per set")
    parser.add_argument("--keras", action="store_true", help="add the Keras classifier case")
    args = parser.parse_args()
    results = pd.concat(
        [
            in_fresh_root(regression_windows, name, target, args.windows, args.rows, SEED + k)
            for name, target in DATASETS.items()
            for k in range(args.splits)
        ]
    )
    with pd.option_context("display.width", 160, "display.max_rows", 300):
        print(results.round(3).to_string(index=False))
        table, overall = summarize(results)
        print("\nmean absolute error of estimated against realized MAE; interval coverage")
        print(table.round(3).to_string())
        print("\nover the data sets: errors relative to the realized MAE")
        print(overall.round(3).to_string(), flush=True)
    if args.keras:
        keras = in_fresh_root(keras_windows, args.windows, args.rows)
        errors = keras.assign(
            amlkit=(keras["amlkit"] - keras["realized"]).abs(),
            nannyml=(keras["nannyml"] - keras["realized"]).abs(),
        )
        print("\nKeras classifier on penguins: mean absolute error of estimated accuracy")
        table = errors.groupby("window")[["amlkit", "nannyml"]].mean()
        print(table.assign(ratio=table["amlkit"] / table["nannyml"]).round(3).to_string())


if __name__ == "__main__":
    main()
