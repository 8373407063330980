"""Repeatable TensorFlow training, and where it runs.

:func:`set_determinism` is what ``amlkit.notebook.setup(tensorflow=True)`` calls in the Setup
section of ``05_deep_learning``; the tests call it before their first TensorFlow op. With it
called once at the start of the process, the same seed, data and thread counts give
bit-identical weights and predictions, in one process or in separate ones, on the same machine
type. A GPU is used when TensorFlow sees one (:func:`compute_device`); its results differ from
the CPU's, and op determinism is meant to make them repeatable there too (checked on CPU).
"""

from __future__ import annotations

from amlkit.deep import quiet  # noqa: F401  (imports TensorFlow before Keras, quietly)

# isort: split
import logging
import os

import keras
import tensorflow as tf

logger = logging.getLogger(__name__)


def set_determinism(
    seed: int = 42, *, intra_op_threads: int = 1, inter_op_threads: int = 1
) -> None:
    """Make TensorFlow training repeatable: seeds, op determinism and fixed thread counts.

    Call it once, at the start of the process, before any TensorFlow op runs (thread counts
    cannot change once TensorFlow's runtime has started; a later call keeps the first counts
    and logs a warning when they differ). Calling it again resets the seeds.

    It sets ``PYTHONHASHSEED`` (which only affects Python processes started afterwards),
    seeds Python, NumPy and TensorFlow (:func:`keras.utils.set_random_seed`), turns on
    :func:`tf.config.experimental.enable_op_determinism` and fixes the intra- and inter-op
    thread pools.

    Args:
        seed: the seed for every random generator.
        intra_op_threads: threads inside one op (0 lets TensorFlow choose).
        inter_op_threads: ops run at the same time (0 lets TensorFlow choose).
    """
    os.environ["PYTHONHASHSEED"] = str(seed)
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    threading = tf.config.threading
    wanted = (intra_op_threads, inter_op_threads)
    current = (
        threading.get_intra_op_parallelism_threads(),
        threading.get_inter_op_parallelism_threads(),
    )
    if current != wanted:
        try:
            threading.set_intra_op_parallelism_threads(intra_op_threads)
            threading.set_inter_op_parallelism_threads(inter_op_threads)
        except RuntimeError:
            logger.warning(
                "TensorFlow already started with intra/inter-op threads %s; keeping them "
                "(asked for %s). Call set_determinism before any TensorFlow work.",
                current,
                wanted,
            )
    actual = (
        threading.get_intra_op_parallelism_threads(),
        threading.get_inter_op_parallelism_threads(),
    )
    logger.info("determinism: seed %d, threads %s, device %s", seed, actual, compute_device())


def compute_device() -> str:
    """Return where Keras trains: ``"GPU (<name>)"`` when TensorFlow sees a GPU, else ``"CPU"``."""
    gpus = tf.config.list_physical_devices("GPU")
    return f"GPU ({gpus[0].name})" if gpus else "CPU"
