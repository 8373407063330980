"""Fixtures shared by the monitoring tests: a synthetic request log."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest


def _request_log(n: int = 120, hours: float = 30.0, seed: int = 0) -> pd.DataFrame:
    """``n`` requests over ``hours``: latencies 1..n ms, every tenth a 500, two rows each."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2024-05-01", tz="UTC")
    return pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "time": start + pd.to_timedelta(np.sort(rng.uniform(0, hours * 3600, n)), unit="s"),
            "latency_ms": np.arange(1, n + 1, dtype=float),
            "status": [500 if i % 10 == 0 else 200 for i in range(n)],
            "n_rows": 2,
        }
    )


@pytest.fixture(scope="session")
def request_log() -> Callable[..., pd.DataFrame]:
    """A factory of request logs (one row per request), as ``monitor.requests_frame`` makes."""
    return _request_log
