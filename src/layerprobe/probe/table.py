"""The results table: one row per probe, in the column contract of docs/architecture.md.

Columns beyond the contract (``fhs`` ignores them): ``split`` (how the split was made),
``n_folds``, ``matmul_dtype``, ``best_epoch`` (MLP: epoch whose weights are reported),
``chosen_c`` and ``converged`` (linear probes).
- ``train_seconds``: probes train in groups, so each gets its group's wall time divided by the
  group's size (the amortised cost, which is what a sweep's throughput is made of).
- k-fold: a probe's outcomes on the K folds are folded into its one row: metrics are the mean over
  folds (a fold where a metric is undefined, e.g. AUC with a class missing, is left out), ``n_*``
  the per-fold means, ``train_seconds`` the sum; a failure in any fold fails the row.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import polars as pl

from layerprobe import vocab
from layerprobe.probe.metrics import Metrics

SCHEMA: dict[str, Any] = vocab.results_polars_schema()
"""Column names and polars types, in order: ``vocab.RESULT_CONTRACT`` then ``vocab.RESULT_EXTRA``."""


class Outcome(NamedTuple):
    """One probe on one split."""

    val: Mapping[str, float] | None
    test: Mapping[str, float] | None
    n_train: int
    n_val: int
    n_test: int
    seconds: float
    error: str | None = None
    best_epoch: int | None = None
    chosen_c: float | None = None
    converged: bool | None = None


def metric_values(metrics: Metrics, index: int) -> dict[str, float]:
    """The metrics of probe ``index`` as plain floats."""
    return {name: float(getattr(metrics, name)[index]) for name in vocab.METRICS}


class TableBuilder:
    """Collects outcomes per probe (one per fold) and folds them into rows.

    A probe is what ``vocab.PROBE_KEY`` names, as everywhere a results table is read: the sweep
    refuses two stores of one run, so the key never folds two stores' rows into one.
    """

    def __init__(self) -> None:
        self._probes: dict[tuple[Any, ...], tuple[dict[str, Any], list[Outcome]]] = {}

    def add(self, identity: Mapping[str, Any], outcome: Outcome) -> None:
        """Record ``outcome`` for the probe whose identity columns are ``identity``."""
        key = tuple(identity[c] for c in vocab.PROBE_KEY)
        self._probes.setdefault(key, (dict(identity), []))[1].append(outcome)

    def frame(self) -> pl.DataFrame:
        rows = [_row(identity, outcomes) for identity, outcomes in self._probes.values()]
        return pl.DataFrame(rows, schema=SCHEMA, orient="row") if rows else pl.DataFrame(schema=SCHEMA)


def _row(identity: dict[str, Any], outcomes: list[Outcome]) -> dict[str, Any]:
    errors = [o.error for o in outcomes if o.error]
    row: dict[str, Any] = {column: None for column in SCHEMA}
    row.update(identity)
    row["n_folds"] = len(outcomes)
    row["status"] = vocab.STATUS_FAILED if errors else vocab.STATUS_OK
    row["error"] = errors[0] if errors else None
    for part in vocab.SCORED_SPLITS:
        for name in vocab.METRICS:
            values = [getattr(o, part)[name] for o in outcomes if getattr(o, part) is not None]
            finite = [v for v in values if np.isfinite(v)]
            row[vocab.metric_column(part, name)] = None if errors else (float(np.mean(finite)) if finite else float("nan"))
    for column in ("n_train", "n_val", "n_test"):
        row[column] = int(round(np.mean([getattr(o, column) for o in outcomes])))
    row["train_seconds"] = float(sum(o.seconds for o in outcomes))
    if not errors:
        row["best_epoch"] = _single(o.best_epoch for o in outcomes)
        row["chosen_c"] = _single(o.chosen_c for o in outcomes)
        converged = [o.converged for o in outcomes if o.converged is not None]
        row["converged"] = all(converged) if converged else None
    return row


def _single(values: Any) -> Any:
    """The value when every fold agrees or there is one fold; else None (it varies by fold)."""
    present = [v for v in values if v is not None]
    return present[0] if present and all(v == present[0] for v in present) else None
