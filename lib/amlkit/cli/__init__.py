"""The ``amlkit`` command line."""
