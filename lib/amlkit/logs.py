"""Logging for the notebooks and the CLI from ``config/logging_config.json`` (a dictConfig)."""

from __future__ import annotations

import logging
import logging.config

from amlkit import paths
from amlkit.config import LoggingConfig


def setup_logging(level: str | None = None, config: LoggingConfig | None = None) -> None:
    """Configure logging from ``config`` (default: logging_config.json).

    ``level`` overrides the console handler's level (``"INFO"`` for ``amlkit -v``).
    ``{state_dir}`` in a handler's filename becomes the state folder, whatever the cwd.
    """
    cfg = (config or LoggingConfig.load()).to_dict()
    state = str(paths.state_dir())
    handlers = {}
    for name, handler in cfg.get("handlers", {}).items():
        handler = dict(handler)
        if "filename" in handler:
            handler["filename"] = handler["filename"].replace("{state_dir}", state)
            (paths.state_dir() / "logs").mkdir(parents=True, exist_ok=True)
        if level and name == "console":
            handler["level"] = level
        handlers[name] = handler
    logging.config.dictConfig({**cfg, "handlers": handlers})
    logging.captureWarnings(True)
