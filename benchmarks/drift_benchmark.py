"""Benchmark: drift and quality of 1,000,000 current rows against 100,000 reference rows.

Twenty numeric columns, ten drifted by design (five shifted by 0.5 standard deviation,
five rescaled by 1.3), seeded. Times ``amlkit.monitoring.drift.compute_drift`` plus
``amlkit.monitoring.quality.compute_quality`` and, in the same run, the same statistics computed
column by column with scipy (ks_2samp, wasserstein_distance, jensenshannon and a PSI on
quantile-binned histograms), then prints a table and checks that exactly the ten designed
columns are flagged. Target: at most 3 s on two cores.

    .venv/bin/python benchmarks/drift_benchmark.py [--repeat 3] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial.distance import jensenshannon

from amlkit.monitoring import drift, quality

N_REF, N_CUR, N_COLS, SEED = 100_000, 1_000_000, 20, 20240601
SHIFTED = [f"x{i:02d}" for i in range(0, 5)]
RESCALED = [f"x{i:02d}" for i in range(5, 10)]


def make_data() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(SEED)
    names = [f"x{i:02d}" for i in range(N_COLS)]
    means, scales = rng.uniform(-5, 5, N_COLS), rng.uniform(0.5, 20, N_COLS)
    ref = {n: rng.normal(m, s, N_REF) for n, m, s in zip(names, means, scales, strict=True)}
    cur = {}
    for name, mean, scale in zip(names, means, scales, strict=True):
        values = rng.normal(mean, scale, N_CUR)
        if name in SHIFTED:
            values += 0.5 * scale
        elif name in RESCALED:
            values = mean + (values - mean) * 1.3
        cur[name] = values
    # a few missing values so the NaN handling is part of the timing
    for frame in (ref, cur):
        for name in names[::4]:
            frame[name][::1000] = np.nan
    return pd.DataFrame(ref), pd.DataFrame(cur)


def ours(ref: pd.DataFrame, cur: pd.DataFrame, kinds: dict, profile: dict, workers: int | None):
    result = drift.compute_drift(ref, cur, kinds, max_workers=workers)
    checks = quality.compute_quality(cur, profile)
    return result, checks


def scipy_column_by_column(ref: pd.DataFrame, cur: pd.DataFrame, bins: int = 10) -> pd.DataFrame:
    rows = []
    for column in ref.columns:
        a = ref[column].dropna().to_numpy()
        b = cur[column].dropna().to_numpy()
        ks = stats.ks_2samp(a, b)
        wd = stats.wasserstein_distance(a, b)
        edges = np.quantile(a, np.linspace(0, 1, bins + 1))
        edges[0], edges[-1] = -np.inf, np.inf
        p = np.histogram(a, edges)[0] / a.size
        q = np.histogram(b, edges)[0] / b.size
        pe, qe = np.maximum(p, drift.PSI_EPSILON), np.maximum(q, drift.PSI_EPSILON)
        rows.append(
            {
                "column": column,
                "ks_statistic": ks.statistic,
                "ks_pvalue": ks.pvalue,
                "normalized_wasserstein_distance": wd / np.std(a, ddof=1),
                "jensen_shannon_distance": jensenshannon(p, q, base=2),
                "population_stability_index": float(np.sum((qe - pe) * np.log(qe / pe))),
                "nulls": int(cur[column].isna().sum()),
            }
        )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of our code (best)")
    parser.add_argument("--workers", type=int, default=None, help="threads over columns")
    args = parser.parse_args()
    ref, cur = make_data()
    kinds = dict.fromkeys(ref.columns, "numeric")
    profile = {"columns": quality.build_profile(ref, kinds)}
    print(
        f"reference {len(ref):,} rows, current {len(cur):,} rows, {N_COLS} numeric columns; "
        f"{os.cpu_count()} CPUs; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}"
    )

    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        result, checks = ours(ref, cur, kinds, profile, args.workers)
        times.append(time.perf_counter() - start)
    ours_s = min(times)
    start = time.perf_counter()
    reference = scipy_column_by_column(ref, cur)
    scipy_s = time.perf_counter() - start

    flagged = sorted(result.loc[result["drifted"], "column"])
    expected = sorted(SHIFTED + RESCALED)
    merged = result.merge(reference, on="column", suffixes=("", "_scipy"))
    worst = {
        m: float(np.max(np.abs(merged[m] - merged[f"{m}_scipy"])))
        for m in (
            "ks_statistic",
            "normalized_wasserstein_distance",
            "jensen_shannon_distance",
            "population_stability_index",
        )
    }
    worst["ks_pvalue"] = float(
        np.max(np.abs(merged["two_sample_kolmogorov_smirnov_test"] - merged["ks_pvalue"]))
    )

    print()
    print(f"{'':28s}{'seconds':>10s}")
    print(
        f"{'ours (drift + quality)':28s}{ours_s:10.3f}   (best of {args.repeat}: "
        f"{', '.join(f'{t:.3f}' for t in times)})"
    )
    print(f"{'scipy column by column':28s}{scipy_s:10.3f}")
    print(f"{'ratio scipy / ours':28s}{scipy_s / ours_s:10.1f}x")
    print()
    table = result[
        [
            "column",
            "normalized_wasserstein_distance",
            "ks_statistic",
            "jensen_shannon_distance",
            "population_stability_index",
            "drifted",
        ]
    ]
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print()
    print(f"flagged columns ({len(flagged)}): {', '.join(flagged)}")
    print(f"expected        ({len(expected)}): {', '.join(expected)}")
    print("largest difference from scipy: " + ", ".join(f"{k} {v:.2e}" for k, v in worst.items()))
    print(
        f"quality: {int(checks['flagged'].sum())} columns flagged "
        f"(null_value_rate on {int((checks['nulls'] > 0).sum())} columns with NaNs by design; "
        f"out_of_bounds_rate on {int((checks['out_of_bounds'] > 0).sum())}: a million draws "
        "exceed the reference min/max, and the threshold is 0)"
    )
    ok = flagged == expected and ours_s <= 3.0
    print(
        f"RESULT: {'PASS' if ok else 'FAIL'} (flags exactly the designed columns: "
        f"{flagged == expected}; within 3 s: {ours_s <= 3.0})"
    )
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
