"""Reading a store: metadata, per-sample columns, and (site, layer) slabs as torch tensors.

``open_store`` takes a snapshot: the commit records present at open time decide which blocks are
valid (``Store.committed``). Rows of blocks that are not committed read as zeros, whatever bytes a
writer may have left there, so a half-written chunk can never leak into a probe. Open the store
again to see blocks committed later.

A slab is one contiguous byte range of one shard file (default layout), copied straight into one
preallocated buffer that torch then views without a copy; a bf16 slab needs no conversion at all.
Several layers are copied by two threads at once (``chunkio.on_two_threads``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from layerprobe.errors import StoreError
from layerprobe.layers import LayerSpec, select_layers
from layerprobe.store import bf16, chunkio
from layerprobe.store.commits import CommitRecord, read_commits
from layerprobe.store.layout import ANSWER_TEXT, ArrayPlan, StorePlan, describe_zarr, digests_to_hex, plan_store
from layerprobe.store.schema import RunMeta, SiteSpec, StoreHeader, attrs_to_header, manifest_digest
from layerprobe.vocab import ANSWER_SITE

SAMPLES_PARQUET = "samples.parquet"


def open_store(path: str | Path, *, check_samples: bool = True) -> Store:
    """Open a store read-only (a snapshot of its committed blocks).

    ``check_samples`` (the default) recomputes the manifest digest from the stored ids, labels,
    splits and class names and refuses a store where it differs from the recorded
    ``manifest_sha256``: those columns were edited after extraction (``verify`` opens without the
    check and reports it instead).
    """
    root = Path(path)
    doc = _read_json(root / "zarr.json", root)
    header = attrs_to_header(doc.get("attributes", {}).get("layerprobe") if isinstance(doc, dict) else None, str(root))
    plan = plan_store(header, _detect_codec(root, header))
    for a in plan.arrays.values():
        _check_array(root, a)
    commits, problems = read_commits(root, plan)
    columns = {name: _read_column(root, plan, plan.arrays[f"samples/{name}"], range(plan.n_blocks))
               for name in ("id", "label", "split")}
    digests = np.zeros(plan.arrays["samples/sha256"].shape, dtype=np.uint8)
    skipped = np.zeros(plan.n_samples, dtype=bool)
    for block in sorted(commits):
        start, stop = plan.block_range(block)
        try:
            digests[start:stop] = _read_rows(root, plan.arrays["samples/sha256"], block, stop - start)
            skipped[start:stop] = _read_rows(root, plan.arrays["samples/skipped"], block, stop - start)
        except (StoreError, ValueError, RuntimeError) as err:  # missing, truncated or undecodable
            problems.append(f"block [{start}, {stop}) is committed but its per-sample chunks cannot be read ({err}); it counts as not committed")
            del commits[block]
    committed = np.zeros(plan.n_samples, dtype=bool)
    for rec in commits.values():
        committed[rec.start:rec.stop] = True
    labels = columns["label"].astype(np.int64)
    for arr in (labels, committed, skipped):
        arr.flags.writeable = False
    store = Store(root, header, plan, tuple(columns["id"]), labels, tuple(columns["split"]), digests_to_hex(digests),
                  committed, skipped, commits, tuple(problems))
    if check_samples and not store.samples_match_manifest():
        raise StoreError(f"{root}: {SAMPLES_CHANGED}; restore them or extract the store again")
    return store


SAMPLES_CHANGED = ("its sample ids, labels, splits or class names do not match the manifest digest recorded at extraction"
                   " (manifest_sha256), so they were changed after it was written")


@dataclass(frozen=True, eq=False, repr=False)
class Store:
    """A read-only snapshot of a store (see ``open_store``)."""

    path: Path
    header: StoreHeader
    plan: StorePlan
    ids: tuple[str, ...]
    labels: np.ndarray
    """int64 ``(n_samples,)``, index into ``class_names``."""
    splits: tuple[str, ...]
    sha256: tuple[str, ...]
    """SHA-256 of each image file ("" for samples not committed)."""
    committed: np.ndarray
    """bool ``(n_samples,)``: the sample's block has a valid commit record."""
    skipped: np.ndarray
    """bool ``(n_samples,)``: the image could not be decoded (its rows hold no activations)."""
    commits: dict[int, CommitRecord]
    commit_problems: tuple[str, ...]
    """Commit records that were ignored (``verify`` reports them)."""

    def __repr__(self) -> str:
        sites = ", ".join(f"{s.name}[{s.n_layers}x{s.hidden}]" for s in self.header.sites)
        return f"Store({str(self.path)!r}, {int(self.committed.sum())}/{self.n_samples} samples committed, sites: {sites})"

    @property
    def meta(self) -> RunMeta:
        return self.header.meta

    @property
    def sites(self) -> dict[str, SiteSpec]:
        return {s.name: s for s in self.header.sites}

    @property
    def n_samples(self) -> int:
        return self.header.n_samples

    @property
    def chunk_samples(self) -> int:
        return self.header.chunk_samples

    @property
    def codec(self) -> str:
        return self.plan.codec

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.header.meta.class_names

    @property
    def created_at(self) -> str:
        return self.header.created_at

    @property
    def library_versions(self) -> dict[str, str]:
        return dict(self.header.library_versions)

    @property
    def valid(self) -> np.ndarray:
        """Rows that hold activations: committed and not skipped."""
        return self.committed & ~self.skipped

    @property
    def skip_reasons(self) -> dict[int, str]:
        """Committed skipped samples -> why each was skipped, from the commit records ("" where none was recorded)."""
        out = {}
        for i in np.flatnonzero(self.committed & self.skipped):
            record = self.commits[int(i) // self.plan.chunk_samples]
            out[int(i)] = record.skip_reasons.get(int(i), "")
        return out

    def samples_match_manifest(self) -> bool:
        """Whether the stored ids, labels, splits and class names still give ``meta.manifest_sha256``."""
        return manifest_digest(self.ids, self.labels, self.splits, self.class_names) == self.meta.manifest_sha256

    @property
    def complete(self) -> bool:
        return len(self.commits) == self.plan.n_blocks

    def layer_index(self, site: str, layer: int | str) -> int:
        """Index of one layer, given as an index (negative counts from the end) or a layer name."""
        spec = self.header.site(site)
        if isinstance(layer, str) and layer in spec.layer_names:
            return spec.layer_names.index(layer)
        chosen = select_layers(layer, spec.n_layers)
        if len(chosen) != 1:
            raise StoreError(f"layer {layer!r} selects {len(chosen)} layers of site {site!r}; read_slab takes one (use read_slabs)")
        return chosen[0]

    def layer_indices(self, site: str, layers: LayerSpec = None) -> tuple[int, ...]:
        """Sorted layer indices for a ``select_layers`` spec; layer names are accepted too."""
        spec = self.header.site(site)

        def named(v: Any) -> Any:
            return spec.layer_names.index(v) if isinstance(v, str) and v in spec.layer_names else v

        if isinstance(layers, (list, tuple)):
            layers = [named(v) for v in layers]
        else:
            layers = named(layers)
        return select_layers(layers, spec.n_layers)

    def read_bits(self, site: str, layers: LayerSpec = None, *, check: bool = True) -> np.ndarray:
        """uint16 bf16 bits ``[L, N, D]`` of the selected layers (rows not committed are 0).

        ``check`` (the default) compares every committed chunk read with the checksum its commit
        record holds (``plan.checksum``: CRC-32, or XXH3-64 in a schema-2 store) and raises
        ``StoreError`` on a mismatch; ``check=False`` skips that
        (benchmarks measure what it costs).
        """
        return self._bits(self.plan.site(site), self.layer_indices(site, layers), check)

    def _bits(self, a: ArrayPlan, chosen: tuple[int, ...], check: bool) -> np.ndarray:
        """``read_bits`` of the resolved layer indices ``chosen`` of site array ``a``."""
        out = np.empty((len(chosen), self.n_samples, a.shape[2]), dtype=np.uint16)
        if a.sharded:
            def copy_layer(pair: tuple[int, int]) -> list[int]:
                i, layer = pair
                expected = self._expected_sums(a.path, layer) if check else ()
                return chunkio.copy_range_into(self.path / a.chunk_key(layer, 0), 0, out[i], chunk_nbytes=a.chunk_nbytes,
                                               checksums=expected, algorithm=self.plan.checksum)

            bad = chunkio.on_two_threads(copy_layer, list(enumerate(chosen)))  # 1.5x one thread's speed here
            for layer, blocks in zip(chosen, bad):
                if blocks:
                    raise self._mismatch(a, layer, blocks[0])
            for block in range(self.plan.n_blocks):
                if block not in self.commits:
                    start, stop = self.plan.block_range(block)
                    out[:, start:stop] = 0
            return out
        for block in range(self.plan.n_blocks):
            start, stop = self.plan.block_range(block)
            if block not in self.commits:
                out[:, start:stop] = 0
                continue
            for i, layer in enumerate(chosen):
                chunk = chunkio.decode_chunk(a, self._read_chunk(a, layer, block, check))
                out[i, start:stop] = chunk[0, : stop - start]
        return out

    def read_slabs(self, site: str, layers: LayerSpec = None, dtype: Any = "float32", device: Any = "cpu", *,
                   check: bool = True) -> Any:
        """Tensor ``[L, N, D]`` of the selected layers (sorted), in ``dtype`` on ``device`` (``check``: see ``read_bits``)."""
        return _to_torch(self.read_bits(site, layers, check=check), dtype, device)

    def read_slab(self, site: str, layer: int | str, dtype: Any = "float32", device: Any = "cpu", *,
                  check: bool = True) -> Any:
        """Tensor ``[N, D]``: one (site, layer) slab, all N samples (rows not committed are 0)."""
        # resolved once here: a slab read is ~0.5 ms, so a second selection parse would show
        index = self.layer_index(site, layer)  # names an unknown site before plan.site would
        return _to_torch(self._bits(self.plan.site(site), (index,), check), dtype, device)[0]

    def answer_logits_numpy(self, *, check: bool = True) -> np.ndarray:
        """float32 ``[N, C]`` candidate logits (rows not committed are 0; ``check``: see ``read_bits``)."""
        a = self.plan.arrays[ANSWER_SITE]
        out = np.zeros(a.shape, dtype=np.float32)
        for block in sorted(self.commits):
            start, stop = self.plan.block_range(block)
            out[start:stop] = chunkio.decode_chunk(a, self._read_chunk(a, 0, block, check))[: stop - start]
        return out

    @property
    def has_answer_text(self) -> bool:
        """Whether the store holds generated answers (extracted with ``answer_tokens > 0``)."""
        return ANSWER_TEXT in self.plan.arrays

    def answer_text(self, *, check: bool = True) -> tuple[str, ...]:
        """The generated answer of each sample ("" for rows not committed and skipped samples;
        ``check``: see ``read_bits``). A store extracted without generation has none: StoreError."""
        if not self.has_answer_text:
            raise StoreError(f"{self.path} was extracted without generated answers (answer_tokens 0); extract again with --answer-tokens N")
        a = self.plan.arrays[ANSWER_TEXT]
        out = [""] * self.n_samples
        for block in sorted(self.commits):
            start, stop = self.plan.block_range(block)
            out[start:stop] = [str(t) for t in chunkio.decode_chunk(a, self._read_chunk(a, 0, block, check))[: stop - start]]
        return tuple(out)

    def _expected_sums(self, path: str, layer: int) -> list[str | None]:
        """The committed checksum of each block's chunk of one layer (None: block not committed)."""
        return [rec.checksums[path][layer] if (rec := self.commits.get(b)) else None for b in range(self.plan.n_blocks)]

    def _read_chunk(self, a: ArrayPlan, layer: int, block: int, check: bool) -> bytes:
        data = chunkio.read_chunk(self.path, a, layer, block)
        if check and chunkio.checksum([data], self.plan.checksum) != self.commits[block].checksums[a.path][layer]:
            raise self._mismatch(a, layer, block)
        return data

    def _mismatch(self, a: ArrayPlan, layer: int, block: int) -> StoreError:
        start, stop = self.plan.block_range(block)
        return StoreError(
            f"{self.path}: chunk {a.chunk_key(layer, block)} (samples [{start}, {stop})) does not match the checksum in "
            f"its commit record, so it changed after it was written; run 'layerprobe verify {self.path}' and extract again"
        )

    def answer_logits(self, *, check: bool = True) -> Any:
        """Tensor ``[N, C]`` float32 of candidate logits (rows not committed are 0)."""
        import torch

        return torch.from_numpy(self.answer_logits_numpy(check=check))

    def samples_frame(self) -> Any:
        """A polars DataFrame, one row per sample: index, id, label, class_name, split, sha256, skipped, committed."""
        return samples_frame(self.ids, self.labels, self.class_names, self.splits, self.sha256, self.skipped, self.committed)


def samples_frame(ids: tuple[str, ...], labels: np.ndarray, class_names: tuple[str, ...], splits: tuple[str, ...],
                  sha256: tuple[str, ...], skipped: np.ndarray, committed: np.ndarray) -> Any:
    """The per-sample columns as a polars DataFrame (``Store.samples_frame``; also what samples.parquet holds)."""
    import polars as pl

    names = np.asarray(class_names, dtype=object)
    return pl.DataFrame({
        "index": np.arange(len(ids), dtype=np.int64),
        "id": list(ids),
        "label": labels,
        "class_name": list(names[labels]),
        "split": list(splits),
        "sha256": list(sha256),
        "skipped": skipped,
        "committed": committed,
    })


def _to_torch(bits: np.ndarray, dtype: Any, device: Any) -> Any:
    import torch

    if isinstance(dtype, str):
        if not hasattr(torch, dtype) or not isinstance(getattr(torch, dtype), torch.dtype):
            raise StoreError(f"dtype {dtype!r} is not a torch dtype; use 'float32' or 'bfloat16'")
        dtype = getattr(torch, dtype)
    if not dtype.is_floating_point:
        raise StoreError(f"dtype {dtype} is not a floating-point type; use torch.float32 or torch.bfloat16")
    target = torch.device(device)
    if target.type == "cuda":
        # Move the 2-byte form from pinned memory, asynchronously, and convert on the device (the
        # conversion is queued behind the copy on the same stream; torch keeps the pinned buffer alive).
        return bf16.bits_to_torch(bits).pin_memory().to(target, non_blocking=True).to(dtype)
    if target.type != "cpu":
        return bf16.bits_to_torch(bits).to(target).to(dtype)
    if dtype == torch.float32:
        return torch.from_numpy(bf16.to_float32(bits))
    tensor = bf16.bits_to_torch(bits)
    return tensor if dtype == torch.bfloat16 else tensor.to(dtype)


def _read_json(path: Path, root: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        raise StoreError(f"{root} is not a layerprobe store (no {path.name} there); pass the path of a store made by 'layerprobe extract'") from None
    except NotADirectoryError:
        raise StoreError(f"{root} is not a layerprobe store (not a directory); pass the path of a store made by 'layerprobe extract'") from None
    except (OSError, ValueError) as err:
        raise StoreError(f"{path} cannot be read as JSON ({type(err).__name__}); the store is damaged") from None


def _detect_codec(root: Path, header: StoreHeader) -> str:
    first = header.sites[0].name
    doc = _read_json(root / "sites" / first / "zarr.json", root)
    names = [c.get("name") for c in doc.get("codecs", [])] if isinstance(doc, dict) else []
    return "zstd" if "zstd" in names else "none"


def _check_array(root: Path, a: ArrayPlan) -> None:
    doc = _read_json(root / a.path / "zarr.json", root)
    try:
        found = describe_zarr(doc)
    except (KeyError, TypeError, AttributeError):
        found = None
    if found != a.expected_zarr():
        raise StoreError(f"{root} is damaged: array {a.path} has metadata {found}, expected {a.expected_zarr()}; re-create the store")
    if a.sharded:
        for layer in range(a.n_layers):
            shard = root / a.chunk_key(layer, 0)
            size = shard.stat().st_size if shard.exists() else -1
            if size != a.shard_nbytes():
                raise StoreError(f"{root} is damaged: {shard.relative_to(root)} has {size} bytes, expected {a.shard_nbytes()}; re-create the store")


def _read_column(root: Path, plan: StorePlan, a: ArrayPlan, blocks: Any) -> np.ndarray:
    """The rows of a per-sample array for ``blocks``; other rows hold the fill value."""
    out = np.full(plan.n_samples, a.fill, dtype=object if a.dtype == "str" else a.dtype)
    for block in blocks:
        start, stop = plan.block_range(block)
        out[start:stop] = _read_rows(root, a, block, stop - start)
    return out


def _read_rows(root: Path, a: ArrayPlan, block: int, n_rows: int) -> np.ndarray:
    return chunkio.decode_chunk(a, chunkio.read_chunk(root, a, 0, block))[:n_rows]
