"""Start and stop the Azure ML inference server (``azmlinfsrv``) on loopback.

``azmlinfsrv`` has no host option: it hands gunicorn ``-b 0.0.0.0:<port>`` (its module
constant ``DEFAULT_HOST``), so it would listen on every interface. We start it through
:mod:`amlkit.serving._launch`, which sets that constant to ``127.0.0.1`` and then runs the
server's own entry point (same arguments, same environment variables, same gunicorn app).
The launcher runs as a file (``python -P``), not as a module of amlkit, with the service
folder first on ``PYTHONPATH``: the service imports the amlkit modules packaged in its
folder, the same files an Azure deployment runs, not the installed amlkit.
After start-up the listening sockets of the port are read from ``/proc/net/tcp*`` and the
server is stopped if anything listens beyond loopback.

The server runs in its own process group; :meth:`LocalEndpoint.stop` sends SIGTERM to the
group and SIGKILL after a timeout. Output goes to ``server.log`` in the endpoint's state
folder (never to a pipe, which could fill up and block the server).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amlkit import io
from amlkit.serving import auth

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """Return a TCP port that is free on loopback now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def listening_addresses(port: int) -> list[str]:
    """Return the local addresses listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = []
    for name in ("tcp", "tcp6"):
        path = Path("/proc/net") / name
        if not path.is_file():
            continue
        for line in path.read_text().splitlines()[1:]:
            parts = line.split()
            local, state = parts[1], parts[3]
            addr_hex, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:  # 0A = LISTEN
                continue
            if len(addr_hex) == 8:
                addr = socket.inet_ntop(socket.AF_INET, bytes.fromhex(addr_hex)[::-1])
            else:
                raw = bytes.fromhex(addr_hex)
                raw = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                addr = socket.inet_ntop(socket.AF_INET6, raw)
            found.append(addr)
    return found


@dataclass
class LocalEndpoint:
    """A running local server: use as a context manager, or call :meth:`stop`."""

    process: subprocess.Popen
    port: int
    service_dir: Path
    endpoint: str
    log_path: Path
    request_log_dir: Path
    key: str | None

    @property
    def url(self) -> str:
        """The scoring URL."""
        return f"http://{LOOPBACK}:{self.port}/score"

    @property
    def pid(self) -> int:
        """The server's master process id (also its process group id)."""
        return self.process.pid

    def headers(self) -> dict[str, str]:
        """Headers for a scoring call (JSON, and the key when auth is on)."""
        headers = {"Content-Type": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        return headers

    def score(
        self,
        payload: Any,
        *,
        auth: bool = True,
        request_id: str | None = None,
        timeout: float = 30.0,
    ) -> tuple[int, Any]:
        """POST ``payload`` to /score; return ``(status, parsed JSON body)``.

        Args:
            payload: a JSON-serialisable value, or ``bytes`` sent as they are.
            auth: send the endpoint key (when auth is on); False to send none.
            request_id: the ``x-request-id`` header (the request log's ``request_id``).
            timeout: seconds to wait for the answer.
        """
        headers = self.headers()
        if not auth:
            headers.pop("Authorization", None)
        if request_id:
            headers["x-request-id"] = request_id
        body = payload if isinstance(payload, bytes) else json.dumps(payload)
        conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=timeout)
        try:
            conn.request("POST", "/score", body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read() or b"null")
        finally:
            conn.close()

    def alive(self) -> bool:
        """Return True while the server process runs."""
        return self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        """Stop the server: SIGTERM to its process group, SIGKILL after ``timeout`` seconds."""
        if self.process.poll() is None:
            _signal_group(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                logger.warning("server %s ignored SIGTERM for %ss; killing", self.pid, timeout)
                _signal_group(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=timeout)
        _signal_group(self.process.pid, signal.SIGKILL)  # stray workers of the group
        return self.process.returncode

    def wait(self) -> int:
        """Block until the server exits (CLI ``amlkit serve``); Ctrl-C stops it."""
        try:
            return self.process.wait()
        except KeyboardInterrupt:
            return self.stop() or 0

    def __enter__(self) -> LocalEndpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _healthy(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection(LOOPBACK, port, timeout=1.0)
        conn.request("GET", "/")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"


def start_server(
    service_dir: str | Path,
    *,
    port: int | None = None,
    workers: int | None = None,
    startup_timeout_s: float | None = None,
    host: str = LOOPBACK,
    env: dict[str, str] | None = None,
    python: str | Path | None = None,
) -> LocalEndpoint:
    """Start ``azmlinfsrv`` for a service folder and wait until it answers.

    Args:
        service_dir: a folder made by :func:`amlkit.serving.package.package_service`.
        port: the port; default the config's ``local.port``, 0 for a free one.
        workers: gunicorn worker processes; default the config's ``local.workers``.
        startup_timeout_s: how long to wait for the health route; default from config.
        host: must be 127.0.0.1 (the server never listens beyond loopback).
        env: extra environment variables for the server.
        python: the Python that runs the server, such as one of a service's own lean
            environment; default this one.

    Returns:
        The running :class:`LocalEndpoint`.

    Raises:
        ValueError: ``host`` is not loopback.
        RuntimeError: the server exited, did not answer in time, or listened beyond loopback;
            the message holds the tail of its log.
    """
    if host != LOOPBACK:
        raise ValueError(f"host {host!r} refused: the local endpoint listens on {LOOPBACK} only")
    service_dir = Path(service_dir).resolve()
    config = io.read_json(service_dir / "deployment_config.json")
    local = config.get("local", {})
    endpoint = config["endpoint_name"]
    port = local.get("port", 5001) if port is None else port
    port = port or free_port()
    workers = workers or int(local.get("workers", 1))
    startup_timeout_s = startup_timeout_s or float(local.get("startup_timeout_s", 60))
    state = auth.endpoint_dir(endpoint)
    log_dir = state / "logs"
    log_path = state / f"server-{port}.log"
    child_env = {
        **os.environ,
        "AML_APP_ROOT": str(service_dir),
        "AZUREML_MODEL_DIR": str(service_dir / "model"),
        "AMLKIT_REQUEST_LOG_DIR": str(log_dir),
        "SCORING_TIMEOUT_MS": str(
            config.get("request_settings", {}).get("request_timeout_ms", 5000)
        ),
        "SERVER_VERSION_LOG_RESPONSE_ENABLED": "true",
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(service_dir), os.environ.get("PYTHONPATH", "")) if p
        ),
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",
        **(env or {}),
    }
    key = None
    if config.get("auth_mode") == "key":
        keys_file = auth.ensure_keys(endpoint)
        child_env["AMLKIT_KEYS_FILE"] = str(keys_file)
        key = auth.show_keys(endpoint)["primary"]
    cmd = [
        str(python or sys.executable),
        "-P",  # not the launcher's folder first on sys.path: it holds serving/requests.py
        str(Path(__file__).with_name("_launch.py")),
        "--entry_script",
        str(service_dir / "scoring_script.py"),
        "--model_dir",
        str(service_dir / "model"),
        "--port",
        str(port),
        "--worker_count",
        str(workers),
    ]
    with open(log_path, "ab") as out:
        process = subprocess.Popen(
            cmd,
            cwd=service_dir,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    handle = LocalEndpoint(process, port, service_dir, endpoint, log_path, log_dir, key)
    deadline = time.monotonic() + startup_timeout_s
    while True:
        if process.poll() is not None:
            handle.stop()
            raise RuntimeError(
                f"azmlinfsrv exited with code {process.returncode} while starting "
                f"{service_dir.name}; server log {log_path}:\n{_tail(log_path)}"
            )
        if _healthy(port):
            break
        if time.monotonic() > deadline:
            handle.stop()
            raise RuntimeError(
                f"azmlinfsrv did not answer on port {port} within {startup_timeout_s}s; "
                f"raise local.startup_timeout_s or read {log_path}:\n{_tail(log_path)}"
            )
        time.sleep(0.1)
    addresses = listening_addresses(port)
    wide = [a for a in addresses if a not in (LOOPBACK, "::1")]
    if wide:
        handle.stop()
        raise RuntimeError(f"server listened on {wide} beyond loopback; stopped it")
    logger.info("serving %s at %s (pid %s)", service_dir.name, handle.url, process.pid)
    return handle


@contextmanager
def serve(service_dir: str | Path, **kwargs: Any) -> Iterator[LocalEndpoint]:
    """Run a local endpoint for the ``with`` block; arguments as :func:`start_server`."""
    handle = start_server(service_dir, **kwargs)
    try:
        yield handle
    finally:
        handle.stop()
