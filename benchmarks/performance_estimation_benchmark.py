"""Benchmark: accuracy estimated before labels against realized, beside NannyML's CBPE.

For each bundled data set with a classifier (penguins: species; seattle_weather: weather;
cars: Origin, since its configured target, miles per gallon, is a regression), the data is
ingested into a throw-away project root and cleaned as notebook 03 does, split 60/20/20
(train, reference, production; stratified, seeded), and a 200-tree random forest behind
notebook 04's default preprocessing is fitted on the train rows. Its probabilities, labels
and features on the reference rows calibrate the estimate
(``amlkit.monitoring.performance.calibrate``), and NannyML 0.13's CBPE is fitted on the same
reference rows in its own environment (``benchmarks/peers.py``; its usage analytics off).

Windows are drawn from the production rows, which neither the model nor the calibration saw:

- ``undrifted``: ``--rows`` rows (the traffic simulator's passes over the shuffled rows);
- ``drifted``: the same, bent by the simulator's default drift at intensities 0.5 to 2;
- ``label shift``: ``--rows`` rows drawn with replacement, each class's rows weighted so one
  class (a different one per window) makes up 60% of the window on average;
- ``1000 rows`` and ``5000 rows``: rows drawn with replacement from the production rows
  (there are fewer than that: 69 to 293 per data set), the first half of the windows as
  they are, the second half drifted as above.

Each window is scored in-process (the endpoint would serve the same predictions) and both
estimators see exactly its probabilities (and, for amlkit, its features). Printed per data
set and window type: mean absolute error of amlkit's estimate and of NannyML's against the
realized accuracy, their ratio, and the share of windows whose realized accuracy lies inside
amlkit's reported 95% interval (``accuracy_low`` to ``accuracy_high``) and NannyML's
(its estimate plus or minus three sampling errors, its own band); then the means over the
data sets that the targets speak of, and how often amlkit called its estimate unreliable;
then amlkit's mean errors under other seeds of the synthetic windows its shift correction
learns from (``--seeds``), since that correction is fitted on random draws.

    .venv/bin/python benchmarks/performance_estimation_benchmark.py [--windows 8] [--rows 200]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers

ROOT = Path(__file__).resolve().parents[1]
DATASETS = {"penguins": None, "seattle_weather": None, "cars": "Origin"}  # target override
INTENSITIES = (0.5, 1.0, 1.5, 2.0)
LARGE = (1000, 5000)
DOMINANT_SHARE = 0.6  # label shift: the favoured class's expected share of a window
SEED = 42
KINDS = ("undrifted", "drifted", "label shift", *(f"{n} rows" for n in LARGE))

NANNYML_SCRIPT = r"""
import json, sys, warnings
warnings.filterwarnings("ignore")
import numpy as np, pandas as pd
from nannyml.performance_estimation.confidence_based import CBPE

job = json.load(sys.stdin)
classes = [str(c) for c in job["classes"]]
binary = len(classes) == 2

def frame(part, labelled):
    proba = np.asarray(part["proba"], dtype=float)
    out = pd.DataFrame({"y_pred": [classes[i] for i in part["predicted"]]})
    if binary:
        out["y_pred"] = np.asarray(part["predicted"])
        out["p"] = proba[:, 1]
    else:
        for k, c in enumerate(classes):
            out[f"p_{k}"] = proba[:, k]
    if labelled:
        y = [str(v) for v in part["labels"]]
        out["y_true"] = [classes.index(v) for v in y] if binary else y
    return out

proba_cols = "p" if binary else {c: f"p_{k}" for k, c in enumerate(classes)}
cbpe = CBPE(
    metrics=["accuracy"], y_pred_proba=proba_cols, y_pred="y_pred", y_true="y_true",
    problem_type="classification_binary" if binary else "classification_multiclass",
    chunk_number=1,
)
cbpe.fit(frame(job["reference"], True))
out = []
for window in job["windows"]:
    found = cbpe.estimate(frame(window, False)).filter(period="analysis").to_df()
    out.append({
        "value": float(found[("accuracy", "value")].iloc[0]),
        "sampling_error": float(found[("accuracy", "sampling_error")].iloc[0]),
    })
print(json.dumps(out))
"""


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


def label_shifted(rows: pd.DataFrame, label: str, n: int, favoured: Any, seed: int) -> pd.DataFrame:
    """Draw ``n`` rows with replacement, ``favoured``'s rows making up DOMINANT_SHARE."""
    counts = rows[label].value_counts()
    others = (1 - DOMINANT_SHARE) / max(len(counts) - 1, 1)
    prior = {c: DOMINANT_SHARE if c == favoured else others for c in counts.index}
    weight = rows[label].map(lambda c: prior[c] / counts[c]).to_numpy(dtype=float)
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(rows), size=n, replace=True, p=weight / weight.sum())
    return rows.iloc[picked].reset_index(drop=True)


def scenario(dataset: str, target: str | None, n_windows: int, n_rows: int) -> dict[str, Any]:
    """Fit the model; return its reference rows and every window, scored and labelled."""
    frame, feature_types, label = load(dataset, target)
    features = list(feature_types)
    train, rest = train_test_split(frame, test_size=0.4, stratify=frame[label], random_state=SEED)
    reference, production = train_test_split(
        rest, test_size=0.5, stratify=rest[label], random_state=SEED
    )
    production = production.reset_index(drop=True)
    model = Pipeline(
        [
            ("preprocess", preprocessor(feature_types)),
            ("model", RandomForestClassifier(n_estimators=200, random_state=0, n_jobs=1)),
        ]
    ).fit(train[features], train[label])
    profile = {"columns": quality.build_profile(train, feature_types)}
    classes = model.classes_

    def drifted(rows: pd.DataFrame, intensity: float, seed: int) -> pd.DataFrame:
        spec = traffic.default_drift(feature_types, profile, intensity)
        return traffic.apply_drift(rows, spec, profile, seed=seed)

    drawn: list[tuple[str, float, pd.DataFrame]] = []
    for i in range(n_windows):
        drawn.append(("undrifted", 0.0, traffic.sample_rows(production, n_rows, seed=i)))
    for i in range(n_windows):
        intensity = INTENSITIES[i % len(INTENSITIES)]
        rows = traffic.sample_rows(production, n_rows, seed=n_windows + i)
        drawn.append(("drifted", intensity, drifted(rows, intensity, n_windows + i)))
    for i in range(n_windows):
        favoured = classes[i % len(classes)]
        rows = label_shifted(production, label, n_rows, favoured, seed=2 * n_windows + i)
        drawn.append(("label shift", 0.0, rows))
    for size in LARGE:
        for i in range(n_windows):
            seed = size + i
            picked = np.random.default_rng(seed).choice(len(production), size, replace=True)
            rows = production.iloc[picked].reset_index(drop=True)
            intensity = 0.0 if i < n_windows // 2 else INTENSITIES[i % len(INTENSITIES)]
            if intensity:
                rows = drifted(rows, intensity, seed)
            drawn.append((f"{size} rows", intensity, rows))
    windows = []
    for kind, intensity, rows in drawn:
        proba = model.predict_proba(rows[features])
        predicted = classes[proba.argmax(axis=1)]
        hits = predicted.astype(str) == rows[label].astype(str).to_numpy()
        windows.append(
            {"kind": kind, "drift": intensity, "features": rows[features], "proba": proba}
            | {"realized": float(hits.mean())}
        )
    return {
        "dataset": dataset,
        "model": model,
        "classes": classes,
        "feature_types": feature_types,
        "reference": {
            "features": reference[features].reset_index(drop=True),
            "proba": model.predict_proba(reference[features]),
            "labels": reference[label].to_numpy(),
        },
        "windows": windows,
    }


def amlkit_estimates(case: dict[str, Any], seed: int = 0) -> list[dict[str, Any]]:
    """Return amlkit's estimate of every window of ``case`` (``seed``: its synthetic windows)."""
    ref = case["reference"]
    calibration = performance.calibrate(
        ref["proba"],
        ref["labels"],
        case["classes"],
        features=ref["features"],
        feature_types=case["feature_types"],
        predict_proba=case["model"].predict_proba,
        seed=seed,
    )
    out = []
    for window in case["windows"]:
        found = performance.estimate(calibration, window["proba"], features=window["features"])
        assert found is not None
        out.append(found)
    return out


def nannyml_estimates(case: dict[str, Any], python: Path) -> list[dict[str, float]]:
    """Return NannyML CBPE's estimate of every window (value and sampling error)."""

    def part(proba: np.ndarray, labels: np.ndarray | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"proba": proba.tolist(), "predicted": proba.argmax(axis=1).tolist()}
        return out | ({"labels": [str(v) for v in labels]} if labels is not None else {})

    ref = case["reference"]
    payload = {
        "classes": [str(c) for c in case["classes"]],
        "reference": part(ref["proba"], ref["labels"]),
        "windows": [part(w["proba"]) for w in case["windows"]],
    }
    return peers.run_json(python, NANNYML_SCRIPT, payload)


def measure(n_windows: int, n_rows: int, seeds: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Build every data set's windows; return one row per window with both estimates.

    Also returns amlkit's absolute errors under ``seeds`` seeds of its synthetic windows
    (seed 0, the default, is the main table's).
    """
    python = peers.peer_python("nannyml")
    folder = Path(tempfile.mkdtemp(prefix="cbpe-benchmark-"))
    rows, spread = [], []
    try:
        shutil.copytree(ROOT / "config", folder / "config")
        os.environ["AMLKIT_ROOT"] = str(folder)
        for dataset, target in DATASETS.items():
            case = scenario(dataset, target, n_windows, n_rows)
            ours, theirs = amlkit_estimates(case), nannyml_estimates(case, python)
            for seed in range(1, seeds):
                for window, est in zip(case["windows"], amlkit_estimates(case, seed), strict=True):
                    error = abs(est["accuracy"] - window["realized"])
                    spread.append(
                        {"dataset": dataset, "kind": window["kind"], "seed": seed}
                        | {"error": error}
                    )
            for window, est, nml in zip(case["windows"], ours, theirs, strict=True):
                rows.append(
                    {
                        "dataset": dataset,
                        "kind": window["kind"],
                        "rows": len(window["proba"]),
                        "drift": window["drift"],
                        "realized": window["realized"],
                        "amlkit": est["accuracy"],
                        "low": est["accuracy_low"],
                        "high": est["accuracy_high"],
                        "reliable": est["reliable"],
                        "outside": est["outside_share"],
                        "nannyml": nml["value"],
                        "nannyml_se": nml["sampling_error"],
                    }
                )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    results = pd.DataFrame(rows)
    first = results[["dataset", "kind"]].assign(
        seed=0, error=(results["amlkit"] - results["realized"]).abs()
    )
    return results, pd.concat([first, pd.DataFrame(spread)], ignore_index=True)


def summary(results: pd.DataFrame) -> pd.DataFrame:
    """Mean absolute errors, their ratio and interval coverage per data set and window kind."""
    real = results["realized"]
    scored = results.assign(
        amlkit_err=(results["amlkit"] - real).abs(),
        nannyml_err=(results["nannyml"] - real).abs(),
        amlkit_in=(results["low"] <= real) & (real <= results["high"]),
        nannyml_in=(results["nannyml"] - real).abs() <= 3 * results["nannyml_se"],
        unreliable=~results["reliable"].astype(bool),
    )
    table = scored.groupby(["dataset", "kind"], sort=False).agg(
        windows=("realized", "size"),
        mae_amlkit=("amlkit_err", "mean"),
        mae_nannyml=("nannyml_err", "mean"),
        coverage_amlkit=("amlkit_in", "mean"),
        coverage_nannyml=("nannyml_in", "mean"),
        unreliable=("unreliable", "mean"),
    )
    table.insert(3, "ratio", table["mae_amlkit"] / table["mae_nannyml"])
    return table


def main() -> None:
    """Run the benchmark and print the windows, the table and the means the targets use."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=8, help="windows of each kind")
    parser.add_argument("--rows", type=int, default=200, help="rows per small window")
    parser.add_argument("--seeds", type=int, default=3, help="seeds of amlkit's synthetic windows")
    args = parser.parse_args()
    results, spread = measure(args.windows, args.rows, args.seeds)
    table = summary(results)
    with pd.option_context("display.width", 160, "display.max_rows", 500):
        print(results.round(3).to_string(index=False))
        print("\nper data set and window kind (coverage: share of windows inside the interval)")
        print(table.round(3).to_string())
        means = table.groupby(level="kind", sort=False)[["mae_amlkit", "mae_nannyml"]].mean()
        means["ratio"] = means["mae_amlkit"] / means["mae_nannyml"]
        worst = (table["mae_amlkit"] - table["mae_nannyml"]).groupby(level="kind").max()
        means["worst data set gap"] = worst
        print("\nmean over the data sets (target: ratio <= 0.8, worst gap <= 0.01)")
        print(means.round(3).to_string())
        per_seed = spread.groupby(["seed", "kind", "dataset"], sort=False)["error"].mean()
        per_seed = per_seed.groupby(level=["seed", "kind"], sort=False).mean().unstack("kind")
        nannyml = table.groupby(level="kind", sort=False)["mae_nannyml"].mean()
        print("\namlkit's mean absolute error over the data sets per seed of its synthetic windows")
        print(pd.concat([per_seed, nannyml.rename("NannyML").to_frame().T]).round(3).to_string())
        print(f"\namlkit's method: {performance.METHOD}")


if __name__ == "__main__":
    main()
