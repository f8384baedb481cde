"""Chunk checksums by schema version (issue 15, item 2: checked reads within 0.9x of unchecked ones).

New stores (schema 3) record CRC-32 checksums, which ISA-L computes faster than XXH3-64; stores of
schema 2 (XXH3-64) stay readable, checked, verifiable and resumable, in their own algorithm, so a
store never mixes the two. Every commit record names its algorithm, and a record naming another
one than its store's is not trusted.
"""

from __future__ import annotations

import json
import shutil
import sys
import zlib

import numpy as np
import pytest
import xxhash

from layerprobe.errors import StoreError
from layerprobe.store import SCHEMA_VERSION, StoreWriter, chunkio, open_store, verify
from layerprobe.store.schema import CHUNK_CHECKSUMS, new_header
from layerprobe.testing.stores import synthetic_run, write_synthetic_store

N, CS = 40, 16  # 3 blocks, the last one short (its chunk is padded)
SITE = "llm/final_token"
DIGEST = {"crc32": lambda data: f"{zlib.crc32(data):08x}", "xxh3_64": xxhash.xxh3_64_hexdigest}
"""What each algorithm's checksum of some bytes is, computed by the reference libraries."""


def _store(path, version: int | None, codec: str = "none"):
    """A complete store of ``synthetic_run(N)``; ``version`` None: the default."""
    run = synthetic_run(N)
    if version is not None:  # create it empty in that version; write_synthetic_store then resumes it
        StoreWriter.open(path, run.meta, run.sites, run.samples, CS, codec=codec, schema_version=version).close()
    return write_synthetic_store(path, run, chunk_samples=CS, codec=codec), run


@pytest.fixture(scope="module", params=sorted(CHUNK_CHECKSUMS))
def versioned(request, tmp_path_factory):
    path, _ = _store(tmp_path_factory.mktemp(f"v{request.param}") / "run.zarr", request.param)
    return path, request.param


def test_new_stores_are_schema_3_with_crc32_records(tmp_path):
    path, _ = _store(tmp_path / "run.zarr", None)
    store = open_store(path)
    assert SCHEMA_VERSION == 3 and store.header.schema_version == 3 and store.plan.checksum == chunkio.CHECKSUM == "crc32"
    record = json.loads((path / "commits" / "0-16.json").read_text())
    a = store.plan.site(SITE)
    data = chunkio.read_chunk(path, a, 1, 0)
    assert record["checksum"] == "crc32" and record["chunks"][a.path][1] == DIGEST["crc32"](data)


def test_each_version_records_its_own_algorithm_and_every_block_uses_it(versioned):
    path, version = versioned
    store = open_store(path)
    algorithm = CHUNK_CHECKSUMS[version]
    assert store.plan.checksum == algorithm and len(store.commits) == 3 and not store.commit_problems
    for name in sorted(p.name for p in (path / "commits").iterdir()):
        assert json.loads((path / "commits" / name).read_text())["checksum"] == algorithm
    for a in store.plan.per_block_arrays():
        for block, record in store.commits.items():
            for layer in range(a.n_layers):
                assert record.checksums[a.path][layer] == DIGEST[algorithm](chunkio.read_chunk(path, a, layer, block))


def test_each_version_is_checked_on_read_and_by_verify(versioned, tmp_path):
    clean, version = versioned
    assert verify(clean, progress=False).ok
    path = shutil.copytree(clean, tmp_path / "run.zarr")
    store = open_store(path)
    assert np.array_equal(store.read_bits(SITE), store.read_bits(SITE, check=False))
    a = store.plan.site(SITE)
    shard = path / a.chunk_key(2, 0)
    data = bytearray(shard.read_bytes())
    data[a.chunk_offset(1) + 5] ^= 0x08  # one bit of block 1
    shard.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=r"samples \[16, 32\)\) does not match the checksum"):
        store.read_slabs(SITE)
    assert any("does not match the checksum" in p for p in verify(path, progress=False).problems)


def test_a_schema_2_store_is_resumed_as_schema_2(tmp_path):
    run = synthetic_run(N)
    path = tmp_path / "run.zarr"
    StoreWriter.open(path, run.meta, run.sites, run.samples, CS, schema_version=2).close()
    write_synthetic_store(path, run)  # a later run, no version given: the store's own
    store = open_store(path)
    assert store.header.schema_version == 2 and store.plan.checksum == "xxh3_64" and len(store.commits) == 3
    with pytest.raises(StoreError, match="different schema_version") as info:
        StoreWriter.open(path, run.meta, run.sites, run.samples, schema_version=3)
    assert "\n" not in str(info.value)


def test_a_record_naming_another_algorithm_is_not_trusted(tmp_path):
    path, _ = _store(tmp_path / "run.zarr", None)
    record = path / "commits" / "16-32.json"
    body = json.loads(record.read_text())
    body["checksum"] = "xxh3_64"  # a mixed store: these digests would be compared with the wrong function
    record.write_text(json.dumps(body))
    store = open_store(path)
    assert sorted(store.commits) == [0, 2]
    assert any("holds 'xxh3_64' checksums where this store's schema uses 'crc32'" in p for p in store.commit_problems)
    assert not store.read_bits(SITE)[:, 16:32].any()  # read as not committed: zeros, never unchecked data
    assert not verify(path, progress=False).ok


def test_unknown_versions_and_algorithms_are_one_line_errors(tmp_path):
    run = synthetic_run(N)
    with pytest.raises(StoreError, match="schema version 1 cannot be written; use one of"):
        StoreWriter.open(tmp_path / "run.zarr", run.meta, run.sites, run.samples, CS, schema_version=1)
    assert not (tmp_path / "run.zarr").exists()
    with pytest.raises(StoreError, match="schema version 4 cannot be written"):
        new_header(run.meta, run.sites, CS, N, 4)
    with pytest.raises(StoreError, match="chunk checksum 'md5' is unknown"):
        chunkio.checksum([b"x"], "md5")


def test_zlib_gives_the_same_crc32_when_isal_is_missing(tmp_path, monkeypatch):
    data = np.random.default_rng(0).integers(0, 256, 3 << 20, dtype=np.uint8)
    with_isal = chunkio.checksum([data[:1000], data[1000:]], "crc32")
    path, _ = _store(tmp_path / "run.zarr", None)
    monkeypatch.setitem(sys.modules, "isal.isal_zlib", None)  # import fails as where no wheel exists
    chunkio._crc32.cache_clear()
    try:
        assert chunkio._crc32() is zlib.crc32
        assert chunkio.checksum([data], "crc32") == with_isal == DIGEST["crc32"](data.tobytes())
        store = open_store(path)
        assert np.array_equal(store.read_bits(SITE), store.read_bits(SITE, check=False)) and verify(path, progress=False).ok
    finally:
        chunkio._crc32.cache_clear()


@pytest.mark.parametrize(("version", "fused"), [(3, True), (3, False), (2, False)], ids=["crc32-one-pass", "crc32-pieces", "xxh3-pieces"])
def test_checked_reads_hash_every_piece_and_the_padding(tmp_path, monkeypatch, version, fused):
    """Pieces smaller than a chunk and not dividing it (or the compiled one-pass copy + CRC): every
    byte, padding included, is hashed once."""
    assert sorted(CHUNK_CHECKSUMS) == [2, 3]
    path, _ = _store(tmp_path / "run.zarr", version)
    if fused and chunkio._fused_copy_crc32() is None:
        pytest.skip("layerprobe.store._crc32copy is not built here (tests/test_store_crc32copy.py says why)")
    if not fused:
        monkeypatch.setattr(chunkio, "_fused_copy_crc32", lambda: None)
    monkeypatch.setattr(chunkio, "CHECK_PIECE", 1000)  # a chunk here is 16 x 48 x 2 = 1536 bytes
    store = open_store(path)
    assert np.array_equal(store.read_bits(SITE), store.read_bits(SITE, check=False))
    a = store.plan.site(SITE)
    shard = path / a.chunk_key(0, 0)
    for where in (a.chunk_offset(1) + 1200, a.chunk_offset(2) + (N - 2 * CS) * 96 + 3):  # 2nd piece; last chunk's padding
        data = bytearray(shard.read_bytes())
        data[where] ^= 0x01
        shard.write_bytes(bytes(data))
        with pytest.raises(StoreError, match="does not match the checksum"):
            store.read_slab(SITE, 0)
        data[where] ^= 0x01
        shard.write_bytes(bytes(data))
    store.read_slab(SITE, 0)
