"""The Jupyter kernel each notebook declares (``amlkit``, from ``dev.py setup``), started quietly.

:func:`launch_config` asks for an encrypted loopback channel (CurveZMQ, which also silences
ipykernel 7's "running over TCP without encryption" warning), and :class:`LoggedKernelManager`
sends the kernel process's own stderr (start-up failures, shutdown tracebacks) to a log file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from traitlets import Unicode
from traitlets.config import Config

PROJECT_KERNEL = "amlkit"  # the kernel `python3 dev.py setup` registers and the notebooks declare


class LoggedKernelManager(AsyncKernelManager):
    """Start each kernel with its stderr in a log file instead of the terminal."""

    stderr_path = Unicode("", help="file that receives the kernel's stderr").tag(config=True)

    # jupyter_client types KernelManager.start_kernel as sync; the async manager's is async.
    async def start_kernel(self, **kw: Any) -> None:  # type: ignore[override]
        """Start the kernel; its stderr is appended to ``stderr_path`` when set."""
        if not self.stderr_path:
            return await super().start_kernel(**kw)
        with open(self.stderr_path, "ab") as log:  # the kernel process keeps its own handle
            return await super().start_kernel(stderr=log, **kw)


def launch_config(log: Path, connection_file: Path) -> Config:
    """Return the configuration for papermill's kernel manager: encrypted, stderr to ``log``.

    The kernel's connection file goes to ``connection_file`` (beside the executed notebook)
    rather than the system's temporary folder, where every run killed before its clean-up
    would leave one behind; jupyter_client removes it when the kernel shuts down.
    """
    return Config(
        KernelManager={"transport_encryption": "auto", "connection_file": str(connection_file)},
        LoggedKernelManager={"stderr_path": str(log)},
    )


def log_tail(log: Path, lines: int = 20) -> list[str]:
    """Return the last ``lines`` lines of a kernel's log (none when it does not exist)."""
    return log.read_text(errors="replace").splitlines()[-lines:] if log.is_file() else []


def declared_kernel(notebook: Path) -> str | None:
    """Return the name of the Jupyter kernel a notebook declares (``metadata.kernelspec``)."""
    metadata = json.loads(notebook.read_text(encoding="utf-8")).get("metadata", {})
    return metadata.get("kernelspec", {}).get("name")


def check_installed(notebooks: list[Path]) -> None:
    """Raise ValueError (saying how to register it) when a notebook's kernel is not installed."""
    installed = KernelSpecManager().find_kernel_specs()
    for notebook in notebooks:
        name = declared_kernel(notebook)
        if name not in installed:
            declares = f"the Jupyter kernel {name!r}" if name else "no Jupyter kernel"
            raise ValueError(
                f"{notebook.name} declares {declares}, and the kernels installed here are "
                f"{', '.join(sorted(installed)) or 'none'}. Register the project's kernel with "
                f"`python3 dev.py setup` (or `python -m ipykernel install --sys-prefix --name "
                f"{PROJECT_KERNEL} --display-name 'Python ({PROJECT_KERNEL})'` in the "
                "environment that has amlkit), and declare it in the notebook's "
                "metadata.kernelspec."
            )


def ensure_project_kernel() -> str:
    """Register the project's kernel for this Python when no kernel of that name exists.

    A job on Azure ML compute runs the notebooks in its own environment, where nobody ran
    ``python3 dev.py setup``: this registers ``amlkit`` there (``--sys-prefix``, the job's
    environment) before papermill starts it. Where the kernel exists, nothing changes.

    Returns:
        The kernel name, :data:`PROJECT_KERNEL`.
    """
    if PROJECT_KERNEL not in KernelSpecManager().find_kernel_specs():
        import subprocess
        import sys

        install = [sys.executable, "-m", "ipykernel", "install", "--sys-prefix"]
        names = ["--name", PROJECT_KERNEL, "--display-name", f"Python ({PROJECT_KERNEL})"]
        subprocess.run([*install, *names], check=True, capture_output=True)
    return PROJECT_KERNEL
