"""Logging set-up for the notebooks and the CLI, from ``config/logging_config.json``.

The file is a standard :func:`logging.config.dictConfig` dictionary. ``{state_dir}`` in a
handler's ``filename`` is replaced by the project's state folder, so the detailed log lands in
``.amlkit/logs/`` whatever the working directory.
"""

from __future__ import annotations

import logging
import logging.config

from amlkit import paths
from amlkit.config import LoggingConfig


def setup_logging(level: str | None = None, config: LoggingConfig | None = None) -> None:
    """Configure logging from logging_config.json.

    Args:
        level: optional console level override (for example ``"INFO"`` for ``amlkit -v``).
        config: an already parsed logging config; loaded from config/ when None.
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
