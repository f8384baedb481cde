"""Deterministic synthetic runs: metadata, samples and activations for tests, benchmarks and demos.

Every value depends only on ``(seed, sample index)``, never on how samples are batched, so stores
written in different batch sizes, shards or after a crash can be compared byte for byte. The
activations look roughly like real ones (per-dimension scales spanning two orders of magnitude, a
few outlier dimensions, norms growing with depth) and carry a class signal that grows with depth,
so probes trained on them have something to find.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from layerprobe.store import bf16
from layerprobe.store.schema import RunMeta, SampleInfo, SiteSpec

TINY_SITES: dict[str, tuple[int, int]] = {
    "vision/mean": (4, 32),
    "connector/mean": (2, 32),
    "llm/image_mean": (5, 48),
    "llm/final_token": (5, 48),
}
"""site -> (n_layers, hidden) of a tiny store with the four standard sites."""


@dataclass(frozen=True)
class SyntheticRun:
    """Everything ``StoreWriter.open`` needs for a synthetic run."""

    meta: RunMeta
    sites: tuple[SiteSpec, ...]
    samples: SampleInfo
    seed: int


@dataclass(frozen=True)
class SyntheticBatch:
    """Arguments of ``StoreWriter.write`` for samples ``[start, stop)``."""

    start: int
    acts: dict[str, np.ndarray]
    """site -> uint16 bf16 bits ``(n_layers, B, hidden)``."""
    answer_logits: np.ndarray
    sha256: list[str]
    skipped: np.ndarray


def synthetic_run(n_samples: int, sites: dict[str, tuple[int, int]] | None = None, n_classes: int = 2, seed: int = 0) -> SyntheticRun:
    """A run of ``n_samples`` over ``sites`` (name -> (n_layers, hidden)); labels cycle over classes."""
    sites = TINY_SITES if sites is None else sites
    specs = tuple(SiteSpec(name, _layer_names(name, n_layers), hidden) for name, (n_layers, hidden) in sites.items())
    class_names = tuple(f"class_{c}" for c in range(n_classes))
    meta = RunMeta(
        model_id="synthetic/tiny", model_revision=None, model_hash="0" * 64, model_type="synthetic",
        adapter=None, adapter_hash=None, dataset_name="synthetic", manifest_sha256=hashlib.sha256(f"{n_samples}-{n_classes}-{seed}".encode()).hexdigest(),
        prompt_template="Which class is this image? Answer with one word.", candidates=class_names,
        candidate_token_ids=tuple(range(10, 10 + n_classes)), class_names=class_names,
    )
    labels = np.arange(n_samples, dtype=np.int64) % n_classes
    splits = tuple(("train", "train", "train", "val", "test")[i % 5] for i in range(n_samples))
    samples = SampleInfo(tuple(f"img/{i:06d}.png" for i in range(n_samples)), labels, splits)
    return SyntheticRun(meta, specs, samples, seed)


def synthetic_batch(run: SyntheticRun, start: int, stop: int) -> SyntheticBatch:
    """The synthetic data of samples ``[start, stop)``."""
    n = stop - start
    acts = {s.name: np.empty((s.n_layers, n, s.hidden), dtype=np.uint16) for s in run.sites}
    n_cand = len(run.meta.candidates)
    logits = np.empty((n, n_cand), dtype=np.float32)
    for j, i in enumerate(range(start, stop)):
        label = int(run.samples.labels[i])
        rng = np.random.default_rng((run.seed, i))
        for k, s in enumerate(run.sites):
            acts[s.name][:, j] = bf16.from_float(_sample_acts(run.seed, k, s, label, rng))
        logits[j] = rng.standard_normal(n_cand).astype(np.float32)
        logits[j, label] += 1.0
    sha = [hashlib.sha256(f"{run.seed}:{i}".encode()).hexdigest() for i in range(start, stop)]
    return SyntheticBatch(start, acts, logits, sha, np.zeros(n, dtype=bool))


def write_synthetic_store(path: str | Path, run: SyntheticRun, batch_size: int = 16, chunk_samples: int | None = None,
                          codec: str | None = None) -> Path:
    """Write a complete synthetic store at ``path`` (resuming it if it exists) and return the path."""
    from layerprobe.store.writer import StoreWriter

    with StoreWriter.open(path, run.meta, run.sites, run.samples, chunk_samples, codec=codec) as writer:
        for start, stop in writer.pending_blocks():
            for b0 in range(start, stop, batch_size):
                b = synthetic_batch(run, b0, min(b0 + batch_size, stop))
                writer.write(b.start, b.acts, b.answer_logits, b.sha256, b.skipped)
    return Path(path)


def _layer_names(site: str, n_layers: int) -> tuple[str, ...]:
    if site.startswith("llm/"):
        return ("embed",) + tuple(str(i) for i in range(n_layers - 1))
    if site.startswith("connector/") and n_layers == 2:
        return ("inner", "output")
    return tuple(str(i) for i in range(n_layers))


def _sample_acts(seed: int, site_index: int, site: SiteSpec, label: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_layers, hidden)`` float32 activations of one sample at one site."""
    gain_ld, signal_ld = _site_structure(seed, site_index, site.n_layers, site.hidden, label)
    noise_ld = rng.standard_normal((site.n_layers, site.hidden), dtype=np.float32)
    return (noise_ld + signal_ld) * gain_ld


@lru_cache(maxsize=256)
def _site_structure(seed: int, site_index: int, n_layers: int, hidden: int, label: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-site gains (dimension scales x depth growth) and the class signal, shared by all samples."""
    fixed = np.random.default_rng((seed, 1_000_003, site_index))
    scale_d = np.exp(fixed.normal(0.0, 0.8, hidden)).astype(np.float32)
    scale_d[fixed.choice(hidden, size=max(1, hidden // 256), replace=False)] *= 30.0  # outlier dims
    gain_ld = np.linspace(1.0, 3.0, n_layers, dtype=np.float32)[:, None] * scale_d
    direction_d = np.random.default_rng((seed, 2_000_003, site_index, label)).standard_normal(hidden).astype(np.float32)
    signal_ld = np.linspace(0.1, 1.0, n_layers, dtype=np.float32)[:, None] * direction_d
    return gain_ld, signal_ld
