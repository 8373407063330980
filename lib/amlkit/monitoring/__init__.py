"""Monitoring (notebook 07): drift, data quality, the retraining rule, the report, traffic."""
