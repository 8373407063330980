"""Running the notebooks (``amlkit run``) and their upkeep; kept light so the CLI starts fast."""


class PipelineError(RuntimeError):
    """A notebook failed; the message names it, the cell, and the kept executed copy."""
