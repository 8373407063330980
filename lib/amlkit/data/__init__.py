"""The data stages (notebooks 01-03): sources, validation, ingestion, preprocessing, profiles."""
