"""The model registry (notebooks 04-05): version folders, MLflow tracking, the champion gate."""
