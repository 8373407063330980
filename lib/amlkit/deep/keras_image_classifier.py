"""MLflow pyfunc wrapper of a Keras image classifier ("models from code"), copied into models.

It must not import amlkit, so that a model folder loads wherever MLflow and Keras are installed.
"""

import json

import numpy as np
import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel

CHUNK = 1024  # images per predict_on_batch call


class KerasImageClassifier(PythonModel):
    """Scale images as in training, run the network, return labels and probabilities."""

    def load_context(self, context):
        """Load the network and its preprocessing record (scale, shape, classes) once."""
        import keras

        self.model = keras.saving.load_model(context.artifacts["keras_model"], compile=False)
        with open(context.artifacts["preprocessing"], encoding="utf-8") as handle:
            self.preprocessing = json.load(handle)

    def predict(self, context, model_input: np.ndarray, params=None) -> pd.DataFrame:
        """Return ``prediction`` and one ``probability_<class>`` column per class.

        ``model_input`` holds images in their original scale: an array N×H×W×C (or flattened
        rows), or a one-column frame of nested lists.
        """
        pre = self.preprocessing
        shape = (pre["height"], pre["width"], pre["channels"])
        if isinstance(model_input, pd.DataFrame):
            if model_input.shape[1] == 1 and pd.api.types.is_object_dtype(
                model_input.dtypes.iloc[0]
            ):
                x = np.stack([np.asarray(v, dtype=np.float64) for v in model_input.iloc[:, 0]])
            else:
                x = model_input.to_numpy(dtype=np.float64)
        else:
            x = np.asarray(model_input, dtype=np.float64)
        if x.ndim < 1 or len(x) == 0 or x.size != len(x) * int(np.prod(shape)):
            raise ValueError(
                f"expected a batch of images of shape {shape} (or flattened), got {x.shape}"
            )
        x = (x.reshape((len(x), *shape)) / pre["scale"]).astype(np.float32)
        chunks = [x[i : i + CHUNK] for i in range(0, len(x), CHUNK)]
        proba = np.concatenate([self.model.predict_on_batch(c) for c in chunks])
        classes = pre["classes"]
        out = pd.DataFrame(proba, columns=[f"probability_{c}" for c in classes])
        out.insert(0, "prediction", [classes[i] for i in proba.argmax(axis=1)])
        return out


set_model(KerasImageClassifier())
