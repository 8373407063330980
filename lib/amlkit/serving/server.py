"""Start and stop the Azure ML inference server (``azmlinfsrv``) on loopback.

``azmlinfsrv`` has no host option, so it runs through :mod:`._launch`, which pins it to
127.0.0.1, with the service folder first on ``PYTHONPATH`` (it runs the folder's amlkit
copy, as on Azure); a server found listening beyond loopback is stopped. It runs in its own
process group, its output in ``server-<port>.log`` in the endpoint's state folder.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amlkit import io, paths
from amlkit.config import ConfigError, DeploymentConfig
from amlkit.names import is_name
from amlkit.serving import auth

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


def service_folder(service: str | Path) -> Path:
    """Return a packaged service's folder, from a name under ``deployed_models/`` or a path."""
    base = paths.deployed_models_dir()
    named = [base / service] if is_name(str(service)) else []  # a plain name, never "../x"
    for folder in (Path(service), *named):
        if (folder / "deployment_config.json").is_file():
            return folder
    have = sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
    raise FileNotFoundError(
        f"no packaged service {str(service)!r} in {base} (packaged: {have or 'none'}); "
        "run `amlkit package <model-name> --service NAME` first."
    )


def service_config(service_dir: Path) -> dict[str, Any]:
    """Read and validate a service folder's ``deployment_config.json`` (ConfigError naming it).

    The folder's copy is what the service runs with, so it is checked by the same rules as
    ``config/deployment_config.json``; the ``service`` key packaging adds is allowed.
    """
    path = service_dir / "deployment_config.json"
    try:
        config = io.read_json(path)
    except ValueError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}); package the service again.") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path} must hold a JSON object; package the service again.")
    rest = {k: v for k, v in config.items() if k != "service"}
    DeploymentConfig.from_dict(rest, source=path)
    return config


def free_port() -> int:
    """Return a TCP port that is free on loopback now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def listening_addresses(port: int) -> list[str]:
    """Return the local addresses listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = []
    for path in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        lines = path.read_text().splitlines()[1:] if path.is_file() else []
        for fields in (line.split() for line in lines):
            addr_hex, port_hex = fields[1].split(":")
            if fields[3] == "0A" and int(port_hex, 16) == port:  # 0A = LISTEN
                raw = bytes.fromhex(addr_hex)  # 32-bit words in host (little-endian) order
                raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
                found.append(socket.inet_ntop(family, raw))
    return found


@dataclass
class LocalEndpoint:
    """A running local server: use as a context manager, or call :meth:`stop`."""

    process: subprocess.Popen[bytes]
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
        return {"Content-Type": "application/json"} | (
            {"Authorization": f"Bearer {self.key}"} if self.key else {}
        )

    def score(
        self, payload: Any, *, auth: bool = True, request_id: str | None = None
    ) -> tuple[int, Any]:
        """POST ``payload`` (JSON, or bytes) to /score (``auth=False``: no key); status, JSON."""
        headers = self.headers() if auth else {"Content-Type": "application/json"}
        if request_id:
            headers["x-request-id"] = request_id
        body = payload if isinstance(payload, bytes) else json.dumps(payload)
        conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=30.0)
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
    model_dir: str | Path | None = None,
) -> LocalEndpoint:
    """Start ``azmlinfsrv`` for a service folder and wait until it answers on loopback.

    Defaults come from the folder's ``deployment_config.json`` (port 0: a free one). Raises
    RuntimeError, with the server log's tail, if it exits, hangs or listens beyond loopback.
    ``env`` adds environment variables; ``python`` runs the server in another environment (a
    service's own lean one); default this one. ``model_dir``: ``AZUREML_MODEL_DIR``, where the
    model is mounted apart from the code (an Azure ML deployment's layout); default the
    folder's ``model/``.
    """
    if host != LOOPBACK:
        raise ValueError(f"host {host!r} refused: the local endpoint listens on {LOOPBACK} only")
    service_dir = Path(service_dir).resolve()
    model_root = Path(model_dir).resolve() if model_dir else service_dir / "model"
    config = service_config(service_dir)
    local, endpoint = config.get("local", {}), config["endpoint_name"]
    port = (local.get("port", 5001) if port is None else port) or free_port()
    workers = workers or int(local.get("workers", 1))
    startup_timeout_s = startup_timeout_s or float(local.get("startup_timeout_s", 60))
    state = auth.endpoint_dir(endpoint)
    log_path = state / f"server-{port}.log"
    timeout_ms = config.get("request_settings", {}).get("request_timeout_ms", 5000)
    child_env = {
        **os.environ,
        "AML_APP_ROOT": str(service_dir),
        "AZUREML_MODEL_DIR": str(model_root),
        "AMLKIT_REQUEST_LOG_DIR": str(state / "logs"),
        "SCORING_TIMEOUT_MS": str(timeout_ms),
        "AMLKIT_MAX_BODY_BYTES": str(config.get("limits", {}).get("max_body_bytes", 2**20)),
        "SERVER_VERSION_LOG_RESPONSE_ENABLED": "true",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(service_dir), os.getenv("PYTHONPATH")])),
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",
        **(env or {}),
    }
    key = None
    if config.get("auth_mode", "key") == "key":
        child_env["AMLKIT_KEYS_FILE"] = str(auth.ensure_keys(endpoint))
        key = auth.show_keys(endpoint)["primary"]  # KeysFileError when the file is broken
    # -P: not the launcher's folder first on sys.path (it holds serving/requests.py)
    cmd = [str(python or sys.executable), "-P", str(Path(__file__).with_name("_launch.py"))]
    cmd += ["--entry_script", str(service_dir / "scoring_script.py")]
    cmd += ["--model_dir", str(model_root), "--port", str(port)]
    cmd += ["--worker_count", str(workers)]
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
    handle = LocalEndpoint(process, port, service_dir, endpoint, log_path, state / "logs", key)
    deadline = time.monotonic() + startup_timeout_s
    while not _healthy(port):
        exited = process.poll() is not None
        if exited or time.monotonic() > deadline:
            handle.stop()
            why = (
                f"exited with code {process.returncode} while starting {service_dir.name}; "
                "server log"
                if exited
                else f"did not answer on port {port} within {startup_timeout_s}s; "
                "raise local.startup_timeout_s or read"
            )
            raise RuntimeError(f"azmlinfsrv {why} {log_path}:\n{_tail(log_path)}")
        time.sleep(0.1)
    wide = [a for a in listening_addresses(port) if a not in (LOOPBACK, "::1")]
    if wide:
        handle.stop()
        raise RuntimeError(f"server listened on {wide} beyond loopback; stopped it")
    logger.info("serving %s at %s (pid %s)", service_dir.name, handle.url, process.pid)
    return handle


def serve(service_dir: str | Path, **kwargs: Any) -> LocalEndpoint:
    """Start a local endpoint for a ``with`` block, which stops it; see :func:`start_server`."""
    return start_server(service_dir, **kwargs)
