"""Score a large CSV or Parquet file in chunks with bounded memory, as the service would.

Predictions go to a temporary file renamed into place at the end: never a half-written file.
:func:`scored_chunks` is the scoring itself, which the Azure ML batch deployment's entry
script (:mod:`amlkit.serving.batch_driver`) shares.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from amlkit import kinds

logger = logging.getLogger(__name__)


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def _chunks(path: Path, chunk_rows: int) -> Iterator[Any]:
    import pandas as pd
    import pyarrow.parquet as pq

    if _is_parquet(path):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
            yield batch.to_pandas()
    elif path.suffix.lower() in (".csv", ".txt") or path.name.endswith(".csv.gz"):
        yield from pd.read_csv(path, chunksize=chunk_rows, low_memory=False)
    else:
        raise ValueError(f"{path} is neither .csv nor .parquet; convert it or rename it")


def _check_chunk(chunk: Any, scorer: Any, offset: int) -> Any:
    import numpy as np
    import pandas as pd

    missing = [c for c in scorer.feature_columns if c not in chunk.columns]
    if missing:
        raise ValueError(
            f"input lacks the model's columns {missing}; the model needs {scorer.feature_columns}"
        )
    frame = chunk[scorer.feature_columns].copy()
    for col, kind in scorer.feature_types.items():
        if kind in kinds.NUMERIC_KINDS:
            numbers = pd.to_numeric(frame[col], errors="coerce")
            bad = numbers.isna() & frame[col].notna()
            if bad.any():
                row = int(bad.to_numpy().nonzero()[0][0])
                raise ValueError(
                    f"column {col!r} has {int(bad.sum())} values that are not numbers in rows "
                    f"{offset}-{offset + len(frame) - 1} (first: {frame[col].iloc[row]!r} on row "
                    f"{offset + row}); fix the file or blank those cells."
                )
            frame[col] = numbers.astype("float64")
        elif kind == "datetime":
            frame[col] = pd.to_datetime(frame[col], errors="raise")
        else:
            frame[col] = frame[col].astype(object).where(frame[col].notna(), np.nan)
    return frame


def scored_chunks(path: Path, scorer: Any, chunk_rows: int = 50_000) -> Iterator[Any]:
    """Yield each chunk of a CSV or Parquet file with its predictions, in file order.

    Each frame holds the chunk's columns, ``prediction`` and, for classifiers, one
    ``probability_<class>`` column per class. Used by :func:`score_file` and by the batch
    deployment's entry script (:mod:`amlkit.serving.batch_driver`).

    Args:
        path: the file (.csv or .parquet).
        scorer: a loaded :class:`amlkit.serving.runtime.Scorer`.
        chunk_rows: rows held in memory at a time.

    Raises:
        ValueError: a column is missing or holds values of the wrong kind (named, with the
            first bad row).
    """
    rows = 0
    for chunk in _chunks(path, chunk_rows):
        yield score_frame(chunk, scorer, rows)
        rows += len(chunk)


def score_frame(chunk: Any, scorer: Any, offset: int = 0) -> Any:
    """Return a frame of rows with its predictions (see :func:`scored_chunks`).

    Args:
        chunk: a pandas frame holding at least the model's feature columns.
        scorer: a loaded :class:`amlkit.serving.runtime.Scorer`.
        offset: the row number of the frame's first row, for error messages.
    """
    frame = _check_chunk(chunk, scorer, offset)
    preds, probs = scorer.predict_arrays(frame)
    result = chunk.reset_index(drop=True)
    result["prediction"] = preds
    if probs is not None and scorer.classes:
        for j, cls in enumerate(scorer.classes):
            result[f"probability_{cls}"] = probs[:, j].astype("float64")
    return result


def default_output(input_path: Path) -> Path:
    """Return ``<input stem>_predictions<suffix>`` beside the input."""
    suffix = ".parquet" if _is_parquet(input_path) else ".csv"
    return input_path.with_name(f"{input_path.name.split('.')[0]}_predictions{suffix}")


def score_file(
    input_path: str | Path,
    *,
    service: str | Path | None = None,
    model_dir: str | Path | None = None,
    output_path: str | Path | None = None,
    chunk_rows: int = 50_000,
    progress: bool = True,
) -> Path:
    """Score a CSV or Parquet file with a ``service`` or a version's ``model_dir``.

    Writes the input columns, ``prediction`` and one ``probability_<class>`` per class.
    The model's files are checked first (the service's record, or the version's
    ``model_metadata.json``): a changed file raises ModelIntegrityError naming it.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tqdm import tqdm

    from amlkit.serving.runtime import Scorer
    from amlkit.serving.server import service_folder

    if (service is None) == (model_dir is None):
        raise ValueError("give exactly one of service= or model_dir= to score_file")
    if service:
        folder = service_folder(service)
        scorer = Scorer(folder / "model", service_dir=folder)
    else:
        scorer = Scorer(str(model_dir))
    src = Path(input_path)
    if not src.is_file():
        raise FileNotFoundError(f"no input file {src}")
    total = pq.ParquetFile(src).metadata.num_rows if _is_parquet(src) else None
    out = Path(output_path) if output_path else default_output(src)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    writer = None
    rows = 0
    try:
        bar = tqdm(total=total, unit="rows", disable=not progress, desc=src.name)
        for result in scored_chunks(src, scorer, chunk_rows):
            if _is_parquet(out):
                table = pa.Table.from_pandas(result, preserve_index=False)
                writer = writer or pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table.cast(writer.schema))
            else:
                result.to_csv(tmp, mode="a", header=rows == 0, index=False)
            rows += len(result)
            bar.update(len(result))
        bar.close()
        if writer is not None:
            writer.close()
            writer = None
        if rows == 0:
            pd.DataFrame(columns=[*scorer.feature_columns, "prediction"]).to_csv(tmp, index=False)
        os.replace(tmp, out)
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
    logger.info("scored %d rows of %s into %s", rows, src, out)
    return out
