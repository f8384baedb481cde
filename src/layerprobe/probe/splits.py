"""Train/val/test splits: the store's split column, a seeded stratified split, or stratified k-fold.

Design choices
- Only valid samples (committed and not skipped) enter a split; indices are store row numbers.
- The store's split column wins when any valid sample has one. Samples with an empty split are
  then left out; a missing ``val`` or ``test`` part is carved from ``train`` (stratified, seeded,
  in the configured proportions), so a dataset with an official train/test split still gets a
  validation set without touching its test set.
- With no split column, each class is shuffled with ``numpy.random.default_rng(seed)`` and cut in
  the configured fractions, so every part keeps the class balance.
- k-fold (stratified, round-robin per shuffled class) ignores the split column: fold k is the
  test set, fold k+1 the validation set, the rest trains; each sample is tested exactly once.
- Every split is checked: at least two classes in training, non-empty val and test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from layerprobe import vocab
from layerprobe.errors import ProbeError


@dataclass(frozen=True, eq=False)
class Split:
    """One partition of a store's samples (sorted store row indices, int64)."""

    name: str
    """How it was made: ``store``, ``stratified`` or ``fold k/K``."""
    train: np.ndarray
    """Rows the probe is fitted on (and the feature standardisation)."""
    val: np.ndarray
    """Rows for early stopping and the linear probe's C."""
    test: np.ndarray
    """Rows the reported test metrics come from."""


def make_splits(
    labels: np.ndarray,
    split_column: Sequence[str],
    valid: np.ndarray,
    *,
    class_names: Sequence[str],
    kfold: int | None = None,
    seed: int = vocab.SPLIT_SEED,
    fractions: tuple[float, float, float] = vocab.SPLIT_FRACTIONS,
    where: str = "store",
) -> tuple[Split, ...]:
    """The split(s) a sweep uses for one store (see the module docstring); ``where`` names it in errors."""
    labels = np.asarray(labels, dtype=np.int64)
    rows = np.flatnonzero(np.asarray(valid, dtype=bool))
    if rows.size == 0:
        raise ProbeError(f"{where} has no valid samples (none committed, or all skipped); finish the extraction first")
    bad = rows[(labels[rows] < 0) | (labels[rows] >= len(class_names))]
    if bad.size:
        raise ProbeError(f"{where}: sample {int(bad[0])} has label {int(labels[bad[0]])} outside its {len(class_names)} class names; the store is corrupt (run `layerprobe verify`)")
    rng = np.random.default_rng(seed)
    if kfold is not None:
        splits = _kfold(labels, rows, kfold, rng, where)
    else:
        column = np.asarray(split_column, dtype=object)
        used = {str(v) for v in column[rows]} - {vocab.UNASSIGNED}
        unknown = used - set(vocab.SPLITS)
        if unknown:
            raise ProbeError(f"{where}: split column has value(s) {sorted(unknown)}; use train, val, test or empty")
        if used:
            splits = (_from_column(labels, rows, column[rows], fractions, rng),)
        else:
            parts = _stratified(labels, rows, fractions, rng)
            splits = (Split("stratified", *parts),)
    for split in splits:
        _check(split, labels, class_names, where)
    return splits


def _stratified(labels: np.ndarray, rows: np.ndarray, fractions: Sequence[float], rng: np.random.Generator) -> list[np.ndarray]:
    """Cut each class of ``rows`` in proportions ``fractions`` (the first part gets the rounding remainder)."""
    fractions = [f / sum(fractions) for f in fractions]
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    for cls in np.unique(labels[rows]):
        members = rng.permutation(rows[labels[rows] == cls])
        sizes = [int(round(members.size * f)) for f in fractions[1:]]
        sizes = [members.size - sum(sizes)] + sizes
        while sizes[0] < 1 and any(sizes[1:]):  # a tiny class keeps one training sample
            j = 1 + int(np.argmax(sizes[1:]))
            sizes[j] -= 1
            sizes[0] += 1
        bounds = np.cumsum([0] + sizes)
        for k, part in enumerate(parts):
            part.append(members[bounds[k] : bounds[k + 1]])
    return [np.sort(np.concatenate(p)).astype(np.int64) for p in parts]


def _from_column(labels: np.ndarray, rows: np.ndarray, names: np.ndarray, fractions: Sequence[float], rng: np.random.Generator) -> Split:
    train, val, test = (rows[names == name] for name in vocab.SPLITS)
    f_train, f_val, f_test = fractions
    if test.size == 0 and val.size == 0:
        train, val, test = _stratified(labels, train, (f_train, f_val, f_test), rng)
    elif test.size == 0:
        train, test = _stratified(labels, train, (f_train + f_val, f_test), rng)
    elif val.size == 0:
        train, val = _stratified(labels, train, (f_train, f_val), rng)
    return Split("store", np.sort(train), np.sort(val), np.sort(test))


def _kfold(labels: np.ndarray, rows: np.ndarray, k: int, rng: np.random.Generator, where: str) -> tuple[Split, ...]:
    if rows.size < k:
        raise ProbeError(f"{where}: kfold={k} needs at least {k} valid samples, the store has {rows.size}; use fewer folds")
    fold = np.empty(labels.shape, dtype=np.int64)
    offset = 0
    for cls in np.unique(labels[rows]):
        members = rng.permutation(rows[labels[rows] == cls])
        # Continue the round-robin across classes so fold sizes differ by at most one.
        fold[members] = (np.arange(members.size) + offset) % k
        offset += members.size
    out = []
    for i in range(k):
        in_fold = fold[rows]
        out.append(Split(f"fold {i + 1}/{k}", rows[(in_fold != i) & (in_fold != (i + 1) % k)], rows[in_fold == (i + 1) % k], rows[in_fold == i]))
    return tuple(out)


def _check(split: Split, labels: np.ndarray, class_names: Sequence[str], where: str) -> None:
    present = np.unique(labels[split.train])
    if present.size < 2:
        only = class_names[int(present[0])] if present.size else "none"
        raise ProbeError(f"{where}: training split ({split.name}) has a single class ({only!r}); probes need two or more classes, fix the labels or the split column")
    for part in vocab.SCORED_SPLITS:
        if getattr(split, part).size == 0:
            raise ProbeError(f"{where}: {part} split ({split.name}) is empty; add {part} samples to the split column or clear it to let the sweep split")
