"""Commit records: the only thing that makes a block of samples valid.

A block is committed by atomically creating ``commits/<start>-<stop>.json`` after every chunk of the
block is written. The record holds the block range and a checksum of the stored bytes of each chunk
it covers, and names the checksum algorithm, which is the store's (``StorePlan.checksum``: CRC-32
for schema 3, XXH3-64 for schema 2), so ``verify`` and every read can prove that what is on disk is
what was committed. Readers trust a block only when its record parses, names the store's algorithm
and matches the store's block grid; anything else is reported by ``verify`` and treated as not
committed (a resumed writer simply writes that block again).
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from layerprobe.store import chunkio
from layerprobe.store.layout import StorePlan

COMMITS_DIR = "commits"
_NAME = re.compile(r"^(\d+)-(\d+)\.json$")


@dataclass(frozen=True)
class CommitRecord:
    """The completion record of one block."""

    block: int
    start: int
    stop: int
    checksums: dict[str, tuple[str, ...]]
    """array path -> checksum of each chunk of this block (one per layer for sites, else one)."""
    written_at: str
    skip_reasons: dict[int, str] = field(default_factory=dict)
    """sample index -> why that sample was skipped (``--skip-bad``); stored as ``"skipped"`` only when
    not empty, so records of blocks without reasons keep their schema-2 bytes."""


class CommitProgress:
    """Mixin for frozen reports that count committed blocks: ``complete`` and a JSON-ready ``to_dict``."""

    n_blocks: int
    n_blocks_committed: int

    @property
    def complete(self) -> bool:
        return self.n_blocks_committed == self.n_blocks

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)  # type: ignore[call-overload]
        out["complete"] = self.complete
        return out


def commit_path(root: Path, start: int, stop: int) -> Path:
    return root / COMMITS_DIR / f"{start}-{stop}.json"


def write_commit(root: Path, record: CommitRecord, algorithm: str, *, durable: bool) -> None:
    """Atomically create the record (temp file, rename); ``algorithm`` names the checksums it holds
    (``StorePlan.checksum``); ``durable`` also fsyncs the file and the directory.

    Without ``durable`` the record, like the chunks, reaches the page cache only: enough to survive
    the death of the process, which is the guarantee asked of the default mode.
    """
    body = {
        "block": record.block,
        "start": record.start,
        "stop": record.stop,
        "checksum": algorithm,
        "chunks": {k: list(v) for k, v in record.checksums.items()},
        "written_at": record.written_at,
    }
    if record.skip_reasons:
        body["skipped"] = {str(i): record.skip_reasons[i] for i in sorted(record.skip_reasons)}
    path = commit_path(root, record.start, record.stop)
    chunkio.atomic_write(path, json.dumps(body, indent=1).encode(), fsync=durable)
    if durable:
        chunkio.fsync_path(path.parent)


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def expected_chunk_counts(plan: StorePlan) -> dict[str, int]:
    return {a.path: a.n_layers for a in plan.per_block_arrays()}


def read_commits(root: Path, plan: StorePlan) -> tuple[dict[int, CommitRecord], list[str]]:
    """Valid records by block, and one line per record that is not valid."""
    records: dict[int, CommitRecord] = {}
    problems: list[str] = []
    directory = root / COMMITS_DIR
    try:
        names = sorted(p.name for p in directory.iterdir())
    except FileNotFoundError:
        return records, [f"{directory} is missing; the store has no commit records"]
    for name in names:
        match = _NAME.match(name)
        if not match:
            continue  # temporary files of an interrupted commit, editor backups, ...
        start, stop = int(match.group(1)), int(match.group(2))
        if name != commit_path(root, start, stop).name:  # e.g. leading zeros: not a name the writer makes
            problems.append(f"commit record {COMMITS_DIR}/{name} does not match the store's blocks of {plan.chunk_samples} samples")
            continue
        record, problem = _read_record(root, plan, start, stop)
        if record is not None:
            records[record.block] = record
        elif problem:
            problems.append(problem)
    return records, problems


def read_commit(root: Path, plan: StorePlan, block: int) -> CommitRecord | None:
    """The valid record of one block, or None (missing or damaged: the block is not committed)."""
    return _read_record(root, plan, *plan.block_range(block))[0]


def _read_record(root: Path, plan: StorePlan, start: int, stop: int) -> tuple[CommitRecord | None, str | None]:
    """The record ``commits/<start>-<stop>.json`` if valid, else None and why (None when it is absent)."""
    where = f"commit record {COMMITS_DIR}/{start}-{stop}.json"
    block = start // plan.chunk_samples
    if start % plan.chunk_samples or block >= plan.n_blocks or plan.block_range(block) != (start, stop):
        return None, f"{where} does not match the store's blocks of {plan.chunk_samples} samples"
    try:
        body = json.loads(commit_path(root, start, stop).read_bytes())
        sums = {str(k): tuple(str(c) for c in v) for k, v in body["chunks"].items()}
        ok = (body["block"], body["start"], body["stop"]) == (block, start, stop)
        algorithm = body.get("checksum")
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        return None, f"{where} cannot be read ({type(err).__name__}); the block counts as not committed"
    if ok and algorithm != plan.checksum:
        return None, (f"{where} holds {algorithm!r} checksums where this store's schema uses {plan.checksum!r};"
                      " the block counts as not committed")
    if not ok or {k: len(v) for k, v in sums.items()} != expected_chunk_counts(plan):
        return None, f"{where} does not list the chunks this block must have; the block counts as not committed"
    return CommitRecord(block, start, stop, sums, str(body.get("written_at", "")), _skip_reasons(body, start, stop)), None


def _skip_reasons(body: dict[str, Any], start: int, stop: int) -> dict[int, str]:
    """The record's skip reasons; a malformed entry is dropped (reasons are information, not data)."""
    found = body.get("skipped")
    if not isinstance(found, dict):
        return {}
    out = {}
    for key, reason in found.items():
        if isinstance(key, str) and key.isdigit() and start <= int(key) < stop and isinstance(reason, str):
            out[int(key)] = reason
    return out


def remove_commit(root: Path, plan: StorePlan, block: int, *, durable: bool) -> None:
    """Un-commit a block (its record removed): readers and writers then treat it as pending."""
    commit_path(root, *plan.block_range(block)).unlink(missing_ok=True)
    if durable:
        chunkio.fsync_path(root / COMMITS_DIR)
