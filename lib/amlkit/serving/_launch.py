"""Run ``azmlinfsrv`` bound to 127.0.0.1 (it has no host option; see :mod:`.server`).

The server also stops itself (SIGTERM to its gunicorn master, which stops the workers) when
the process that started it goes away, even by SIGKILL: a watchdog thread notices that the
parent process changed. No orphaned server keeps a port after its notebook or CLI died.

It imports nothing of amlkit and runs as a file (:func:`amlkit.serving.server.start_server`
starts it with ``python -P``), so the server's workers import the amlkit modules packaged in
the service folder.

gunicorn 25.1+ opens a control socket at one fixed path in the home folder, shared by every
server of the user; it is turned off (``--no-control-socket``): the servers are managed
through their process group instead.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

WATCH_PERIOD_S = 1.0


def _stop_when_orphaned(parent: int) -> None:
    while True:
        time.sleep(WATCH_PERIOD_S)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)
            return


def main() -> None:
    """Set the server's host constant to loopback, then run its own entry point."""
    from azureml_inference_server_http import amlserver

    if not hasattr(amlserver, "DEFAULT_HOST"):
        sys.exit("azureml_inference_server_http changed: no DEFAULT_HOST; refusing to bind wide")
    amlserver.DEFAULT_HOST = "127.0.0.1"
    from gunicorn import config as gunicorn_config

    if hasattr(gunicorn_config, "ControlSocketDisable"):
        extra = os.environ.get("GUNICORN_CMD_ARGS", "")
        os.environ["GUNICORN_CMD_ARGS"] = f"{extra} --no-control-socket".strip()
    watchdog = threading.Thread(
        target=_stop_when_orphaned, args=(os.getppid(),), name="amlkit-orphan-watch", daemon=True
    )
    watchdog.start()
    sys.argv[0] = "azmlinfsrv"
    amlserver.run()


if __name__ == "__main__":
    main()
