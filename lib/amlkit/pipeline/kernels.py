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


def launch_config(log: Path) -> Config:
    """Return the configuration for papermill's kernel manager: encrypted, stderr to ``log``."""
    return Config(
        KernelManager={"transport_encryption": "auto"},
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
