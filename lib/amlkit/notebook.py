"""One call, in every notebook's Setup section, that makes a run reproducible and readable."""

from __future__ import annotations

import os
import random
import warnings
from typing import Any

import numpy as np
import pandas as pd

from amlkit.logs import setup_logging


def setup(seed: int = 42, *, threads: int | None = 1, tensorflow: bool = False) -> dict[str, Any]:
    """Seed everything, fix threads and display options, configure logging.

    ``threads`` limits BLAS/OpenMP (threadpoolctl, so it holds after imports) and TensorFlow;
    None keeps the defaults. One by default: small data trains fastest on one (competing
    OpenMP threads slowed gradient boosting 5-25x on a busy 2-core machine) and results do
    not depend on the core count. ``tensorflow`` also seeds TensorFlow with op determinism
    (call before any TensorFlow op). Returns what was set, with ``device`` for TensorFlow.
    """
    os.environ["PYTHONHASHSEED"] = str(seed)
    if threads:
        from threadpoolctl import threadpool_limits

        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(threads)
        threadpool_limits(limits=threads)
    random.seed(seed)
    np.random.seed(seed)
    device = None
    if tensorflow:
        from amlkit.deep import determinism

        pools = {"intra_op_threads": threads, "inter_op_threads": threads} if threads else {}
        determinism.set_determinism(seed, **pools)
        device = determinism.compute_device()
    setup_logging()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    pd.set_option("display.max_columns", 30, "display.width", 120, "display.precision", 4)
    import matplotlib as mpl

    mpl.rcParams.update(
        {"figure.figsize": (8, 4.5), "figure.dpi": 80, "axes.grid": True, "savefig.bbox": "tight"}
    )
    mpl.rcParams["svg.hashsalt"] = str(seed)
    done = {"seed": seed, "threads": threads, "tensorflow": tensorflow}
    return done | {"device": device} if tensorflow else done
