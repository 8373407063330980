"""Class probabilities from any classifier monitoring is given, scikit-learn's or Keras'.

The performance estimate (:mod:`amlkit.monitoring.performance`) works on a classifier's
probabilities and classes, through scikit-learn's contract (``predict_proba``,
``classes_``). A Keras network has neither: its ``predict`` returns the softmax, one column
per class index. :func:`as_classifier` gives such a network (bare, on numeric inputs, or as
the last step of a scikit-learn pipeline that prepares its inputs) that contract, so Keras
and scikit-learn champions get the same estimate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd


def is_keras_network(model: Any) -> bool:
    """Return True for a Keras model (told by its methods, so Keras need not be imported)."""
    return hasattr(model, "predict_on_batch") and hasattr(model, "output_shape")


class KerasProbabilities:
    """A Keras classifier seen through scikit-learn's classifier contract.

    Args:
        network: the Keras model; its last layer gives one probability per class.
        classes: the label of each output column, in order.
        prepare: a fitted transformer turning rows into the network's input (None: the rows'
            values as float32, for a network on numeric inputs).
    """

    def __init__(self, network: Any, classes: Sequence[Any], prepare: Any = None) -> None:
        width = int(network.output_shape[-1])
        if width != len(classes):
            raise ValueError(
                f"the network gives {width} probabilities per row but {len(classes)} classes "
                f"were named ({list(classes)[:5]}...); give one label per output column"
            )
        self.network, self.classes_, self.prepare = network, np.asarray(classes), prepare

    def predict_proba(self, rows: pd.DataFrame) -> np.ndarray:
        """Return probabilities, one column per class of ``classes_``, rows summing to 1."""
        from amlkit.deep import pyfunc

        x = self.prepare.transform(rows) if self.prepare is not None else rows.to_numpy()
        proba = pyfunc.predict_proba(self.network, np.asarray(x, dtype=np.float32))
        proba = proba.astype(np.float64)  # float32 softmax sums to 1 only roughly
        return proba / proba.sum(axis=1, keepdims=True)

    def predict(self, rows: pd.DataFrame) -> np.ndarray:
        """Return the most probable class of each row."""
        return self.classes_[self.predict_proba(rows).argmax(axis=1)]


def as_classifier(model: Any, labels: Any) -> Any:
    """Return ``model`` with ``predict_proba`` and ``classes_`` where it can have them.

    A scikit-learn classifier comes back as it is. A Keras network, or a pipeline whose last
    step is one, is wrapped in :class:`KerasProbabilities`; its output columns follow the
    network's ``classes_`` when it carries them, else the sorted distinct training
    ``labels`` (the order ``LabelEncoder`` and :mod:`amlkit.deep.images` number classes
    in). Anything else comes back unchanged (and gets no estimate).
    """
    if hasattr(model, "predict_proba") and hasattr(model, "classes_"):
        return model
    steps = getattr(model, "steps", None)
    network, prepare = (steps[-1][1], model[:-1]) if steps else (model, None)
    if not is_keras_network(network):
        return model
    classes = getattr(model, "classes_", None)
    if classes is None:
        classes = sorted(pd.Series(labels).dropna().astype(str).unique())
    return KerasProbabilities(network, classes, prepare)
