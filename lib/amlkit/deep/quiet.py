"""Import TensorFlow without its start-up chatter on stderr (import this before Keras).

TensorFlow's C++ runtime writes timestamped lines to file descriptor 2 as it loads (oneDNN,
CUDA stubs, CPU features); in a notebook they land in cell outputs and change on every run.
Importing this module imports TensorFlow with descriptor 2 captured into
:data:`startup_messages` and the log (INFO). Unless ``TF_CPP_MIN_LOG_LEVEL`` is already set
(``0`` shows everything), it is set to ``3`` and the ``tensorflow`` logger to the same level.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)

LEVEL_ENV = "TF_CPP_MIN_LOG_LEVEL"
startup_messages: list[str] = []  # what TensorFlow wrote to stderr while it was imported
PYTHON_LEVELS = {"0": logging.INFO, "1": logging.WARNING, "2": logging.ERROR, "3": logging.CRITICAL}


@contextmanager
def captured_stderr_fd() -> Iterator[None]:
    """Send what the block writes to descriptor 2 to :data:`startup_messages` and the log.

    Logged at INFO (WARNING when the block raises); does nothing when fd 2 cannot be duplicated.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    level = logging.INFO
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        except BaseException:
            level = logging.WARNING  # the block failed: what TensorFlow said may explain why
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", errors="replace")
            lines = [line for line in text.splitlines() if line.strip()]
            startup_messages.extend(lines)
            for line in lines:
                logger.log(level, "tensorflow: %s", line)


def _import_tensorflow() -> None:
    level = os.environ.setdefault(LEVEL_ENV, "3")
    if "tensorflow" in sys.modules:
        return
    with captured_stderr_fd():
        import tensorflow as tf

        # Looking for GPUs initialises the CUDA platform, which logs when no driver is there.
        tf.config.list_physical_devices("GPU")
    logging.getLogger("tensorflow").setLevel(PYTHON_LEVELS.get(level, logging.WARNING))


_import_tensorflow()
