"""Synthetic activations with a realistic spectrum, for tests and benchmarks (no model needed).

What makes them realistic enough to tune and time probes on:
- a power-law covariance spectrum (eigenvalue i ~ i^-decay, decay ~1 as measured on transformer
  residual streams) in a random orthonormal basis, plus a few "massive activation" dimensions with
  large offsets and scales, so standardisation and conditioning matter as they do on real features;
- layers that evolve (each layer's noise is an AR(1) step from the previous layer's), so
  neighbouring layers are correlated;
- a class signal of layer-dependent strength (a curve per site) along a few random directions
  spread over the spectrum, and label noise, so probe accuracy sits well below 100% and moves with
  depth, like the curves of the paper.
Everything is drawn from ``numpy.random.default_rng(seed)`` and ``torch.Generator().manual_seed(seed)``;
values are rounded to bf16 as a store keeps them.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch


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


class SyntheticMeta(NamedTuple):
    """The run-metadata fields the probe sweep reads (a stand-in for ``layerprobe.store.RunMeta``)."""

    model_id: str
    model_hash: str
    adapter: str | None
    adapter_hash: str | None
    dataset_name: str
    manifest_sha256: str
    prompt_template: str
    class_names: tuple[str, ...]


class SyntheticSiteSpec(NamedTuple):
    """A stand-in for ``layerprobe.store.SiteSpec``."""

    name: str
    layer_names: tuple[str, ...]
    hidden: int


class SyntheticStore:
    """An in-memory object with the ``Store`` reading interface the probe sweep uses."""

    def __init__(self, sites: dict[str, torch.Tensor], labels: np.ndarray, class_names: tuple[str, ...], *,
                 answer_logits: torch.Tensor, splits: tuple[str, ...] | None = None, model_id: str = "synthetic") -> None:  # fmt: skip
        self._slabs = sites
        self.labels = np.asarray(labels, dtype=np.int64)
        self.n_samples = int(self.labels.shape[0])
        self.class_names = tuple(class_names)
        self.ids = tuple(f"s{i:06d}" for i in range(self.n_samples))
        self.splits = splits if splits is not None else ("",) * self.n_samples
        self.committed = np.ones(self.n_samples, dtype=bool)
        self.skipped = np.zeros(self.n_samples, dtype=bool)
        self.valid = self.committed & ~self.skipped
        self.sites = {name: SyntheticSiteSpec(name, tuple(str(i) for i in range(x.shape[0])), int(x.shape[2])) for name, x in sites.items()}
        self.meta = SyntheticMeta(model_id, "0" * 64, None, None, "synthetic", "0" * 64, "{image}", self.class_names)
        self._answer_logits = answer_logits

    def read_slab(self, site: str, layer: int, dtype: torch.dtype = torch.float32, device: str = "cpu") -> torch.Tensor:
        return self._slabs[site][layer].to(device=device, dtype=dtype)

    def read_slabs(self, site: str, layers: list[int]) -> torch.Tensor:
        return self._slabs[site][list(layers)]

    def answer_logits(self) -> torch.Tensor:
        return self._answer_logits


def synthetic_answer_logits(labels: np.ndarray, n_classes: int, *, seed: int, accuracy: float = 0.65) -> torch.Tensor:
    """Candidate logits whose argmax is right about ``accuracy`` of the time (a model's own answer)."""
    rng = np.random.default_rng(seed)
    answer = np.where(rng.random(labels.shape[0]) < accuracy, labels, rng.integers(0, n_classes, labels.shape[0]))
    logits = rng.normal(0.0, 0.5, (labels.shape[0], n_classes)).astype(np.float32)
    logits[np.arange(labels.shape[0]), answer] += 2.0
    return torch.from_numpy(logits)


def synthetic_store(n_samples: int, hidden: int, site_layers: dict[str, int], *, n_classes: int = 2, seed: int = 0,
                    peak: float = 1.0) -> SyntheticStore:  # fmt: skip
    """An in-memory store with one synthetic site per entry of ``site_layers`` (name -> n_layers)."""
    labels = synthetic_labels(n_samples, n_classes, seed)
    shapes = ("rise", "arch", "late")
    sites = {
        name: synthetic_site(labels, n_layers, hidden, seed=seed + 1 + k, curve=shapes[k % 3], peak=peak).x_lnd
        for k, (name, n_layers) in enumerate(site_layers.items())
    }  # fmt: skip
    names = tuple(f"class{c}" for c in range(n_classes))
    return SyntheticStore(sites, labels, names, answer_logits=synthetic_answer_logits(labels, n_classes, seed=seed))


def write_store(path: str | Path, sites: dict[str, torch.Tensor], labels: np.ndarray, class_names: tuple[str, ...], *,
                answer_logits: torch.Tensor, splits: tuple[str, ...] | None = None, chunk_samples: int | None = None,
                model_id: str = "synthetic/probe-bench", dataset_name: str = "synthetic") -> Path:  # fmt: skip
    """Write activations ``site -> [L, N, D]`` as a real store through ``StoreWriter`` (bf16 bits)."""
    from layerprobe.store import RunMeta, SampleInfo, SiteSpec, StoreWriter

    n = int(labels.shape[0])
    meta = RunMeta(
        model_id=model_id, model_revision=None, model_hash="0" * 64, model_type="synthetic", adapter=None,
        adapter_hash=None, dataset_name=dataset_name, manifest_sha256="0" * 64, prompt_template="Which class? {image}",
        candidates=class_names, candidate_token_ids=tuple(range(len(class_names))), class_names=class_names,
    )  # fmt: skip
    specs = tuple(SiteSpec(name, tuple(str(i) for i in range(x.shape[0])), int(x.shape[2])) for name, x in sites.items())
    samples = SampleInfo(tuple(f"s{i:06d}" for i in range(n)), np.asarray(labels, dtype=np.int64), splits or ("",) * n)
    with StoreWriter.open(path, meta, specs, samples, chunk_samples) as writer:
        for start, stop in writer.pending_blocks():
            acts = {name: x[:, start:stop].to(torch.bfloat16) for name, x in sites.items()}
            logits = answer_logits[start:stop].float().numpy()
            writer.write(start, acts, logits, ["0" * 64] * (stop - start), np.zeros(stop - start, dtype=bool))
    return Path(path)
