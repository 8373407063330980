"""Benchmark: accuracy estimated before labels (CBPE) against realized, undrifted and drifted.

For each bundled data set with a classifier (penguins: species; seattle_weather: weather;
cars: Origin, since its configured target, miles per gallon, is a regression), the data is
ingested into a throw-away project root and cleaned as notebook 03 does, split 60/20/20
(train, reference, production; stratified, seeded), and a 200-tree random forest behind
notebook 04's default preprocessing is fitted on the train rows. Its probabilities are
calibrated on the reference rows (``amlkit.monitoring.performance.calibrate``). The traffic
simulator (``amlkit.monitoring.traffic``) then draws windows from the production rows, which
neither the model nor the calibration saw: undrifted windows, and drifted ones with its
default drift at intensities 0.5 to 2. Rows are scored in-process (the endpoint would serve
the same predictions). Per window it prints the estimated accuracy, the realized one, and the
raw-confidence estimate (mean top probability, uncalibrated) for comparison; then the mean
absolute error per data set for undrifted and drifted windows.

    .venv/bin/python benchmarks/performance_estimation_benchmark.py [--windows 8] [--rows 200]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from amlkit.monitoring import performance, quality, traffic
from amlkit.training.transformers import CategoryNormalizer, DatetimeFeatures

ROOT = Path(__file__).resolve().parents[1]
DATASETS = {"penguins": None, "seattle_weather": None, "cars": "Origin"}  # target override
INTENSITIES = (0.5, 1.0, 1.5, 2.0)
SEED = 42


def preprocessor(feature_types: dict[str, str]) -> ColumnTransformer:
    """Notebook 04's default preprocessing (as ``tests/conftest.py`` builds it)."""

    def of(*kinds: str) -> list[str]:
        return [c for c, k in feature_types.items() if k in kinds]

    def labels(boolean: bool) -> Pipeline:
        return Pipeline(
            [
                ("normalize", CategoryNormalizer(boolean=boolean)),
                ("impute", SimpleImputer(strategy="constant", fill_value="missing")),
                ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
            ]
        )

    impute = SimpleImputer(strategy="median", add_indicator=True)
    numeric = Pipeline([("impute", impute), ("scale", StandardScaler())])
    dates = Pipeline([("parts", DatetimeFeatures()), ("scale", StandardScaler())])
    groups = [
        ("num", numeric, of("numeric", "integer")),
        ("cat", labels(False), of("categorical")),
        ("bool", labels(True), of("boolean")),
        ("date", dates, of("datetime")),
    ]
    return ColumnTransformer([g for g in groups if g[2]], sparse_threshold=0.0)


def load(dataset: str, target: str | None) -> tuple[pd.DataFrame, dict[str, str], str]:
    """Ingest and clean a bundled data set; return (rows, feature kinds, target)."""
    from amlkit.data import ingest, preprocess

    ingest.ingest(dataset, target=target, task="classification", progress=False)
    frame, raw = ingest.load_raw(dataset)
    cleaned = preprocess.clean(frame, raw)
    return cleaned.frame, cleaned.feature_types, raw.target


def windows(dataset: str, target: str | None, n_windows: int, n_rows: int) -> pd.DataFrame:
    """Return one row per window: drift intensity, estimated, raw-confidence and realized."""
    frame, feature_types, label = load(dataset, target)
    features = list(feature_types)
    train, rest = train_test_split(frame, test_size=0.4, stratify=frame[label], random_state=SEED)
    reference, production = train_test_split(
        rest, test_size=0.5, stratify=rest[label], random_state=SEED
    )
    model = Pipeline(
        [
            ("preprocess", preprocessor(feature_types)),
            ("model", RandomForestClassifier(n_estimators=200, random_state=0, n_jobs=1)),
        ]
    ).fit(train[features], train[label])
    calibration = performance.calibrate(
        model.predict_proba(reference[features]), reference[label], model.classes_
    )
    profile = {"columns": quality.build_profile(train, feature_types)}
    out = []
    for i in range(2 * n_windows):
        intensity = 0.0 if i < n_windows else INTENSITIES[i % len(INTENSITIES)]
        rows = traffic.sample_rows(production.reset_index(drop=True), n_rows, seed=i)
        spec = traffic.default_drift(feature_types, profile, intensity)
        rows = traffic.apply_drift(rows, spec, profile, seed=i)
        proba = model.predict_proba(rows[features])
        estimate = performance.estimate(calibration, proba)
        assert estimate is not None
        predicted = model.classes_[proba.argmax(axis=1)]
        out.append(
            {
                "dataset": dataset,
                "window": i,
                "drift": intensity,
                "estimated": estimate["accuracy"],
                "raw confidence": float(proba.max(axis=1).mean()),
                "realized": float(np.mean(predicted == rows[label].astype(str).to_numpy())),
            }
        )
    return pd.DataFrame(out)


def main() -> None:
    """Run the benchmark and print the windows and the mean absolute errors."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=8, help="undrifted and drifted windows each")
    parser.add_argument("--rows", type=int, default=200, help="rows per window")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="cbpe-benchmark-"))
    try:
        shutil.copytree(ROOT / "config", folder / "config")
        os.environ["AMLKIT_ROOT"] = str(folder)
        results = pd.concat(
            [windows(name, target, args.windows, args.rows) for name, target in DATASETS.items()]
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    with pd.option_context("display.width", 120, "display.max_rows", 200):
        print(results.round(3).to_string(index=False))
        errors = results.assign(
            estimated=(results["estimated"] - results["realized"]).abs(),
            raw_confidence=(results["raw confidence"] - results["realized"]).abs(),
            drifted=np.where(results["drift"] > 0, "drifted", "undrifted"),
        )
        table = errors.pivot_table(
            index="dataset", columns="drifted", values=["estimated", "raw_confidence"]
        )
        print("\nmean absolute error of estimated accuracy (CBPE; raw confidence to compare)")
        print(table.round(3).to_string())


if __name__ == "__main__":
    main()
