"""The stage notebooks (``NN_name.ipynb``, run in number order) and ``--stages`` selections.

No notebook library is imported here, so the command line starts fast.
"""

from __future__ import annotations

import re
from pathlib import Path

from amlkit import paths

NOTEBOOK_RE = re.compile(r"^(\d\d)_([a-z0-9_]+)\.ipynb$")


def discover(folder: Path | None = None) -> list[Path]:
    """Return the stage notebooks (``NN_name.ipynb``) in run order."""
    folder = folder or paths.notebooks_dir()
    return sorted(p for p in folder.glob("*.ipynb") if NOTEBOOK_RE.match(p.name))


def select(stages: list[str] | None, notebooks: list[Path]) -> list[Path]:
    """Pick notebooks by number (``03``), name (``03_data_preprocessing``) or range (``01-03``)."""
    if not stages:
        return notebooks
    chosen: list[Path] = []
    for stage in stages:
        if re.fullmatch(r"\d\d?-\d\d?", stage):
            lo, hi = (int(x) for x in stage.split("-"))
            hits = [p for p in notebooks if lo <= int(p.name[:2]) <= hi]
        else:
            hits = [
                p
                for p in notebooks
                if p.stem == stage or p.name[:2] == stage.zfill(2) or p.stem[3:] == stage
            ]
        if not hits:
            names = ", ".join(p.stem for p in notebooks)
            raise ValueError(f"stage {stage!r} matches no notebook; the stages are: {names}")
        chosen += [p for p in hits if p not in chosen]
    return sorted(chosen)
