"""Run ``azmlinfsrv`` bound to 127.0.0.1 (it has no host option); imports nothing of amlkit.

It stops the server when its parent dies (even by SIGKILL) and turns off gunicorn's
per-user control socket.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time


def _stop_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)


def main() -> None:
    """Set the server's host constant to loopback, then run its own entry point."""
    from azureml_inference_server_http import amlserver
    from gunicorn import config as gunicorn_config

    if not hasattr(amlserver, "DEFAULT_HOST"):
        sys.exit("azureml_inference_server_http changed: no DEFAULT_HOST; refusing to bind wide")
    amlserver.DEFAULT_HOST = "127.0.0.1"
    if hasattr(gunicorn_config, "ControlSocketDisable"):
        extra = os.environ.get("GUNICORN_CMD_ARGS", "")
        os.environ["GUNICORN_CMD_ARGS"] = f"{extra} --no-control-socket".strip()
    parent = os.getppid()
    threading.Thread(target=_stop_when_orphaned, args=(parent,), daemon=True).start()
    sys.argv[0] = "azmlinfsrv"
    amlserver.run()


if __name__ == "__main__":
    main()
