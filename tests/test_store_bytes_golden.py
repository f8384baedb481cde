"""Stores written from fixed inputs are byte-identical to those recorded for their schema version.

Schema 2 (chunk checksums XXH3-64): the golden digests were recorded from the pre-refactor
``StoreWriter`` (commit 30764c6; recorded again with that same writer when ``run_meta`` started to
carry the real manifest digest, which writers now require). The current writer still writes that
version when asked (``schema_version=2``), and must give those very bytes: this is what proves a
refactor kept them. Schema 3 differs from it only in the commit records (CRC-32 checksums, named
``"crc32"``, and ``schema_version`` 3 in ``zarr.json``); its digests were recorded when schema 3 was
introduced (issue 15, checked reads), from this writer, after the schema-2 digests had passed with it.

The digests cover every file of a store: Zarr metadata, shard files with their index, per-chunk
files of the zstd codec, commit records and ``samples.parquet``. A changed digest means the bytes a
store holds changed: that is a new schema version, not a refactor.

What may legitimately differ between machines is taken out before hashing, inside the bytes and
nothing else: the two clock fields (``created_at`` in ``zarr.json``, ``written_at`` in each commit
record) and the installed ``library_versions``. The bytes also depend on the pinned zarr-python
and polars (constraints.txt) that write ``zarr.json`` and ``samples.parquet``.

Every variant of one store (batch sizes that straddle blocks, blocks written out of order,
``copy=False``, ``durable=True``, two shard writers, a crash-free resume) must give the same digest:
the layout promises bytes that do not depend on how the rows arrived. The resume reopens without
naming a version, so a schema-2 store is resumed as schema 2.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from layerprobe import vocab
from layerprobe.store import RunMeta, SampleInfo, SiteSpec, StoreWriter

GOLDEN = {
    (2, "none"): "477c479bc6c130a1b984f4b18e93dd7a8a5e7b6a9ba01ecbd88368d7c5b70907",
    (2, "zstd"): "0ee826b77979ec64a360bcdfeee0ab4181ba9bc135d423e2ebc94ac7c1c3b79f",
    (3, "none"): "6639cb79cc80d4a302a846288d4971bcb9f80678217d861501322e7b0ca3a66c",
    (3, "zstd"): "d45a255ff7f7d8955346b9b7987ec1df3df37df382ba0ecb27afa459473aaa91",
}
"""SHA-256 over (relative path, bytes) of every file, per (schema version, codec); see the module docstring."""

N = 29
CS = 8  # 4 blocks, the last one 5 rows short of a chunk
SITES = (
    SiteSpec(vocab.VISION, vocab.vision_layer_names(2), 12),
    SiteSpec(vocab.CONNECTOR, vocab.connector_layer_names(True), 16),
    SiteSpec(vocab.LLM_FINAL, vocab.llm_layer_names(2), 20),
)
SKIPPED = (3, 8, 9, 28)
UNKNOWN_DIGEST = (3, 8, 9, 17)

_CLOCK = re.compile(rb'"(created_at|written_at)": "[^"]*"')
_VERSIONS = re.compile(rb'"library_versions": \{[^}]*\}')


CLASS_NAMES = ("cat", "dog", "owl")


def reference_manifest_digest(samples: SampleInfo, class_names: tuple[str, ...]) -> str:
    """``manifest_sha256`` as docs/architecture.md defines it, written out here as the slow reference."""
    doc = {"class_names": list(class_names), "ids": list(samples.ids), "labels": samples.labels.tolist(), "splits": list(samples.splits)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()


def run_meta() -> RunMeta:
    return RunMeta(
        model_id="golden/model", model_revision=None, model_hash="ab" * 32, model_type="golden",
        adapter="golden/adapter", adapter_hash="cd" * 32, dataset_name="golden-set",
        manifest_sha256=reference_manifest_digest(sample_info(), CLASS_NAMES),
        prompt_template="<image>Which class? Answer with one word.", candidates=("cat", "dog", "owl"),
        candidate_token_ids=(101, 202, 303), class_names=CLASS_NAMES, compute_dtype=vocab.FLOAT32,
        extra={"instruction": "Which class?", "batch_size": 7, "device": "cpu"},
    )


def sample_info() -> SampleInfo:
    splits = (vocab.TRAIN, vocab.TRAIN, vocab.VAL, vocab.TEST, vocab.UNASSIGNED)
    return SampleInfo(tuple(f"img/{i:03d}.png" for i in range(N)), np.arange(N) % 3, tuple(splits[i % 5] for i in range(N)))


def batch_rows(start: int, stop: int) -> tuple[dict[str, np.ndarray], np.ndarray, list[str], np.ndarray]:
    """``write`` arguments of samples ``[start, stop)``; each sample's values depend on its index only."""
    idx = range(start, stop)
    acts = {}
    for k, s in enumerate(SITES):
        rows = [np.random.default_rng((k, i)).integers(0, 1 << 16, (s.n_layers, s.hidden), dtype=np.uint16) for i in idx]
        x = np.stack(rows, axis=1)
        x[:, [j for j, i in enumerate(idx) if i in SKIPPED]] = 0
        acts[s.name] = x
    logits = np.stack([np.random.default_rng((99, i)).standard_normal(3).astype(np.float32) for i in idx])
    logits[[j for j, i in enumerate(idx) if i in SKIPPED]] = 0.0
    sha = ["" if i in UNKNOWN_DIGEST else hashlib.sha256(f"img-{i}".encode()).hexdigest() for i in idx]
    return acts, logits, sha, np.array([i in SKIPPED for i in idx])


def _write(writer: StoreWriter, spans: list[tuple[int, int]], copy: bool) -> None:
    for start, stop in spans:
        acts, logits, sha, skipped = batch_rows(start, stop)
        writer.write(start, acts, logits, sha, skipped, copy=copy)


def _batches(blocks: list[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    return [(s, min(s + size, stop)) for start, stop in blocks for s in range(start, stop, size)]


def store_digest(root: Path, same: dict[str, str] | None = None) -> str:
    """SHA-256 over every file's relative path and bytes, clock fields and library versions blanked
    (and, in JSON files, each key of ``same`` written as its value: e.g. two output roots as one)."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.suffix == ".json":
            data = _VERSIONS.sub(b'"library_versions": {}', _CLOCK.sub(rb'"\1": ""', data))
            for old, new in (same or {}).items():
                data = data.replace(old.encode(), new.encode())
        rel = path.relative_to(root).as_posix().encode()
        h.update(len(rel).to_bytes(8, "little") + rel + len(data).to_bytes(8, "little") + data)
    return h.hexdigest()


def _one_writer(path: Path, codec: str, version: int, *, copy: bool, size: int, reverse: bool = False, durable: bool = False) -> None:
    with StoreWriter.open(path, run_meta(), SITES, sample_info(), CS, codec=codec, durable=durable, schema_version=version) as w:
        blocks = w.pending_blocks()
        _write(w, _batches(blocks[::-1] if reverse else blocks, size), copy)
        assert w.committed.all()


def _two_shards(path: Path, codec: str, version: int) -> None:
    for k in (1, 0):
        with StoreWriter.open(path, run_meta(), SITES, sample_info(), CS, codec=codec, schema_version=version) as w:
            _write(w, _batches(w.pending_blocks(shard=(k, 2)), 3), copy=False)


def _resumed(path: Path, codec: str, version: int) -> None:
    with StoreWriter.open(path, run_meta(), SITES, sample_info(), CS, codec=codec, schema_version=version) as w:
        _write(w, [(0, 5), (5, 8), (16, 24), (24, 26)], copy=True)  # block 3 stays partly filled: dropped
    with StoreWriter.open(path, run_meta(), SITES, sample_info()) as w:
        assert w.pending_blocks() == [(8, 16), (24, 29)]
        _write(w, _batches(w.pending_blocks(), 16), copy=False)


VARIANTS = {
    "copy, batches of 7": lambda p, c, v: _one_writer(p, c, v, copy=True, size=7),
    "no copy, batches of 3": lambda p, c, v: _one_writer(p, c, v, copy=False, size=3),
    "no copy, whole blocks, reversed, durable": lambda p, c, v: _one_writer(p, c, v, copy=False, size=CS, reverse=True, durable=True),
    "two shard writers": _two_shards,
    "resumed": _resumed,
}


@pytest.mark.parametrize("version, codec", sorted(GOLDEN))
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_store_bytes_match_the_recorded_writer(tmp_path, version, codec, variant):
    path = tmp_path / "golden.zarr"
    VARIANTS[variant](path, codec, version)
    assert (path / "samples.parquet").exists()
    assert store_digest(path) == GOLDEN[version, codec]


def test_the_digest_sees_every_byte_but_the_clock(tmp_path):
    path = tmp_path / "golden.zarr"
    _one_writer(path, "none", 3, copy=True, size=7)
    before = store_digest(path)
    record = path / "commits" / "0-8.json"
    record.write_bytes(_CLOCK.sub(b'"written_at": "1999-01-01T00:00:00.000+00:00"', record.read_bytes()))
    assert store_digest(path) == before
    shard = path / "sites" / vocab.LLM_FINAL / "c" / "1" / "0" / "0"
    data = bytearray(shard.read_bytes())
    data[5] ^= 1
    shard.write_bytes(bytes(data))
    assert store_digest(path) != before
