"""Strip execution noise from notebooks before they are committed.

Committed notebooks keep their outputs (nbval compares against them; readers see the plots),
but not the noise that changes on every run: papermill's timing and parameter metadata, cell
execution timestamps, and widget state. ``amlkit notebooks clean`` and the pre-commit hook call
:func:`clean_notebook`.
"""

from __future__ import annotations

import json
from pathlib import Path

from amlkit.io import write_text_atomic

CELL_METADATA_DROP = ("execution", "papermill", "collapsed", "scrolled", "ExecuteTime")
NOTEBOOK_METADATA_DROP = ("papermill", "widgets", "toc", "varInspector")


def clean_notebook(path: str | Path) -> bool:
    """Remove execution noise from one notebook in place; return True if it changed."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    nb = json.loads(text)
    for key in NOTEBOOK_METADATA_DROP:
        nb.get("metadata", {}).pop(key, None)
    for cell in nb.get("cells", []):
        meta = cell.get("metadata", {})
        for key in CELL_METADATA_DROP:
            meta.pop(key, None)
        tags = [t for t in meta.get("tags", []) if t != "injected-parameters"]
        if "tags" in meta:
            if tags:
                meta["tags"] = tags
            else:
                meta.pop("tags")
        cell.pop("id", None) if nb.get("nbformat_minor", 0) < 5 else None
    cleaned = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    if cleaned != text:
        write_text_atomic(path, cleaned)
        return True
    return False
