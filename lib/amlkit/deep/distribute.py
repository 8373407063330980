"""The ``tf.distribute`` strategy notebook 05 trains under, on one process or several workers.

:func:`training_strategy` returns TensorFlow's default strategy for a process alone, and
``tf.distribute.MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` names two or more workers
(:mod:`amlkit.deep.cluster`). Under it every worker holds the whole network; each training step
takes the same global batch as one process would (``batch_size`` images), split evenly across
the workers, and the gradients are averaged across them (all-reduce over gRPC) before every
update, so all workers keep identical weights. Keras shards numpy inputs by data
(``AutoShardPolicy.DATA``): every worker draws the same shuffled order and keeps its slice of
each batch. That is deliberate: digits sets are small arrays in memory, not files to divide.
The loss and metrics Keras reports are aggregated across workers, so the validation loss that
``EarlyStopping`` and ``ReduceLROnPlateau`` watch is the same number on every worker, and they
stop and halve the learning rate at the same epoch. What differs from one process is dropout
and the order of floating-point sums: Keras seeds dropout from a mirrored state, so every worker
drops the same units in its slice of a batch (checked here), where one process draws a mask for
the whole batch.

Keras 3.15 cannot start ``fit`` under this strategy as released (keras-team/keras#20585,
tensorflow/tensorflow#72388): it averages the first batch, a tuple, with ``strategy.reduce``,
which takes single values; and it averages per-step metrics along axis 0, which scalars lack.
:func:`training_strategy` applies the two small fixes of :func:`_fix_keras_multi_worker` when
it creates the strategy (never for one process): build from one worker's batch, and keep the
step's metrics as computed (they are already aggregated across workers; Keras 2 did the same).

After training, :func:`single_device_copy` gives each worker the network outside the strategy,
so evaluating, saving and serving it involve no other worker (Keras' ``predict_on_batch`` under
the strategy would also return every worker's copy of the batch).
"""

from __future__ import annotations

from amlkit.deep import quiet  # noqa: F401  (imports TensorFlow before Keras, quietly)

# isort: split
import logging
import tempfile
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from amlkit.deep.cluster import Worker

logger = logging.getLogger(__name__)

_fixed = False


def training_strategy(worker: Worker) -> tf.distribute.Strategy:
    """Return the strategy to build, compile and train the network under.

    Create it before TensorFlow runs any operation (in notebook 05's Setup, after
    :func:`amlkit.deep.determinism.set_determinism`): the multi-worker strategy configures
    TensorFlow's collective operations, which is possible only before its runtime starts.

    Args:
        worker: this process (:func:`amlkit.deep.cluster.worker_from_env`).

    Returns:
        ``tf.distribute.MultiWorkerMirroredStrategy`` (its cluster read from ``TF_CONFIG``)
        when ``worker.count`` is 2 or more, else the default strategy (one device, no
        distribution; training is exactly what it is without a strategy).

    Raises:
        RuntimeError: several workers, and TensorFlow already ran an operation.
    """
    if not worker.distributed:
        return tf.distribute.get_strategy()
    _fix_keras_multi_worker()
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as exc:  # "Collective ops must be configured at program startup"
        raise RuntimeError(
            f"worker {worker.index} of {worker.count}: cannot start multi-worker training "
            f"({exc}). TensorFlow ran an operation before the strategy was made; call "
            "training_strategy right after amlkit.notebook.setup, before any TensorFlow work."
        ) from exc
    logger.info(
        "worker %d of %d: MultiWorkerMirroredStrategy, %d replicas in sync",
        worker.index,
        worker.count,
        strategy.num_replicas_in_sync,
    )
    return strategy


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """True for a ``MultiWorkerMirroredStrategy`` that spans two or more workers."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and (
        strategy.extended._in_multi_worker_mode()
    )


def single_device_copy(model: keras.Model, strategy: tf.distribute.Strategy) -> keras.Model:
    """Return the trained network on this process alone, outside the strategy.

    Under a multi-worker strategy the model is saved (the Keras format: weights, optimizer
    state, compile settings) and loaded back outside the strategy's scope, so this worker can
    predict, save and register it without the others. Otherwise ``model`` itself is returned.

    Args:
        model: the network, trained under ``strategy``.
        strategy: the strategy it was built in (:func:`training_strategy`).

    Returns:
        An equal network with plain (not mirrored) variables, or ``model``.

    Raises:
        RuntimeError: called inside a strategy's scope, where the copy would be mirrored too.
    """
    if not is_multi_worker(strategy):
        return model
    if tf.distribute.has_strategy():
        raise RuntimeError(
            "single_device_copy was called inside a strategy's scope; call it after "
            "training, outside `with strategy.scope():`."
        )
    with tempfile.TemporaryDirectory(prefix="amlkit-copy-") as folder:
        path = Path(folder) / f"{model.name}.keras"
        model.save(path)
        return keras.saving.load_model(path)


def _fix_keras_multi_worker() -> None:
    """Let ``Model.fit`` run under a multi-worker strategy (keras-team/keras#20585).

    Two functions of Keras' TensorFlow trainer are wrapped, once per process; both wrappers
    change nothing unless the strategy spans several workers:

    - ``TensorFlowTrainer._maybe_symbolic_build`` builds the model's state from this worker's
      slice of the first batch (the shapes are all it needs), not from ``strategy.reduce`` of
      the whole ``(x, y)`` tuple, which this strategy rejects.
    - ``reduce_per_replica`` with ``"auto"`` keeps each step's loss and metrics as this
      worker's replica computed them: Keras aggregates metric state across workers already,
      and its ``"mean"`` reduces scalars along axis 0, which fails.

    If a Keras release moves these functions, the fix is skipped with a warning.
    """
    global _fixed
    if _fixed:
        return
    try:
        from keras.src.backend.tensorflow import trainer as tf_trainer

        build = tf_trainer.TensorFlowTrainer._maybe_symbolic_build
        reduce = tf_trainer.reduce_per_replica
    except (ImportError, AttributeError) as exc:
        logger.warning("Keras %s: multi-worker fix not applied (%s)", keras.__version__, exc)
        return

    def local_value(strategy: tf.distribute.Strategy, value: Any) -> Any:
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def maybe_symbolic_build(self: Any, iterator: Any = None, data_batch: Any = None) -> Any:
        strategy = self._distribute_strategy
        if iterator is not None and data_batch is None and strategy and is_multi_worker(strategy):
            for _, _, batches in iterator:
                first = next(batches)
                data_batch = tf.nest.map_structure(lambda v: local_value(strategy, v), first)
                break
            iterator = None
        return build(self, iterator=iterator, data_batch=data_batch)

    def reduce_per_replica(values: Any, strategy: tf.distribute.Strategy, reduction: str) -> Any:
        if reduction == "auto" and is_multi_worker(strategy):
            reduction = "first"
        return reduce(values, strategy, reduction)

    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
    tf_trainer.reduce_per_replica = reduce_per_replica
    _fixed = True
    logger.info(
        "Keras %s: multi-worker fit fix applied (keras-team/keras#20585)", keras.__version__
    )
