"""Run ``azmlinfsrv`` behind a buffering front on 127.0.0.1; imports nothing of amlkit.

The front (:mod:`amlkit.serving.front`, loaded by path) listens on loopback at ``--port``
and starts the server itself as its child, bound to a Unix socket in a private (0700) temp
folder, so only the front reaches it. Both stop when their parent dies (even by SIGKILL);
gunicorn's per-user control socket is off. Timeouts of the front, in seconds:
``AMLKIT_FRONT_HEAD_TIMEOUT_S`` (10), ``AMLKIT_FRONT_BODY_TIMEOUT_S`` (5); bodies over
``AMLKIT_MAX_BODY_BYTES`` are not forwarded (the scoring script answers their 413).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import logging
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BACKEND_ENV = "AMLKIT_BACKEND_DIR"


def _stop_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)


def _watch_parent() -> None:
    parent = os.getppid()
    threading.Thread(target=_stop_when_orphaned, args=(parent,), daemon=True).start()


def backend_socket(folder: str, port: int) -> str:
    """The Unix socket the server binds: azmlinfsrv binds ``<host>:<port>``, host ``unix:...``."""
    return f"{folder}/backend:{port}"


def run_server(folder: str) -> None:
    """Run azmlinfsrv's own entry point, bound to the Unix socket in ``folder``."""
    from azureml_inference_server_http import amlserver
    from gunicorn import config as gunicorn_config

    if not hasattr(amlserver, "DEFAULT_HOST"):
        sys.exit("azureml_inference_server_http changed: no DEFAULT_HOST; refusing to bind wide")
    amlserver.DEFAULT_HOST = f"unix:{folder}/backend"
    if hasattr(gunicorn_config, "ControlSocketDisable"):
        extra = os.environ.get("GUNICORN_CMD_ARGS", "")
        os.environ["GUNICORN_CMD_ARGS"] = f"{extra} --no-control-socket".strip()
    _watch_parent()
    sys.argv[0] = "azmlinfsrv"
    amlserver.run()


def _load_front():  # type: ignore[no-untyped-def]
    path = Path(__file__).with_name("front.py")
    spec = importlib.util.spec_from_file_location("amlkit_front", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["amlkit_front"] = module  # dataclasses look the module up by name
    spec.loader.exec_module(module)
    return module


async def _serve_front(front_module, settings, server: subprocess.Popen[bytes]) -> int:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    listening = await front_module.Front(settings).serve()
    exited: asyncio.Future[int] = loop.run_in_executor(None, server.wait)
    waiter: asyncio.Future[bool] = asyncio.ensure_future(stop.wait())
    await asyncio.wait([exited, waiter], return_when=asyncio.FIRST_COMPLETED)  # type: ignore[type-var]
    listening.close()
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
    code = await exited
    waiter.cancel()
    return int(code)


def main() -> None:
    """Start the server behind the front (or, as the front's child, the server itself)."""
    if os.environ.get(BACKEND_ENV):
        run_server(os.environ[BACKEND_ENV])
        return
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname).1s [%(process)d] %(name)s - %(message)s",
    )
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--port", type=int, default=5001)
    port = parser.parse_known_args()[0].port
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):  # idle clients cost a descriptor each
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    front = _load_front()
    folder = tempfile.mkdtemp(prefix="amlkit-srv-")  # 0700: only this user reaches the server
    settings = front.FrontSettings(
        port=port,
        backend_socket=backend_socket(folder, port),
        max_body_bytes=int(os.environ.get("AMLKIT_MAX_BODY_BYTES") or 2**20),
        head_timeout_s=float(os.environ.get("AMLKIT_FRONT_HEAD_TIMEOUT_S") or 10),
        body_timeout_s=float(os.environ.get("AMLKIT_FRONT_BODY_TIMEOUT_S") or 5),
    )
    _watch_parent()
    server = subprocess.Popen(
        [sys.executable, "-P", __file__, *sys.argv[1:]], env={**os.environ, BACKEND_ENV: folder}
    )
    try:
        code = asyncio.run(_serve_front(front, settings, server))
    finally:
        if server.poll() is None:
            server.kill()
        shutil.rmtree(folder, ignore_errors=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
