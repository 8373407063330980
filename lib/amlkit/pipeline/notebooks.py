"""Strip execution noise from notebooks before they are committed, with nbstripout.

Outputs (nbval compares against them), execution counts and cell ids stay; what changes on
every run goes: :data:`NOISE_KEYS`, papermill's injected-parameters cell and empty ``tags``.
"""

from __future__ import annotations

from pathlib import Path

try:
    import nbformat
    from nbstripout import strip_output
except ModuleNotFoundError as exc:  # pragma: no cover - depends on how amlkit was installed
    raise ModuleNotFoundError(
        f"cleaning notebooks needs {exc.name}, a contributor tool in amlkit's dev extra; "
        "install it with `python3 dev.py setup` (or `pip install -e '.[dev]'`)"
    ) from exc

from amlkit.io import write_text_atomic

# nbstripout's own command-line defaults, then papermill's and editor extensions' keys.
NOISE_KEYS = (
    "metadata.signature",
    "metadata.widgets",
    "cell.metadata.collapsed",
    "cell.metadata.ExecuteTime",
    "cell.metadata.execution",
    "cell.metadata.heading_collapsed",
    "cell.metadata.hidden",
    "cell.metadata.scrolled",
    "metadata.papermill",
    "cell.metadata.papermill",
    "metadata.toc",
    "metadata.varInspector",
)
INJECTED_TAG = "injected-parameters"


def clean_notebook(path: str | Path) -> bool:
    """Strip execution noise from one notebook in place, keeping its outputs; True if changed."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    nb = nbformat.reads(text, as_version=nbformat.NO_CONVERT)
    strip_output(
        nb,
        keep_output=True,
        keep_count=True,
        keep_id=True,
        extra_keys=list(NOISE_KEYS),
        drop_tagged_cells=[INJECTED_TAG],
    )
    for cell in nb.cells:
        if cell.metadata.get("tags") == []:
            del cell.metadata["tags"]
    cleaned = nbformat.writes(nb) + "\n"  # nbformat.write's layout, as Jupyter saves it
    if cleaned == text:
        return False
    write_text_atomic(path, cleaned)
    return True
