"""Deep learning (notebook 05): image data, TensorFlow determinism, the Keras pyfunc model."""
