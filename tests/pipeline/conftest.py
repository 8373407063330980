"""Fixtures for the pipeline tests: small notebooks that papermill really runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest

PROJECT_KERNELSPEC = {"name": "amlkit", "display_name": "Python (amlkit)", "language": "python"}


@pytest.fixture(scope="session")
def project_kernelspec() -> dict[str, str]:
    """The kernelspec every committed notebook declares (the kernel `dev.py setup` registers)."""
    return dict(PROJECT_KERNELSPEC)


@pytest.fixture(scope="session")
def make_notebook() -> Callable[..., Path]:
    """A factory writing a small notebook that declares the project's kernel.

    ``make_notebook(path, *sources, parameters=None, kernel="amlkit")`` writes one code cell
    per source, after a ``parameters``-tagged cell when ``parameters`` is given.
    """

    def make(
        path: Path, *sources: str, parameters: str | None = None, kernel: str = "amlkit"
    ) -> Path:
        nb = nbformat.v4.new_notebook()
        if parameters is not None:
            nb.cells.append(
                nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]})
            )
        nb.cells += [nbformat.v4.new_code_cell(source) for source in sources]
        nb.metadata["kernelspec"] = {**PROJECT_KERNELSPEC, "name": kernel}
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, path)
        return path

    return make
