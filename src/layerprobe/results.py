"""Reading a results table (one row per probe; columns, types and probe key in :mod:`layerprobe.vocab`).

This is the one place a results table is read and checked: every contract column present, cast to
its vocabulary type, metrics fractions in [0, 1], and no probe twice (two rows agreeing on
``vocab.PROBE_KEY``). The check hands back a :class:`CheckedResults`; functions that take one rely
on it and never check again, so a report checks its table once however many steps read it.

It sits on the bottom floor, beside the vocabulary, because it belongs to no one stage: ``fhs`` reads
tables through it, and anything that merges tables (a distributed sweep) needs the same notion of
"the same probe" that the probe engine uses when it folds k-fold outcomes into one row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from layerprobe import vocab
from layerprobe.errors import LayerprobeError

SOURCE = "source"
"""Column :func:`load_results` adds: the parquet file a row was read from."""


@dataclass(frozen=True, eq=False)
class CheckedResults:
    """A results table that passed :func:`check_results`; build one only through that function."""

    frame: pl.DataFrame
    """The rows, contract columns cast to their types (extra columns kept as they were), plus
    ``source`` when read from files."""

    @property
    def sources(self) -> tuple[str, ...]:
        """The files the rows came from, sorted (empty for an in-memory table)."""
        if SOURCE not in self.frame.columns:
            return ()
        return tuple(sorted(set(self.frame.get_column(SOURCE).to_list())))


def load_results(paths: Sequence[str | Path] | str | Path) -> CheckedResults:
    """Read, check and concatenate results parquet files (a ``source`` column names each row's file)."""
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
        frames.append(_cast(frame, str(path)).with_columns(pl.lit(str(path)).alias(SOURCE)))
    results = pl.concat(frames, how="diagonal_relaxed")
    _refuse_duplicates(results)
    return CheckedResults(results)


def is_results_table(path: str | Path) -> bool:
    """True when ``path`` is a parquet file with every contract column (its schema alone is read)."""
    try:
        columns = pl.read_parquet_schema(path)
    except Exception:  # polars raises several unrelated types for a non-parquet file
        return False
    return all(column in columns for column in vocab.RESULT_CONTRACT)


def check_results(results: CheckedResults | pl.DataFrame, *, source: str = "results table") -> CheckedResults:
    """``results`` checked (see the module docstring), or a one-line error naming what is wrong.

    A :class:`CheckedResults` is returned as it is: it has been checked already.
    """
    if isinstance(results, CheckedResults):
        return results
    frame = _cast(results, source)
    _refuse_duplicates(frame)
    return CheckedResults(frame)


def _cast(frame: pl.DataFrame, source: str) -> pl.DataFrame:
    """Contract columns present, cast to their types, metrics within [0, 1]."""
    absent = [c for c in vocab.RESULT_CONTRACT if c not in frame.columns]
    if absent:
        raise LayerprobeError(f"{source} lacks column(s) {', '.join(absent)}; it is not a layerprobe results table (rerun `layerprobe probe`)")
    schema = vocab.results_polars_schema(vocab.RESULT_CONTRACT)
    try:
        frame = frame.with_columns([pl.col(name).cast(dtype) for name, dtype in schema.items()])
    except pl.exceptions.PolarsError:
        raise LayerprobeError(f"{source} has columns of the wrong type (layer/seed must be integers, metrics numbers); rerun `layerprobe probe`") from None
    for column in vocab.METRIC_COLUMNS:
        values = frame.get_column(column).drop_nulls().drop_nans()
        if values.len() and (values.min() < 0 or values.max() > 1):
            raise LayerprobeError(f"{source} column {column} has values outside [0, 1]; metrics must be fractions, not percents")
    return frame


def _refuse_duplicates(frame: pl.DataFrame) -> None:
    duplicated = frame.filter(frame.select(vocab.PROBE_KEY).is_duplicated())
    if duplicated.height:
        row = duplicated.row(0, named=True)
        where = row.get(SOURCE) or "the table given"
        raise LayerprobeError(
            f"probe run {row['run_id']} site {row['site']} layer {row['layer']} seed {row['seed']} appears twice "
            f"(in {where}); pass each results table once"
        )
