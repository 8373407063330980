"""One process trains exactly as before: the default strategy, and the trained model itself.

The multi-worker path (MultiWorkerMirroredStrategy, the Keras fix, the single-device copy) is
tested with two real workers in test_distributed.py.
"""

from __future__ import annotations

from amlkit.deep import quiet  # noqa: F401  (imports TensorFlow quietly)

# isort: split
import tensorflow as tf

from amlkit.deep import distribute
from amlkit.deep.cluster import Worker


def test_one_process_trains_under_the_default_strategy(digit_classifier):
    strategy = distribute.training_strategy(Worker())
    assert strategy is tf.distribute.get_strategy()
    assert not distribute.is_multi_worker(strategy)
    model, _ = digit_classifier
    assert distribute.single_device_copy(model, strategy) is model
