"""A penguins model version for the serving benchmarks, written per docs/contracts.md."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
CATEGORICAL = ["island", "sex"]
FEATURES = NUMERIC + CATEGORICAL


def penguins() -> pd.DataFrame:
    """Palmer penguins with a species, as requests carry them (NaN for gaps)."""
    from palmerpenguins import load_penguins

    frame = load_penguins().dropna(subset=["species"]).reset_index(drop=True)
    frame[NUMERIC] = frame[NUMERIC].astype("float64")
    categories = frame[CATEGORICAL].astype(object)
    frame[CATEGORICAL] = categories.where(categories.notna(), np.nan)
    return frame


def make_version(folder: Path, estimator=None, *, name: str = "penguins", version: int = 1) -> Path:
    """Fit ``estimator`` (default: a 50-tree forest) behind the project's preprocessing."""
    import mlflow.sklearn
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from amlkit import io

    frame = penguins()
    estimator = estimator or RandomForestClassifier(n_estimators=50, random_state=0, n_jobs=1)
    pre = ColumnTransformer(
        [
            ("num", Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())]), NUMERIC),
            ("cat", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
        ]
    )
    pipeline = Pipeline([("preprocess", pre), ("model", estimator)])
    pipeline.fit(frame[FEATURES], frame["species"])
    target = folder / name / str(version)
    mlflow.sklearn.save_model(
        pipeline, target, serialization_format="cloudpickle", pip_requirements=["scikit-learn"]
    )
    types = dict.fromkeys(NUMERIC, "numeric") | dict.fromkeys(CATEGORICAL, "categorical")
    meta = {
        "name": name,
        "version": version,
        "model_type": type(estimator).__name__,
        "flavor": "sklearn",
        "task": "classification",
        "target": "species",
        "feature_columns": FEATURES,
        "feature_types": types,
        "classes": sorted(frame["species"].unique().tolist()),
        "created": "2024-01-01T00:00:00+00:00",
        "data": {"dataset": "penguins", "version": "benchmark", "sha256": "0"},
        "model_file": "model.pkl",
        "model_sha256": io.sha256_file(target / "model.pkl"),
    }
    io.write_json_atomic(target / "model_metadata.json", meta)
    return target
