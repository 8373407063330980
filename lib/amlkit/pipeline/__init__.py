"""Running the notebooks: the papermill pipeline behind ``amlkit run`` and notebook upkeep.

The modules import papermill and nbformat; this package file stays light, so the ``amlkit``
command starts fast and imports them only in the commands that run or clean notebooks.
"""


class PipelineError(RuntimeError):
    """A notebook failed; the message names it, the cell, and the kept executed copy."""
