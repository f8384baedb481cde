"""The probe grid of a sweep, checked against the stores, and how it is cut into groups.

Grid: stores x sites x layers x kinds x seeds x recipes (hidden widths, lrs). Checking happens
here, before anything is trained: no two stores may hold the same run (their rows would be the
same probes, ``vocab.PROBE_KEY``), every requested site and layer must exist in every store, labels
must agree between stores wherever they name the same sample id, and every split must be usable.

Grouping (why the sizes are what they are)
- Slab groups: consecutive layers of one site read with one ``read_slabs`` call, as many as fit
  half of ``max_memory`` (the slab, its standardised copy and a bf16 copy). Each slab is read once.
- MLP groups: streams (layer x seed) of one slab group trained together, as many as fit the other
  half of ``max_memory``. On a CPU they are further capped so the state every step reads and
  writes (weights, gradient, AdamW moments, bf16 casts) stays within ``CPU_WORKING_SET_BYTES``,
  the bound measured best on a 480 MiB L3 and faster than half the cache on a 32 MiB one.
- Linear groups: layers fitted together, as many as keep their training features in half the
  last-level cache (each L-BFGS iteration reads them twice).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from layerprobe import vocab
from layerprobe.errors import LayerprobeError, ProbeError
from layerprobe.probe.config import ProbeSpec, SweepConfig
from layerprobe.probe.splits import Split, make_splits
from layerprobe.store.fields import source_identity

CPU_WORKING_SET_BYTES = 48 << 20
"""Upper bound of one CPU group's per-step probe state (weights, gradient, moments, casts), the
same whatever the last-level cache. Measured on a 2-vCPU VM whose sysfs reports a 480 MiB L3
(shared with the host's other tenants): per-probe step time was lowest at 32-64 MiB of state for
widths 256-4096, fast and paper presets, and higher in the larger groups that memory alone allowed
(D=4096, batch 59: 1.62 ms a probe-step at 2 probes, 2.32 ms at 8; docs/LOG.md, "sixth session").
On a 2-vCPU AMD EPYC with a 32 MiB L3, capping the state at half that cache (1 probe at 4096 wide,
3 at 1024) made the fast preset's budget samples 1.11-1.22x slower than this bound (docs/LOG.md,
"tenth session"), so the cache size does not enter. A sweep's ``group_probes`` caps the resulting
group size further."""

if TYPE_CHECKING:
    import torch

    from layerprobe.store import RunMeta
    from layerprobe.store.protocol import StoreLike


@dataclass(frozen=True)
class SitePlan:
    """The layers of one site a sweep probes."""

    name: str
    layers: tuple[int, ...]
    layer_names: tuple[str, ...]
    """Names of ``layers`` (same order)."""
    hidden: int


@dataclass(frozen=True, eq=False)
class StorePlan:
    """One store of a sweep, opened and checked."""

    index: int
    path: Path
    store: StoreLike
    """The open store (``layerprobe.store.Store`` or an in-memory test store)."""
    run_id: str
    """Short hash of what the run was (model, adapter, manifest, prompt); stable across copies."""
    splits: tuple[Split, ...]
    sites: tuple[SitePlan, ...]
    n_classes: int


def plan_stores(cfg: SweepConfig, stores: Sequence[StoreLike]) -> list[StorePlan]:
    """Check every store against the config and each other; return what each will probe."""
    run_ids = [run_id(store.meta) for store in stores]
    _check_runs_differ(cfg.stores, run_ids)
    _check_labels_agree(cfg.stores, stores)
    plans = []
    for index, (path, store) in enumerate(zip(cfg.stores, stores)):
        where = f"store {path}"
        n_classes = len(store.class_names)
        splits = make_splits(
            store.labels, store.splits, store.valid, class_names=store.class_names, kfold=cfg.kfold,
            seed=cfg.split_seed, fractions=cfg.split_fractions, where=where,
        )  # fmt: skip
        plans.append(StorePlan(index, Path(path), store, run_ids[index], splits, _site_plans(cfg, store, where), n_classes))
    return plans


def run_id(meta: RunMeta) -> str:
    """12 hex digits identifying a run by model, adapter, manifest and prompt.

    A local model or adapter folder counts by its content hash, not its path (the rule a resume
    applies, ``store.fields.same_source``): the same run has one id wherever its folders are, e.g. a
    study's adapters under two output roots.
    """
    identity = {
        "model_id": source_identity(meta.model_id), "model_hash": meta.model_hash, "adapter": source_identity(meta.adapter),
        "adapter_hash": meta.adapter_hash, "manifest_sha256": meta.manifest_sha256, "prompt_template": meta.prompt_template,
    }  # fmt: skip
    if meta.model_config_hash is not None:  # recorded since it exists; older stores keep their ids
        identity["model_config_hash"] = meta.model_config_hash
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]


def _check_runs_differ(paths: Sequence[Path], run_ids: Sequence[str]) -> None:
    """Two stores of one run (copies) would give the same probes twice, which no table may hold."""
    seen: dict[str, int] = {}
    for index, rid in enumerate(run_ids):
        first = seen.setdefault(rid, index)
        if first != index:
            raise ProbeError(
                f"stores {paths[first]} and {paths[index]} hold the same run (same model, adapter, manifest and prompt; "
                f"run_id {rid}); probe one of them"
            )


def _site_plans(cfg: SweepConfig, store: StoreLike, where: str) -> tuple[SitePlan, ...]:
    available = dict(store.sites)
    wanted = [s for s in (cfg.sites if cfg.sites is not None else tuple(available)) if s != vocab.ANSWER_SITE]
    out = []
    for name in wanted:
        if name not in available:
            raise ProbeError(f"{where} has no site {name!r} (it has: {', '.join(available) or 'none'}); drop it from --sites")
        spec = available[name]
        try:
            layers = cfg.layers.resolve(len(spec.layer_names))
        except LayerprobeError as err:
            raise ProbeError(f"{where}, site {name}: {err}") from None
        out.append(SitePlan(name, layers, tuple(spec.layer_names[i] for i in layers), spec.hidden))
    if not out:
        raise ProbeError(f"{where}: no site to probe; pass --sites with some of: {', '.join(available) or 'none'}")
    return tuple(out)


def _check_labels_agree(paths: Sequence[Path], stores: Sequence[StoreLike]) -> None:
    """A sample id present in several stores of one dataset must carry the same class name in each.

    Stores of different datasets (``meta.dataset_name``) are independent: their ids may collide.
    """
    seen: dict[tuple[str, str], tuple[str, int]] = {}
    for index, store in enumerate(stores):
        names, dataset = store.class_names, store.meta.dataset_name
        for row in np.flatnonzero(np.asarray(store.valid, dtype=bool)):
            sample_id, label = str(store.ids[row]), names[int(store.labels[row])]
            first = seen.setdefault((dataset, sample_id), (label, index))
            if first[0] != label:
                raise ProbeError(
                    f"labels disagree between stores {paths[first[1]]} and {paths[index]}: sample {sample_id!r} is "
                    f"{first[0]!r} in one and {label!r} in the other; probe them in separate sweeps or re-extract one"
                )


def count_probes(cfg: SweepConfig, plans: Sequence[StorePlan]) -> int:
    """Rows of the results table besides the model rows."""
    return sum(len(site.layers) * probes_per_layer(cfg) for plan in plans for site in plan.sites)


def probes_per_layer(cfg: SweepConfig) -> int:
    """Probes (rows) of one (store, site, layer)."""
    return (len(cfg.seeds) * len(cfg.mlp_specs()) if vocab.MLP in cfg.kinds else 0) + (1 if vocab.LINEAR in cfg.kinds else 0)


def layer_chunks(layers: Sequence[int], bytes_per_layer: int, budget: int) -> list[tuple[int, ...]]:
    """Consecutive runs of ``layers`` whose slabs fit ``budget`` bytes (at least one layer each)."""
    per_chunk = max(1, budget // max(1, bytes_per_layer))
    return [tuple(layers[i : i + per_chunk]) for i in range(0, len(layers), per_chunk)]


def mlp_probe_bytes(spec: ProbeSpec, d_in: int, n_eval_rows: int, low_precision: bool) -> int:
    """Memory one MLP probe needs while its group trains (weights, grads, moments, copies, activations)."""
    activations = 4 * spec.hidden * (6 * spec.batch_size + 3 * min(n_eval_rows, 4096))
    return _weight_bytes(spec, d_in, low_precision) + activations


def batch_bytes(spec: ProbeSpec, d_in: int, low_precision: bool) -> int:
    """Memory one stream's training batch takes (its gathered rows, shared by the stream's variants):
    small beside the weights at batch 256, but ``max_steps`` grows the batch with the training set
    (ceil(n / 8) rows: 12,500 on 100,000 rows, 100 MB a stream at width 4,096 in bf16)."""
    return spec.batch_size * d_in * (2 if low_precision else 4)


def _weight_bytes(spec: ProbeSpec, d_in: int, low_precision: bool) -> int:
    """What every training step of one probe reads and writes: fp32 weights, gradient and the two
    moments (16 B a weight), the best-state snapshot, the bf16 weight and gradient casts."""
    per_weight = 16 + (4 if spec.restore_best else 0) + (4 if low_precision else 0)
    return per_weight * (d_in + 1) * spec.hidden


def group_cache_bytes(device: torch.device) -> int | None:
    """``cache_bytes`` of :func:`streams_per_group` for groups trained on ``device``:
    :data:`CPU_WORKING_SET_BYTES` on a CPU, None elsewhere (a GPU's groups are bounded by memory
    alone)."""
    return CPU_WORKING_SET_BYTES if device.type == "cpu" else None


def streams_per_group(spec: ProbeSpec, n_variants: int, d_in: int, n_eval_rows: int, *, budget: int,
                      low_precision: bool, cache_bytes: int | None, cap: int | None) -> int:  # fmt: skip
    """How many streams (each ``n_variants`` probes) train together: as many as fit ``budget``
    bytes of memory and, on a CPU, whose per-step state fits ``cache_bytes``
    (:func:`group_cache_bytes`), then at most ``cap`` probes."""
    per_stream = n_variants * mlp_probe_bytes(spec, d_in, n_eval_rows, low_precision) + batch_bytes(spec, d_in, low_precision)
    count = max(1, budget // per_stream)
    if cache_bytes is not None:
        count = min(count, max(1, cache_bytes // (n_variants * _weight_bytes(spec, d_in, low_precision))))
    if cap is not None:
        count = min(count, max(1, cap // n_variants))
    return count
