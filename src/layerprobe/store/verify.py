"""``verify``: is a store sound, how complete is it, and does it hold NaN/Inf?

Checks, in order: the schema and every array's metadata (``open_store`` refuses a store that fails
them), each shard's index, each commit record, then every committed chunk against the checksum its
commit record holds (the generated answers too, where the store has them). NaN/Inf are counted per (site, layer) over valid rows (committed, not skipped)
and count as problems: a probe trained on them fails. An incomplete store is not a problem: its
committed blocks are still exact (``complete`` says whether all blocks are in).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from layerprobe.errors import StoreError
from layerprobe.store import bf16, chunkio
from layerprobe.store.commits import CommitProgress
from layerprobe.store.reader import SAMPLES_CHANGED, Store, open_store
from layerprobe.store.summary import skipped_samples
from layerprobe.vocab import ANSWER_SITE, STORED_SPLITS


@dataclass(frozen=True)
class NonFiniteCount:
    """NaN and Inf values among the valid rows of one (site, layer)."""

    site: str
    layer: int
    layer_name: str
    n_nan: int
    n_inf: int


@dataclass(frozen=True)
class VerifyReport(CommitProgress):
    """What ``verify`` found; ``ok`` is True when ``problems`` is empty."""

    path: str
    ok: bool
    problems: tuple[str, ...]
    """One line per problem, naming the array/chunk/record and what is wrong."""
    n_samples: int
    n_committed: int
    n_skipped: int
    """Committed samples whose image could not be decoded."""
    n_blocks: int
    n_blocks_committed: int
    nonfinite: tuple[NonFiniteCount, ...]
    """One entry per (site, layer), then one for ``answer_logits`` (layer 0)."""
    skipped_samples: tuple[tuple[str, str], ...] = ()
    """(id, reason) of each committed skipped sample; reason "" where none was recorded."""


def verify(path: str | Path, *, progress: bool = True) -> VerifyReport:
    """Check a store (see the module docstring). Raises ``StoreError`` only when it cannot be opened."""
    from tqdm.auto import tqdm

    store = open_store(path, check_samples=False)
    problems = list(store.commit_problems)
    if not store.samples_match_manifest():
        problems.append(f"samples: {SAMPLES_CHANGED}")
    problems += _check_shard_indexes(store)
    problems += _check_columns(store)
    counts: dict[tuple[str, int], list[int]] = {}
    blocks = sorted(store.commits)
    for block in tqdm(blocks, desc="verify", unit="block", disable=not progress or None):
        problems += _check_block(store, block, counts)
    nonfinite = []
    for spec in store.header.sites:
        for layer, name in enumerate(spec.layer_names):
            n_nan, n_inf = counts.get((spec.name, layer), [0, 0])
            nonfinite.append(NonFiniteCount(spec.name, layer, name, n_nan, n_inf))
    n_nan, n_inf = counts.get((ANSWER_SITE, 0), [0, 0])
    nonfinite.append(NonFiniteCount(ANSWER_SITE, 0, "", n_nan, n_inf))
    problems += _nonfinite_problems(nonfinite)
    return VerifyReport(
        path=str(store.path), ok=not problems, problems=tuple(problems), n_samples=store.n_samples,
        n_committed=int(store.committed.sum()), n_skipped=int((store.committed & store.skipped).sum()),
        n_blocks=store.plan.n_blocks, n_blocks_committed=len(blocks), nonfinite=tuple(nonfinite),
        skipped_samples=skipped_samples(store),
    )


def _check_shard_indexes(store: Store) -> list[str]:
    problems = []
    for a in store.plan.arrays.values():
        if not a.sharded:
            continue
        expected = chunkio.shard_index(a)
        for layer in range(a.n_layers):
            key = a.chunk_key(layer, 0)
            found = chunkio.read_chunk_bytes(store.path / key, a.shard_nbytes() - len(expected), len(expected))
            if found != expected:
                problems.append(f"shard index of {key} is damaged; zarr readers will misread this layer (re-create the store)")
    return problems


def _check_columns(store: Store) -> list[str]:
    problems = []
    labels = store.labels
    if labels.size and (labels.min() < 0 or labels.max() >= len(store.class_names)):
        problems.append(f"samples/label has values outside [0, {len(store.class_names)}) (the class_names)")
    bad = sorted(set(store.splits) - set(STORED_SPLITS))
    if bad:
        problems.append(f"samples/split has unknown values {bad}")
    return problems


def _check_block(store: Store, block: int, counts: dict[tuple[str, int], list[int]]) -> list[str]:
    problems = []
    record = store.commits[block]
    start, stop = record.start, record.stop
    valid = store.valid[start:stop]
    for a in store.plan.per_block_arrays():
        for layer in range(a.n_layers):
            key = a.chunk_key(layer, block)
            where = f"chunk {key}" + (f" (block {block})" if a.sharded else "")
            try:
                stored = chunkio.read_chunk(store.path, a, layer, block)
            except StoreError:
                problems.append(f"{where} of committed block [{start}, {stop}) is missing or truncated")
                continue
            if chunkio.checksum([stored], store.plan.checksum) != record.checksums[a.path][layer]:
                problems.append(f"{where} does not match the checksum in its commit record (changed or corrupted since it was written)")
                continue
            if a.path.startswith("sites/"):
                rows = chunkio.decode_chunk(a, stored)[0, : stop - start][valid]
                found = bf16.count_nonfinite(rows)
                site = a.attributes["site"]
            elif a.dtype == "str":  # the generated answers: they must decode as the codec wrote them
                try:
                    chunkio.decode_chunk(a, stored)
                except (ValueError, RuntimeError, TypeError) as err:
                    problems.append(f"{where} of committed block [{start}, {stop}) cannot be decoded ({type(err).__name__})")
                continue
            elif a.path == ANSWER_SITE:
                rows = chunkio.decode_chunk(a, stored)[: stop - start][valid]
                found = (int(np.isnan(rows).sum()), int(np.isinf(rows).sum()))
                site = ANSWER_SITE
            else:
                continue
            tally = counts.setdefault((site, layer), [0, 0])
            tally[0] += found[0]
            tally[1] += found[1]
    return problems


def _nonfinite_problems(nonfinite: list[NonFiniteCount]) -> list[str]:
    problems = []
    by_site: dict[str, list[NonFiniteCount]] = {}
    for c in nonfinite:
        if c.n_nan or c.n_inf:
            by_site.setdefault(c.site, []).append(c)
    for site, bad in by_site.items():
        first = bad[0]
        problems.append(
            f"site {site} has NaN/Inf in valid rows of {len(bad)} layer(s); first: layer {first.layer} "
            f"({first.layer_name or '-'}) with {first.n_nan} NaN and {first.n_inf} Inf"
        )
    return problems
