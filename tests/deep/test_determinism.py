"""Tests of repeatable TensorFlow set-up and of the quiet TensorFlow import."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

determinism = pytest.importorskip("amlkit.deep.determinism")


def test_set_determinism_sets_hash_seed_op_determinism_and_one_thread(monkeypatch):
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config

    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    determinism.set_determinism(7)
    assert os.environ["PYTHONHASHSEED"] == "7"
    assert tf_config.is_op_determinism_enabled()
    assert tf.config.threading.get_intra_op_parallelism_threads() == 1


def test_notebook_setup_with_tensorflow_turns_on_determinism(project, monkeypatch):
    from tensorflow.python.framework import config as tf_config

    from amlkit import notebook

    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    done = notebook.setup(seed=5, threads=1, tensorflow=True)
    device = determinism.compute_device()
    assert done == {"seed": 5, "threads": 1, "tensorflow": True, "device": device}
    assert os.environ["PYTHONHASHSEED"] == "5"
    assert tf_config.is_op_determinism_enabled()


QUIET_TRAINING = """
from amlkit.deep import determinism, quiet
import keras
import numpy as np
determinism.set_determinism(3)
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
model.compile("adam", "sparse_categorical_crossentropy")
model.fit(np.random.rand(32, 4), np.arange(32) % 2, epochs=1, verbose=0)
print(len(quiet.startup_messages) > 0)
print(determinism.compute_device())
"""


@pytest.mark.slow
def test_importing_tensorflow_through_amlkit_and_training_writes_nothing_to_stderr(project):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run(
        [sys.executable, "-c", QUIET_TRAINING], capture_output=True, text=True, timeout=180, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr == ""
    captured, device = done.stdout.split()[-2:]
    assert captured == "True"  # TensorFlow did talk; it was kept off the screen
    assert device == "CPU" or device.startswith("GPU")
