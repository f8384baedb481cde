"""Reading probe results tables (the contract in docs/architecture.md) and, when present, run metadata.

Everything ``fhs`` computes comes from the results table alone, so a report made on a machine
without the stores gives the same numbers. Store metadata (``<store>/zarr.json``, read as plain JSON
so no zarr import is needed) only adds descriptive fields to reports.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from layerprobe.errors import LayerprobeError

RESULT_COLUMNS: tuple[str, ...] = (
    "run_id", "store", "model_id", "adapter", "dataset", "site", "layer", "layer_name", "kind",
    "seed", "preset", "params", "status", "error",
    "val_accuracy", "val_f1", "val_precision", "val_recall", "val_auc",
    "test_accuracy", "test_f1", "test_precision", "test_recall", "test_auc",
    "n_train", "n_val", "n_test", "train_seconds",
)  # fmt: skip
METRIC_COLUMNS: tuple[str, ...] = tuple(c for c in RESULT_COLUMNS if c.startswith(("val_", "test_")))
MODEL_KIND = "model"
ANSWER_SITE = "answer_logits"
# Columns that identify one probe; two rows agreeing on all of them are the same probe twice.
PROBE_KEY: tuple[str, ...] = ("run_id", "site", "layer", "kind", "preset", "params", "seed")


def load_results(paths: Sequence[str | Path] | str | Path) -> pl.DataFrame:
    """Read and concatenate results parquet files, checking the columns and value ranges."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not paths:
        raise LayerprobeError("no results table given; pass one or more parquet files written by `layerprobe probe`")
    frames = []
    for path in map(Path, paths):
        if not path.is_file():
            raise LayerprobeError(f"results table {path} does not exist; pass the parquet file written by `layerprobe probe`")
        try:
            frame = pl.read_parquet(path)
        except Exception as err:  # polars raises several unrelated types for a non-parquet file
            raise LayerprobeError(f"results table {path} is not a readable parquet file ({type(err).__name__}); pass the file `layerprobe probe` wrote") from None
        frames.append(check_results(frame, source=str(path)).with_columns(pl.lit(str(path)).alias("source")))
    results = pl.concat(frames, how="diagonal_relaxed")
    duplicated = results.filter(results.select(PROBE_KEY).is_duplicated())
    if duplicated.height:
        row = duplicated.row(0, named=True)
        raise LayerprobeError(
            f"probe run {row['run_id']} site {row['site']} layer {row['layer']} seed {row['seed']} appears twice "
            f"(in {row['source']}); pass each results table once"
        )
    return results


def check_results(frame: pl.DataFrame, *, source: str = "results table") -> pl.DataFrame:
    """Return ``frame`` cast to the contract's types, or raise naming what is wrong."""
    absent = [c for c in RESULT_COLUMNS if c not in frame.columns]
    if absent:
        raise LayerprobeError(f"{source} lacks column(s) {', '.join(absent)}; it is not a layerprobe results table (rerun `layerprobe probe`)")
    strings = ("run_id", "store", "model_id", "adapter", "dataset", "site", "layer_name", "kind", "preset", "params", "status", "error")
    try:
        frame = frame.with_columns(
            [pl.col(c).cast(pl.String) for c in strings]
            + [pl.col(c).cast(pl.Int64) for c in ("layer", "seed")]
            + [pl.col(c).cast(pl.Float64) for c in METRIC_COLUMNS]
        )
    except pl.exceptions.PolarsError:
        raise LayerprobeError(f"{source} has columns of the wrong type (layer/seed must be integers, metrics numbers); rerun `layerprobe probe`") from None
    for column in METRIC_COLUMNS:
        values = frame.get_column(column).drop_nulls().drop_nans()
        if values.len() and (values.min() < 0 or values.max() > 1):
            raise LayerprobeError(f"{source} column {column} has values outside [0, 1]; metrics must be fractions, not percents")
    return frame


def read_store_meta(store: str | None, *, relative_to: Path | None = None) -> dict[str, Any] | None:
    """Run metadata from ``<store>/zarr.json`` (attribute ``layerprobe``), or None if unreachable."""
    if not store:
        return None
    candidates = [Path(store)]
    if relative_to is not None and not Path(store).is_absolute():
        candidates.append(relative_to / store)
    for path in candidates:
        try:
            group = json.loads((path / "zarr.json").read_text())
        except (OSError, ValueError):
            continue
        meta = group.get("attributes", {}).get("layerprobe")
        if isinstance(meta, dict):
            return meta
    return None


def finite_or_none(value: float | None) -> float | None:
    """JSON-friendly number: nan/inf become None."""
    return None if value is None or not math.isfinite(value) else float(value)
