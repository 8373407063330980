"""Repeatable TensorFlow training, and where it runs.

After :func:`set_determinism` (``amlkit.notebook.setup(tensorflow=True)``), the same seed, data
and thread counts give bit-identical weights across processes on one machine type. A GPU is
used when TensorFlow sees one; its results differ from the CPU's.
"""

from __future__ import annotations

from amlkit.deep import quiet  # noqa: F401  (imports TensorFlow before Keras, quietly)

# isort: split
import contextlib
import logging
import os

import keras
import tensorflow as tf

logger = logging.getLogger(__name__)


def set_determinism(
    seed: int = 42, *, intra_op_threads: int = 1, inter_op_threads: int = 1
) -> None:
    """Seed Python, NumPy and TensorFlow, turn on op determinism, and fix the thread pools.

    Call it before any TensorFlow op: thread counts (0: TensorFlow chooses) are fixed once its
    runtime starts. ``PYTHONHASHSEED`` is set too, for processes started afterwards.
    """
    os.environ["PYTHONHASHSEED"] = str(seed)
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    threading = tf.config.threading
    with contextlib.suppress(RuntimeError):  # raised once TensorFlow's runtime has started
        threading.set_intra_op_parallelism_threads(intra_op_threads)
        threading.set_inter_op_parallelism_threads(inter_op_threads)
    wanted = (intra_op_threads, inter_op_threads)
    actual = (
        threading.get_intra_op_parallelism_threads(),
        threading.get_inter_op_parallelism_threads(),
    )
    if actual != wanted:
        logger.warning(
            "TensorFlow already started with intra/inter-op threads %s; keeping them "
            "(asked for %s). Call set_determinism before any TensorFlow work.",
            actual,
            wanted,
        )
    logger.info("determinism: seed %d, threads %s, device %s", seed, actual, compute_device())


def compute_device() -> str:
    """Return where Keras trains: ``"GPU (<name>)"`` when TensorFlow sees a GPU, else ``"CPU"``."""
    gpus = tf.config.list_physical_devices("GPU")
    return f"GPU ({gpus[0].name})" if gpus else "CPU"
