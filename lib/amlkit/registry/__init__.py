"""The model registry (notebooks 04, 05, 07): versions, MLflow tracking, the champion gate."""
