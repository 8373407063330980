"""One call that makes a notebook run reproducible and readable.

``setup()`` seeds Python, NumPy (and TensorFlow when asked), pins thread counts, configures
logging from config/logging_config.json and sets display options for pandas and matplotlib, as
fastbook's utilities do. Call it once in every notebook's Setup section.
"""

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

    Args:
        seed: the seed for Python, NumPy and (optionally) TensorFlow.
        threads: thread count for BLAS/OpenMP (through threadpoolctl, so it holds after numpy
            and scikit-learn are imported) and TensorFlow's intra- and inter-op pools. One
            thread is the default: the notebooks' small data trains fastest on one (OpenMP
            threads competing on a busy 2-core machine slowed gradient boosting 5-25x), and
            results then do not depend on the machine's core count. None keeps the libraries'
            defaults.
        tensorflow: also seed TensorFlow, turn on its op determinism and fix its thread
            pools (:func:`amlkit.deep.determinism.set_determinism`). Call it before any
            TensorFlow op.

    Returns:
        What was set, for display (with ``device``, where Keras trains, for TensorFlow).
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
    pd.set_option("display.max_columns", 30)
    pd.set_option("display.width", 120)
    pd.set_option("display.precision", 4)
    import matplotlib as mpl

    mpl.rcParams.update(
        {"figure.figsize": (8, 4.5), "figure.dpi": 80, "axes.grid": True, "savefig.bbox": "tight"}
    )
    mpl.rcParams["svg.hashsalt"] = str(seed)
    done = {"seed": seed, "threads": threads, "tensorflow": tensorflow}
    return done | {"device": device} if tensorflow else done
