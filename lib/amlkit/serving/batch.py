"""Score a large CSV or Parquet file in chunks with bounded memory.

Rows are read ``chunk_rows`` at a time (pandas ``read_csv(chunksize=)`` or pyarrow
``iter_batches``), scored with the same runtime as the service (ONNX when the service has
it), and appended to a temporary file beside the output, which is renamed into place at the
end: a crash never leaves a half-written predictions file.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from amlkit import kinds, paths

logger = logging.getLogger(__name__)


def _chunks(path: Path, chunk_rows: int, columns: list[str] | None) -> Iterator[Any]:
    import pandas as pd

    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        file = pq.ParquetFile(path)
        for batch in file.iter_batches(batch_size=chunk_rows):
            yield batch.to_pandas()
    elif path.suffix.lower() in (".csv", ".txt") or path.name.endswith(".csv.gz"):
        yield from pd.read_csv(path, chunksize=chunk_rows, low_memory=False)
    else:
        raise ValueError(f"{path} is neither .csv nor .parquet; convert it or rename it")


def _count_rows(path: Path) -> int | None:
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    return None


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


def default_output(input_path: Path) -> Path:
    """Return ``<input stem>_predictions<suffix>`` beside the input."""
    suffix = ".parquet" if input_path.suffix.lower() in (".parquet", ".pq") else ".csv"
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
    """Score every row of a CSV or Parquet file; write predictions beside the inputs.

    Args:
        input_path: the file to score (.csv or .parquet).
        service: a service name under ``deployed_models/`` or a service folder.
        model_dir: or a model version folder (the pickled pipeline is used).
        output_path: where to write; default ``<input>_predictions.<csv|parquet>``.
        chunk_rows: rows held in memory at a time.
        progress: show a tqdm progress bar.

    Returns:
        The output path. It holds the input columns, ``prediction`` and, for classifiers,
        one ``probability_<class>`` column per class.
    """
    import pandas as pd
    from tqdm import tqdm

    from amlkit.serving.runtime import Scorer, find_model_dir, verify_model_files

    if (service is None) == (model_dir is None):
        raise ValueError("give exactly one of service= or model_dir= to score_file")
    if service is not None:
        folder = Path(service)
        if not folder.is_dir():
            folder = paths.deployed_models_dir() / str(service)
        model = find_model_dir(folder / "model")
        info = json.loads((folder / "service_metadata.json").read_text(encoding="utf-8"))
        verify_model_files(model, info["model_files"])  # as the service does before loading
    else:
        model = Path(model_dir)  # type: ignore[arg-type]
    scorer = Scorer(model)
    src = Path(input_path)
    if not src.is_file():
        raise FileNotFoundError(f"no input file {src}")
    out = Path(output_path) if output_path else default_output(src)
    is_parquet = out.suffix.lower() in (".parquet", ".pq")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    writer = None
    rows = 0
    try:
        bar = tqdm(total=_count_rows(src), unit="rows", disable=not progress, desc=src.name)
        for chunk in _chunks(src, chunk_rows, scorer.feature_columns):
            frame = _check_chunk(chunk, scorer, rows)
            preds, probs = scorer.predict_arrays(frame)
            result = chunk.reset_index(drop=True)
            result["prediction"] = preds
            if probs is not None and scorer.classes:
                for j, cls in enumerate(scorer.classes):
                    result[f"probability_{cls}"] = probs[:, j].astype("float64")
            if is_parquet:
                import pyarrow as pa
                import pyarrow.parquet as pq

                table = pa.Table.from_pandas(result, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table.cast(writer.schema))
            else:
                result.to_csv(tmp, mode="a", header=rows == 0, index=False)
            rows += len(chunk)
            bar.update(len(chunk))
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
