"""Entry script of the Azure ML batch deployment: ``init()`` then ``run(mini_batch)``.

Azure ML's batch driver calls ``init()`` once per worker process and ``run()`` for every
mini-batch: a list of file paths (a folder or file input) or a pandas frame (a tabular
input). Files are scored in chunks by :func:`amlkit.serving.batch.scored_chunks`, the same
scoring as ``amlkit score`` and the online service (ONNX when the packaged model has it),
and ``run()`` returns one JSON object per scored row, as a line of text, which Azure ML
appends to the deployment's output file (``output_action: append_row``, ``predictions.jsonl``):
the source file, the row within it, the input columns, the prediction and, for classifiers,
one probability per class. ``append_row`` writes no header, so each line names its own
columns: ``pandas.read_json(path, lines=True)`` reads the file back whole.

The model comes from ``$AZUREML_MODEL_DIR`` (the deployment's model: the packaged model
folder); the amlkit modules it needs are copied beside this script, as in a service folder.
"""

import importlib.util
import logging
import os
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if importlib.util.find_spec("amlkit") is None:  # on Azure: the modules packaged beside us
    sys.path.insert(0, str(HERE))

from amlkit.serving.batch import score_frame, scored_chunks  # noqa: E402
from amlkit.serving.runtime import Scorer  # noqa: E402

logger = logging.getLogger("amlkit.serving.batch_driver")
STATE: dict[str, Any] = {}
CHUNK_ROWS = int(os.environ.get("AMLKIT_BATCH_CHUNK_ROWS", "50000"))


def init():
    """Load the model once per worker process, its files checked against its metadata first."""
    STATE["scorer"] = Scorer(os.environ.get("AZUREML_MODEL_DIR") or HERE / "model")
    logger.info("batch scorer ready: %s backend", STATE["scorer"].backend)


def run(mini_batch):
    """Score a mini-batch of files (or a frame); return one JSON line per scored row."""
    import pandas as pd

    scorer = STATE["scorer"]
    if isinstance(mini_batch, pd.DataFrame):
        result = score_frame(mini_batch, scorer)
        result.insert(0, "row", range(len(result)))
        return _lines(result)
    frames = []
    for path in mini_batch:
        scored = pd.concat(scored_chunks(Path(path), scorer, CHUNK_ROWS), ignore_index=True)
        scored.insert(0, "row", range(len(scored)))
        scored.insert(0, "file", Path(path).name)
        frames.append(scored)
        logger.info("scored %d rows of %s", len(scored), path)
    return _lines(pd.concat(frames, ignore_index=True)) if frames else []


def _lines(frame: Any) -> list[str]:
    """Return one compact JSON object per row: what ``append_row`` appends, line by line."""
    text = frame.to_json(orient="records", lines=True, date_format="iso")
    return text.splitlines()
