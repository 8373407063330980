"""Training (notebook 04): the transformers that travel inside models, metrics and plots."""
