"""Synthetic stores: runs with made-up activations, written through ``StoreWriter`` or held in memory.

A :class:`SyntheticRun` is what ``StoreWriter.open`` needs (a real ``RunMeta``, ``SiteSpec`` s whose
layer names are the extractor's, from :mod:`layerprobe.vocab`, and a ``SampleInfo``) plus where its
activations come from. There are two sources:

- drawn per sample (:func:`synthetic_run`, :func:`synthetic_batch`): every value depends only on
  ``(seed, sample index)``, never on how samples are batched, so stores written in different batch
  sizes, shards or after a crash can be compared byte for byte. Per-dimension scales span two
  orders of magnitude, a few dimensions are outliers, norms and the class signal grow with depth.
- given whole (:func:`tensor_run`), typically from :func:`synthetic_site`: a power-law covariance
  spectrum (eigenvalue i ~ i^-decay, as measured on transformer residual streams) in a random
  basis, a few "massive activation" dimensions, layers that evolve by an AR(1) step, a class
  signal of layer-dependent strength and label noise, so probe accuracy moves with depth well
  below 100%, like the paper's curves. Values are rounded to bf16 as a store keeps them.

Either run is written by the one writer, :func:`write_synthetic_store`; a tensor run can also be
swept without a disk as an :class:`InMemoryStore` (a ``layerprobe.store.StoreLike``).
Identity: ``manifest_sha256`` hashes the samples and class names, ``model_hash`` the generator (the
seed, or the given activations), so two runs share a probe ``run_id`` only when they are the same data.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from layerprobe import vocab
from layerprobe.errors import StoreError
from layerprobe.store import bf16
from layerprobe.store.schema import RunMeta, SampleInfo, SiteSpec

TINY_SITES: dict[str, tuple[int, int]] = {
    vocab.VISION: (4, 32),
    vocab.CONNECTOR: (2, 32),
    vocab.LLM_IMAGE: (5, 48),
    vocab.LLM_FINAL: (5, 48),
}
"""site -> (n_layers, hidden) of a tiny store with the four standard sites."""
NO_DIGEST = "0" * 64
"""An all-zero SHA-256: "unknown" (image digests of tensor runs)."""


def layer_names(site: str, n_layers: int) -> tuple[str, ...]:
    """The names the extractor gives the ``n_layers`` layers of ``site`` (``vocab``'s naming)."""
    if site == vocab.VISION:
        return vocab.vision_layer_names(n_layers)
    if site in vocab.LLM_SITES and n_layers >= 1:
        return vocab.llm_layer_names(n_layers - 1)
    if site == vocab.CONNECTOR and n_layers in (1, 2):
        return vocab.connector_layer_names(has_inner=n_layers == 2)
    if site == vocab.CONNECTOR_INNER and n_layers == 1:
        return (vocab.INNER,)
    raise ValueError(f"the extractor writes no {n_layers}-layer site {site!r}; use one of {', '.join(vocab.SITES)} with a layer count it has")


@dataclass(frozen=True, eq=False)
class SyntheticRun:
    """Everything ``StoreWriter.open`` needs for a synthetic run, and where its data come from."""

    meta: RunMeta
    """Real run metadata (model, dataset, prompt, candidates, class names)."""
    sites: tuple[SiteSpec, ...]
    """The sites, with the extractor's layer names."""
    samples: SampleInfo
    """Ids, labels and splits."""
    seed: int
    """Seed of the per-sample activations (unused by a tensor run)."""
    acts: Mapping[str, torch.Tensor] | None = None
    """site -> ``[L, N, D]`` float32 activations stored as given (bf16-rounded); None = drawn per sample."""
    answer_logits: torch.Tensor | None = None
    """``[N, C]`` float32 candidate logits stored with ``acts``."""


@dataclass(frozen=True)
class SyntheticBatch:
    """Arguments of ``StoreWriter.write`` for samples ``[start, stop)``."""

    start: int
    """First sample of the batch."""
    acts: dict[str, np.ndarray]
    """site -> uint16 bf16 bits ``(n_layers, B, hidden)``."""
    answer_logits: np.ndarray
    """float32 ``(B, n_candidates)``."""
    sha256: list[str]
    """Hex digest of each sample's (made-up) image."""
    skipped: np.ndarray
    """bool ``(B,)``: all False."""


def synthetic_run(n_samples: int, sites: dict[str, tuple[int, int]] | None = None, n_classes: int = 2, seed: int = 0) -> SyntheticRun:
    """A run of ``n_samples`` over ``sites`` (name -> (n_layers, hidden)); labels cycle over classes."""
    sites = TINY_SITES if sites is None else sites
    specs = tuple(SiteSpec(name, layer_names(name, n_layers), hidden) for name, (n_layers, hidden) in sites.items())
    class_names = tuple(f"class_{c}" for c in range(n_classes))
    cycle = (vocab.TRAIN,) * 3 + (vocab.VAL, vocab.TEST)
    samples = SampleInfo(
        tuple(f"img/{i:06d}.png" for i in range(n_samples)),
        np.arange(n_samples, dtype=np.int64) % n_classes,
        tuple(cycle[i % len(cycle)] for i in range(n_samples)),
    )
    meta = _meta(samples, class_names, model_id="synthetic/tiny", model_hash=_sha256(f"synthetic_batch seed={seed}".encode()),
                 prompt_template="Which class is this image? Answer with one word.", first_token=10, dataset_name="synthetic")  # fmt: skip
    return SyntheticRun(meta, specs, samples, seed)


def tensor_run(acts: Mapping[str, torch.Tensor], labels: np.ndarray, class_names: tuple[str, ...], *,
               answer_logits: torch.Tensor, splits: tuple[str, ...] | None = None,
               model_id: str = "synthetic/probe-bench", dataset_name: str = "synthetic") -> SyntheticRun:  # fmt: skip
    """A run whose activations ``site -> [L, N, D]`` and logits ``[N, C]`` are given (ids ``s000000``...)."""
    n = int(labels.shape[0])
    samples = SampleInfo(tuple(f"s{i:06d}" for i in range(n)), np.asarray(labels, dtype=np.int64), splits or (vocab.UNASSIGNED,) * n)
    specs = tuple(SiteSpec(name, layer_names(name, x.shape[0]), int(x.shape[2])) for name, x in acts.items())
    digest = hashlib.sha256()
    for name, x in acts.items():
        digest.update(name.encode())
        digest.update(bf16.to_bits(x.to(torch.bfloat16).contiguous(), name))
    meta = _meta(samples, class_names, model_id=model_id, model_hash=digest.hexdigest(), prompt_template="Which class? {image}",
                 first_token=0, dataset_name=dataset_name)  # fmt: skip
    return SyntheticRun(meta, specs, samples, 0, dict(acts), answer_logits)


def _meta(samples: SampleInfo, class_names: tuple[str, ...], *, model_id: str, model_hash: str, prompt_template: str,
          first_token: int, dataset_name: str) -> RunMeta:  # fmt: skip
    return RunMeta(
        model_id=model_id, model_revision=None, model_hash=model_hash, model_type="synthetic", adapter=None,
        adapter_hash=None, dataset_name=dataset_name, manifest_sha256=samples.digest(class_names), prompt_template=prompt_template,
        candidates=class_names, candidate_token_ids=tuple(range(first_token, first_token + len(class_names))), class_names=class_names,
    )  # fmt: skip


def synthetic_batch(run: SyntheticRun, start: int, stop: int) -> SyntheticBatch:
    """The data of samples ``[start, stop)``: slices of a tensor run, else drawn per sample."""
    n = stop - start
    if run.acts is not None:
        acts = {name: bf16.to_bits(x[:, start:stop].to(torch.bfloat16), name) for name, x in run.acts.items()}
        return SyntheticBatch(start, acts, run.answer_logits[start:stop].float().numpy(), [NO_DIGEST] * n, np.zeros(n, dtype=bool))
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
    sha = [_sha256(f"{run.seed}:{i}".encode()) for i in range(start, stop)]
    return SyntheticBatch(start, acts, logits, sha, np.zeros(n, dtype=bool))


def write_synthetic_store(path: str | Path, run: SyntheticRun, batch_size: int = 16, chunk_samples: int | None = None,
                          codec: str | None = None) -> Path:  # fmt: skip
    """Write a complete store of ``run`` at ``path`` (resuming it if it exists) and return the path."""
    from layerprobe.store.writer import StoreWriter

    with StoreWriter.open(path, run.meta, run.sites, run.samples, chunk_samples, codec=codec) as writer:
        for start, stop in writer.pending_blocks():
            for b0 in range(start, stop, batch_size):
                b = synthetic_batch(run, b0, min(b0 + batch_size, stop))
                writer.write(b.start, b.acts, b.answer_logits, b.sha256, b.skipped)
    return Path(path)


@dataclass(frozen=True, eq=False)
class InMemoryStore:
    """A complete store of a tensor run, never written: what a probe sweep reads (``StoreLike``)."""

    run: SyntheticRun
    """A run made by :func:`tensor_run`."""

    @property
    def meta(self) -> RunMeta:
        return self.run.meta

    @property
    def sites(self) -> dict[str, SiteSpec]:
        return {s.name: s for s in self.run.sites}

    @property
    def n_samples(self) -> int:
        return len(self.run.samples.ids)

    @property
    def ids(self) -> tuple[str, ...]:
        return self.run.samples.ids

    @property
    def labels(self) -> np.ndarray:
        return self.run.samples.labels

    @property
    def splits(self) -> tuple[str, ...]:
        return self.run.samples.splits

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.run.meta.class_names

    @property
    def valid(self) -> np.ndarray:
        return np.ones(self.n_samples, dtype=bool)

    def read_slabs(self, site: str, layers: list[int]) -> torch.Tensor:
        return self.run.acts[site][list(layers)]

    def answer_logits(self) -> torch.Tensor:
        return self.run.answer_logits

    def answer_text(self) -> tuple[str, ...]:
        raise StoreError("an in-memory store holds no generated answers (its meta.answer_tokens is 0)")


def synthetic_store(n_samples: int, hidden: int, site_layers: dict[str, int], *, n_classes: int = 2, seed: int = 0,
                    peak: float = 1.0) -> InMemoryStore:  # fmt: skip
    """An in-memory store with one :func:`synthetic_site` per entry of ``site_layers`` (name -> n_layers)."""
    labels = synthetic_labels(n_samples, n_classes, seed)
    shapes = ("rise", "arch", "late")
    sites = {
        name: synthetic_site(labels, n_layers, hidden, seed=seed + 1 + k, curve=shapes[k % 3], peak=peak).x_lnd
        for k, (name, n_layers) in enumerate(site_layers.items())
    }  # fmt: skip
    names = tuple(f"class{c}" for c in range(n_classes))
    logits = synthetic_answer_logits(labels, n_classes, seed=seed)
    return InMemoryStore(tensor_run(sites, labels, names, answer_logits=logits, model_id="synthetic"))


# --- activations given whole: a realistic spectrum ------------------------------------------------
class SyntheticSite(NamedTuple):
    """One site's activations ``[L, N, D]`` (float32 holding bf16-exact values) and its signal curve."""

    x_lnd: torch.Tensor
    strength_l: np.ndarray


def signal_curve(n_layers: int, shape: str, peak: float) -> np.ndarray:
    """Per-layer signal strength: ``rise`` (grows then plateaus), ``arch`` (peaks mid-depth) or ``late``."""
    t = np.linspace(0.0, 1.0, n_layers)
    if shape == "rise":
        curve = 0.35 + 0.65 * (1 - np.exp(-4 * t))
    elif shape == "arch":
        curve = 0.45 + 0.55 * np.sin(np.pi * np.clip(0.15 + 0.85 * t, 0, 1))
    elif shape == "late":
        curve = 0.2 + 0.8 * t**1.5
    else:
        raise ValueError(f"unknown curve shape {shape!r}")
    return peak * curve


def synthetic_labels(n_samples: int, n_classes: int, seed: int) -> np.ndarray:
    """Balanced-ish labels (each class at least twice when possible)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n_samples) % n_classes
    return rng.permutation(labels).astype(np.int64)


def synthetic_site(
    labels: np.ndarray, n_layers: int, hidden: int, *, seed: int, curve: str = "rise", peak: float = 1.0,
    decay: float = 1.0, rho: float = 0.9, n_signal: int = 6, label_noise: float = 0.1, n_massive: int = 3,
) -> SyntheticSite:  # fmt: skip
    """Activations of one site for the samples ``labels`` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)  # the large draws: torch's generator and matmuls are faster
    n_samples = labels.shape[0]
    n_classes = int(labels.max()) + 1
    basis = torch.linalg.qr(torch.randn(hidden, hidden, generator=gen))[0]
    scale = (torch.arange(1, hidden + 1, dtype=torch.float32) ** (-decay / 2)) * np.sqrt(hidden / 4)
    directions = basis[:, torch.from_numpy(rng.choice(hidden, size=n_signal, replace=False))]
    means = torch.from_numpy(rng.standard_normal((n_classes, n_signal)).astype(np.float32))
    noisy = labels.copy()
    flip = rng.random(n_samples) < label_noise
    noisy[flip] = rng.integers(0, n_classes, int(flip.sum()))
    signal_nd = means[torch.from_numpy(noisy)] @ directions.T
    massive = torch.from_numpy(rng.choice(hidden, size=n_massive, replace=False))
    strength = signal_curve(n_layers, curve, peak)
    z = torch.randn(n_samples, hidden, generator=gen)
    out = torch.empty(n_layers, n_samples, hidden)
    for layer in range(n_layers):
        if layer:
            z = rho * z + np.sqrt(1 - rho**2) * torch.randn(n_samples, hidden, generator=gen)
        x = torch.addmm(signal_nd, z * scale, basis.T, beta=float(strength[layer]))
        x[:, massive] = 40.0 * (1 + 0.05 * x[:, massive])
        out[layer] = x
    x_lnd = out.to(torch.bfloat16).float()
    return SyntheticSite(x_lnd, strength)


def synthetic_answer_logits(labels: np.ndarray, n_classes: int, *, seed: int, accuracy: float = 0.65) -> torch.Tensor:
    """Candidate logits whose argmax is right about ``accuracy`` of the time (a model's own answer)."""
    rng = np.random.default_rng(seed)
    answer = np.where(rng.random(labels.shape[0]) < accuracy, labels, rng.integers(0, n_classes, labels.shape[0]))
    logits = rng.normal(0.0, 0.5, (labels.shape[0], n_classes)).astype(np.float32)
    logits[np.arange(labels.shape[0]), answer] += 2.0
    return torch.from_numpy(logits)


# --- activations drawn per sample: batch-independent ----------------------------------------------
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


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
