"""Chunking and codec choices, in one place: which arrays a store has and where each chunk lives.

Choices (measured on the 2-core dev box, see docs/LOG.md "store"):
- Samples are written in blocks of ``chunk_samples``; every array is chunked along the sample axis
  at that size, so a block is a whole chunk of every array and blocks never share a chunk.
- ``chunk_samples`` defaults to about 1 MiB per site chunk (a power of two between 16 and 1024
  samples for the widest site), capped at ``n_samples``.
- Uncompressed sites (the default, codec ``"none"``) use the Zarr v3 ``sharding_indexed`` codec with
  one shard per (site, layer): the shard file ``c/<layer>/0/0`` holds that layer's inner chunks
  ``(1, chunk_samples, hidden)`` back to back in sample order, followed by the shard index. The
  index is written once at creation with every inner chunk at its fixed offset, so writers of
  disjoint blocks (shards) write disjoint byte ranges and never touch the index, and one layer's
  slab is one contiguous byte range. One file per chunk was 3-5x slower to write on ext4 (file and
  directory creation dominate), see the log.
- Compressed sites (codec ``"zstd"``) cannot have fixed offsets, so they use one file per chunk,
  ``c/<layer>/<block>/0``, with the Zarr ``bytes`` + ``zstd`` codecs.
- Fixed-size per-sample arrays (labels, answer logits, image digests, skipped flags) are sharded the
  same way: one pre-laid-out shard file per array, so writing a block's rows is a write at a fixed
  offset, not a new file. Creating a small file costs about 1 ms on this ext4 (3 per block were a
  tenth of the write time, see the log). String columns (ids, splits) are known at creation and
  stay plain chunk files.
- The generated answers (``samples/answer_text``, only in stores with ``answer_tokens > 0``) are a
  variable-length string column like ids, one ``vlen-utf8`` chunk file per block, but written with
  the block at flush time and listed in its commit record like the fixed-size per-block arrays.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from layerprobe.errors import StoreError
from layerprobe.store.schema import StoreHeader
from layerprobe.vocab import ANSWER_SITE, BFLOAT16

CODECS = ("none", "zstd")
"""Site codecs: ``"none"`` (default; raw bf16 bits, sharded) or ``"zstd"`` (one file per chunk)."""

ZSTD_LEVEL = 1
"""zstd level for the compressed option: bf16 activations gain little from higher levels (see log)."""

TARGET_CHUNK_BYTES = 1 << 20
"""Aim for about this many bytes per site chunk: big enough that per-chunk costs vanish, small
enough that a block buffer (chunk_samples x all sites) stays in the tens of MB for 7B models."""

MIN_CHUNK_SAMPLES = 16
MAX_CHUNK_SAMPLES = 1024

SITE_DIMS = ("layer", "sample", "hidden")
SHA256_BYTES = 32
SHA256_ATTR = {"description": "SHA-256 digest of the image file, raw bytes; all zeros = unknown (not committed or no file)"}
BF16_ATTR = {"layerprobe_dtype": BFLOAT16}
ANSWER_TEXT = "samples/answer_text"
"""The generated answers: one string per sample, present when ``RunMeta.answer_tokens > 0``."""
ANSWER_TEXT_ATTR = {"description": "greedy generated answer after the prompt, special tokens removed, stripped; '' = not committed"}


def digests_from_hex(hexes: Sequence[str]) -> np.ndarray:
    """uint8 ``(n, 32)`` digests from 64-digit hex strings; ``""`` (unknown) becomes all zeros."""
    return np.frombuffer(bytes.fromhex("".join(h or "0" * 64 for h in hexes)), dtype=np.uint8).reshape(len(hexes), SHA256_BYTES).copy()


def digests_to_hex(digests: np.ndarray) -> tuple[str, ...]:
    """The inverse of ``digests_from_hex``: all-zero rows become ``""``."""
    text = np.ascontiguousarray(digests).tobytes().hex()
    width = 2 * SHA256_BYTES
    return tuple(text[i * width:(i + 1) * width] if known else "" for i, known in enumerate(digests.any(axis=1)))


def default_chunk_samples(max_hidden: int, n_samples: int) -> int:
    """Samples per chunk/block for a store whose widest site is ``max_hidden`` wide."""
    per_sample = 2 * max(1, max_hidden)
    cs = MIN_CHUNK_SAMPLES
    while cs * 2 <= MAX_CHUNK_SAMPLES and cs * 2 * per_sample <= TARGET_CHUNK_BYTES:
        cs *= 2
    return max(1, min(cs, n_samples))


@dataclass(frozen=True)
class ArrayPlan:
    """One Zarr array of the store and how its chunks are laid out on disk."""

    path: str
    """Path of the array inside the store, e.g. ``"sites/llm/final_token"``."""
    shape: tuple[int, ...]
    dtype: str
    """numpy dtype name (``"uint16"``, ``"float32"``, ``"int64"``, ``"bool"``) or ``"str"``."""
    chunk_shape: tuple[int, ...]
    """Shape of one (inner) chunk; the sample axis has length ``chunk_samples``."""
    dims: tuple[str, ...]
    fill: Any
    sample_axis: int
    sharded: bool
    """True: one shard file (per layer, for sites) with its chunks at fixed offsets; all
    fixed-size arrays except compressed sites."""
    codec: str
    """``"none"`` or ``"zstd"``."""
    per_block: bool
    """True: written with each block and covered by its commit; False: written at creation."""
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def n_layers(self) -> int:
        return self.shape[0] if self.sample_axis == 1 else 1

    @property
    def chunk_nbytes(self) -> int:
        """Bytes of one raw chunk (fixed-size dtypes only)."""
        return math.prod(self.chunk_shape) * np.dtype(self.dtype).itemsize  # math.prod: np.prod costs ~15 us a call

    @property
    def row_nbytes(self) -> int:
        """Bytes of one sample's row inside one chunk (fixed-size dtypes only)."""
        return self.chunk_nbytes // self.chunk_shape[self.sample_axis]

    def chunk_key(self, layer: int, block: int) -> str:
        """Store-relative path of the file holding chunk (``layer``, ``block``)."""
        if self.sharded:
            shard = [layer if axis == 0 and self.sample_axis == 1 else 0 for axis in range(len(self.shape))]
            return f"{self.path}/c/" + "/".join(map(str, shard))
        if self.sample_axis == 1:
            return f"{self.path}/c/{layer}/{block}/0"
        return f"{self.path}/c/{block}" + "/0" * (len(self.shape) - 1)

    def chunk_offset(self, block: int) -> int:
        """Byte offset of a block's inner chunk inside the shard file (sharded arrays only)."""
        return block * self.chunk_nbytes

    def n_shard_chunks(self) -> int:
        return -(-self.shape[self.sample_axis] // self.chunk_shape[self.sample_axis])

    def shard_nbytes(self) -> int:
        """Size of a shard file: the inner chunks then the index (16 bytes per chunk + CRC32C)."""
        n = self.n_shard_chunks()
        return n * self.chunk_nbytes + 16 * n + 4

    def expected_zarr(self) -> tuple[Any, ...]:
        """The parts of this array's ``zarr.json`` that the fast path depends on (see ``describe_zarr``)."""
        data_type = "string" if self.dtype == "str" else self.dtype
        if self.sharded:
            outer = list(self.chunk_shape)
            outer[self.sample_axis] = self.n_shard_chunks() * self.chunk_shape[self.sample_axis]
            codecs: tuple[Any, ...] = (("sharding_indexed", tuple(self.chunk_shape), ("bytes",), ("bytes", "crc32c"), "end"),)
            return (tuple(self.shape), data_type, tuple(outer), codecs, self.dims)
        if self.dtype == "str":
            codecs = ("vlen-utf8",)
        else:
            codecs = ("bytes",) if self.codec == "none" else ("bytes", "zstd")
        return (tuple(self.shape), data_type, tuple(self.chunk_shape), codecs, self.dims)


def describe_zarr(doc: dict[str, Any]) -> tuple[Any, ...]:
    """Normalise a ``zarr.json`` array document to compare with ``ArrayPlan.expected_zarr``."""
    def chain(codecs: list[dict[str, Any]]) -> tuple[Any, ...]:
        out: list[Any] = []
        for c in codecs:
            if c["name"] == "sharding_indexed":
                cfg = c["configuration"]
                out.append(("sharding_indexed", tuple(cfg["chunk_shape"]), chain(cfg["codecs"]),
                            chain(cfg["index_codecs"]), cfg.get("index_location", "end")))
            elif c["name"] == "bytes" and c.get("configuration", {}).get("endian", "little") != "little":
                out.append("bytes-big-endian")
            else:
                out.append(c["name"])
        return tuple(out)

    return (tuple(doc["shape"]), doc["data_type"], tuple(doc["chunk_grid"]["configuration"]["chunk_shape"]),
            chain(doc["codecs"]), tuple(doc.get("dimension_names") or ()))


@dataclass(frozen=True)
class StorePlan:
    """All arrays of a store plus its block grid."""

    n_samples: int
    chunk_samples: int
    codec: str
    arrays: dict[str, ArrayPlan]
    site_paths: dict[str, str]
    """site name -> array path."""
    checksum: str
    """The checksum algorithm of the commit records (``StoreHeader.chunk_checksum``)."""

    @property
    def n_blocks(self) -> int:
        return -(-self.n_samples // self.chunk_samples)

    def block_range(self, block: int) -> tuple[int, int]:
        start = block * self.chunk_samples
        return start, min(start + self.chunk_samples, self.n_samples)

    def blocks_between(self, start: int, stop: int) -> range:
        """The blocks that samples ``[start, stop)`` (``stop > start``) touch."""
        return range(start // self.chunk_samples, (stop - 1) // self.chunk_samples + 1)

    def site(self, name: str) -> ArrayPlan:
        return self.arrays[self.site_paths[name]]

    def per_block_arrays(self) -> list[ArrayPlan]:
        return [a for a in self.arrays.values() if a.per_block]


def plan_store(header: StoreHeader, codec: str) -> StorePlan:
    """The arrays of a store with this header (the normative list in docs/architecture.md)."""
    if codec not in CODECS:
        raise StoreError(f"codec {codec!r} is not one of {CODECS}")
    n, cs = header.n_samples, header.chunk_samples
    arrays: dict[str, ArrayPlan] = {}
    site_paths: dict[str, str] = {}
    for spec in header.sites:
        path = f"sites/{spec.name}"
        site_paths[spec.name] = path
        attrs = {**BF16_ATTR, "site": spec.name, "layer_names": list(spec.layer_names)}
        arrays[path] = ArrayPlan(path, (spec.n_layers, n, spec.hidden), "uint16", (1, cs, spec.hidden), SITE_DIMS, 0, 1,
                                 sharded=codec == "none", codec=codec, per_block=True, attributes=attrs)
    n_cand = len(header.meta.candidates)
    arrays[ANSWER_SITE] = ArrayPlan(ANSWER_SITE, (n, n_cand), "float32", (cs, n_cand), ("sample", "candidate"),
                                    0.0, 0, True, "none", True,
                                    {"candidates": list(header.meta.candidates),
                                     "candidate_token_ids": list(header.meta.candidate_token_ids)})
    for name, dtype, fill, per_block in (("label", "int64", 0, False), ("split", "str", "", False), ("id", "str", "", False),
                                         ("skipped", "bool", False, True)):
        attrs = {"class_names": list(header.meta.class_names)} if name == "label" else {}
        arrays[f"samples/{name}"] = ArrayPlan(f"samples/{name}", (n,), dtype, (cs,), ("sample",), fill, 0, dtype != "str",
                                              "none", per_block, attrs)
    arrays["samples/sha256"] = ArrayPlan("samples/sha256", (n, SHA256_BYTES), "uint8", (cs, SHA256_BYTES), ("sample", "byte"),
                                         0, 0, True, "none", True, SHA256_ATTR)
    if header.meta.answer_tokens:
        attrs = {**ANSWER_TEXT_ATTR, "answer_tokens": header.meta.answer_tokens}
        arrays[ANSWER_TEXT] = ArrayPlan(ANSWER_TEXT, (n,), "str", (cs,), ("sample",), "", 0, False, "none", True, attrs)
    return StorePlan(n, cs, codec, arrays, site_paths, header.chunk_checksum)
