"""Real stand-ins for the platform's services, on loopback: a tracking server and blob storage.

An Azure ML job talks to its workspace's MLflow tracking server and model registry over HTTP
and reads and writes its datastore, which is Azure Blob Storage. The local twin
(``amlkit azure run-local``) and the tests give a job the same two things, for real:

- :class:`MlflowServer`: ``mlflow server`` with a SQLite backend and proxied artifacts
  (``--serve-artifacts``), so runs, artifacts and the registry all go over HTTP, as they do
  against a workspace;
- :class:`Azurite`: the Azure Storage emulator (npm ``azurite``, its blob service), read and
  written through adlfs with ``abfs://`` / ``az://`` URIs and the emulator's connection string.

Both are context managers that start the process on a free port, wait until it answers and
stop it (with its process group) on exit. Azurite is found on ``PATH``, in ``AMLKIT_AZURITE``
(the ``azurite-blob`` executable) or where ``python3 dev.py setup`` installs it
(``.venv/azurite/node_modules/.bin``); :func:`find_azurite` says which, or returns None.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
AZURITE_VERSION = "3.35.0"
# The emulator's well-known development account (published in Azurite's documentation).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


class StandInError(RuntimeError):
    """A stand-in could not start: missing program, or it never answered (the log says why)."""


def free_port() -> int:
    """Return a TCP port on loopback that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _wait_until(check: Any, process: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    name = Path(str(next(iter(process.args)))).name  # type: ignore[arg-type]
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StandInError(
                f"{name} exited with {process.returncode} while starting; "
                f"its log {log} ends with:\n{_tail(log)}"
            )
        if check():
            return
        time.sleep(0.2)
    _stop(process)
    raise StandInError(f"{name} did not answer in {timeout_s:.0f} s; log:\n{_tail(log)}")


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return bool(answer.status < 500)
    except OSError as exc:  # URLError and HTTPError are OSErrors; a 4xx still means "up"
        code = getattr(exc, "code", None)
        return code is not None and code < 500


class _Process:
    """A child process in its own group, its output in a log file."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder).resolve()
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log = self.folder / f"{type(self).__name__.lower()}.log"

    def _start(self, command: list[str], env: dict[str, str] | None = None) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as handle:
            self.process = subprocess.Popen(
                command,
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )

    def stop(self) -> None:
        """Stop the process and its children."""
        if self.process is not None:
            _stop(self.process)
            self.process = None

    def __exit__(self, *exc: object) -> None:
        self.stop()


class MlflowServer(_Process):
    """``mlflow server`` on loopback: SQLite backend, artifacts proxied through the server.

    Args:
        folder: holds ``mlflow.db``, ``artifacts/`` and the server's log.
        port: default a free port.
    """

    def __init__(self, folder: str | Path, port: int = 0) -> None:
        super().__init__(Path(folder))
        self.port = port

    @property
    def uri(self) -> str:
        """The tracking (and registry) URI: ``http://127.0.0.1:<port>``."""
        return f"http://{LOOPBACK}:{self.port}"

    def start(self, timeout_s: float = 240.0) -> MlflowServer:
        """Start the server and wait until ``/health`` answers."""
        self.port = self.port or free_port()
        backend = f"sqlite:///{(self.folder / 'mlflow.db').as_posix()}"
        command = [
            sys.executable, "-m", "mlflow", "server",
            "--host", LOOPBACK, "--port", str(self.port),
            "--backend-store-uri", backend,
            "--serve-artifacts", "--artifacts-destination", str(self.folder / "artifacts"),
            "--workers", "1",
        ]  # fmt: skip
        # the server's own environment must not point it at another tracking store
        env = {"MLFLOW_TRACKING_URI": "", "MLFLOW_REGISTRY_URI": ""}
        self._start(command, env)
        assert self.process is not None
        _wait_until(lambda: _answers(f"{self.uri}/health"), self.process, self.log, timeout_s)
        logger.info("mlflow server at %s (store %s)", self.uri, self.folder)
        return self

    def __enter__(self) -> MlflowServer:
        return self.start()


def find_azurite() -> str | None:
    """Return the ``azurite-blob`` executable, or None when it is not installed."""
    named = os.environ.get("AMLKIT_AZURITE")
    if named and Path(named).is_file():
        return named
    on_path = shutil.which("azurite-blob")
    if on_path:
        return on_path
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / ".venv" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
        if candidate.is_file():
            return str(candidate)
    return None


class Azurite(_Process):
    """Azurite's blob service on loopback, its data in ``folder``.

    Args:
        folder: Azurite's ``--location`` (its data and the log).
        port: default a free port.
    """

    def __init__(self, folder: str | Path, port: int = 0) -> None:
        super().__init__(Path(folder))
        self.port = port

    @property
    def account_url(self) -> str:
        """The blob service URL of the development account."""
        return f"http://{LOOPBACK}:{self.port}/{AZURITE_ACCOUNT}"

    @property
    def connection_string(self) -> str:
        """The connection string azure-storage-blob and adlfs take."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_KEY};BlobEndpoint={self.account_url};"
        )

    def storage_options(self) -> dict[str, str]:
        """Return the fsspec storage options for ``abfs://`` and ``az://`` URIs on this emulator."""
        return {"connection_string": self.connection_string}

    def filesystem(self) -> Any:
        """Return an ``adlfs.AzureBlobFileSystem`` on this emulator."""
        import adlfs

        return adlfs.AzureBlobFileSystem(connection_string=self.connection_string)

    def start(self, timeout_s: float = 60.0) -> Azurite:
        """Start the blob service and wait until it answers.

        Raises:
            StandInError: Azurite is not installed (``python3 dev.py setup`` installs it when
                npm is on the machine) or did not start.
        """
        program = find_azurite()
        if program is None:
            raise StandInError(
                "Azurite is not installed: run `python3 dev.py setup` (it installs npm's "
                f"azurite@{AZURITE_VERSION} into .venv/azurite when npm is present), or "
                "`npm install azurite` and put azurite-blob on PATH, or set AMLKIT_AZURITE"
            )
        self.port = self.port or free_port()
        command = [
            program, "--location", str(self.folder / "data"),
            "--blobHost", LOOPBACK, "--blobPort", str(self.port),
            "--skipApiVersionCheck", "--loose", "--silent",
        ]  # fmt: skip
        self._start(command)
        assert self.process is not None
        url = f"{self.account_url}?comp=list"
        _wait_until(lambda: _answers(url), self.process, self.log, timeout_s)
        logger.info("azurite blob service at %s", self.account_url)
        return self

    def __enter__(self) -> Azurite:
        return self.start()


def install_azurite(prefix: str | Path) -> Path | None:
    """Install npm's azurite (pinned) under ``prefix`` unless there; return the executable.

    Returns None, with a warning, when npm is not on the machine.
    """
    prefix = Path(prefix)
    program = prefix / "node_modules" / ".bin" / "azurite-blob"
    if program.is_file():
        return program
    npm = shutil.which("npm")
    if npm is None:
        logger.warning("npm is not installed: Azurite (the blob storage stand-in) is skipped")
        return None
    prefix.mkdir(parents=True, exist_ok=True)
    command = [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund"]
    subprocess.run([*command, f"azurite@{AZURITE_VERSION}"], check=True)
    return program
