"""How many torch threads a sweep uses: sized from the work per step and the cores free.

torch's default (one thread per core) loses badly on small problems when another process keeps a
core busy: every small op waits for the slowest thread (a linear sweep on a busy 2-core CPU took
0.16 s with 1 thread and 10.6 s with 2; an MLP sweep 0.9 s and 20.9 s). So the sweep estimates
the matmul work of one step of its largest problem (an MLP group's training step, a linear
group's L-BFGS iteration) before it starts, gives one thread per
:data:`~layerprobe.hardware.FLOPS_PER_THREAD` of it, at most the cores free now
(:func:`~layerprobe.hardware.free_cores`), and restores torch's count when the sweep ends.
``SweepConfig.threads`` (``--threads``) overrides the choice. On CUDA the host threads only feed
the device: one thread.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from layerprobe import vocab
from layerprobe.errors import LayerprobeError, ProbeError
from layerprobe.hardware import choose_threads, last_level_cache_bytes, torch_threads
from layerprobe.probe.grid import group_cache_bytes, streams_per_group

if TYPE_CHECKING:
    from layerprobe.probe.config import SweepConfig
    from layerprobe.store.protocol import StoreLike

log = logging.getLogger(__name__)
T = TypeVar("T")


def sweep_step_flops(cfg: SweepConfig, stores: Sequence[StoreLike]) -> float:
    """Matmul FLOP of one step of the sweep's largest problem (an estimate from the store sizes)."""
    best = 0.0
    for store in stores:
        n_train = max(1, int(store.n_samples * cfg.split_fractions[0]))
        n_eval = store.n_samples - n_train
        sites = [s for name, s in store.sites.items() if cfg.sites is None or name in cfg.sites]
        for site in sites:
            n_layers, d_in = _n_selected(cfg, len(site.layer_names)), site.hidden
            if vocab.MLP in cfg.kinds:
                best = max(best, _mlp_step_flops(cfg, n_layers, d_in, n_train, n_eval))
            if vocab.LINEAR in cfg.kinds:
                per_layer = 4 * n_train * d_in
                layers_together = min(n_layers, max(1, (last_level_cache_bytes() // 2) // per_layer))
                n_classes = max(2, len(store.class_names))
                best = max(best, 4.0 * n_train * d_in * n_classes * len(cfg.linear.cs) * layers_together)
    return best


def _n_selected(cfg: SweepConfig, n_layers: int) -> int:
    try:
        return len(cfg.layers.resolve(n_layers))
    except LayerprobeError:  # the sweep's plan reports a bad selection; the estimate need not
        return n_layers


def _mlp_step_flops(cfg: SweepConfig, n_layers: int, d_in: int, n_train: int, n_eval: int) -> float:
    best = 0.0
    variants = len(cfg.lrs or (None,))
    for spec in cfg.mlp_specs(n_train):
        batch = min(spec.batch_size, n_train)
        per_group = streams_per_group(
            spec, variants, d_in, n_eval, budget=cfg.max_memory // 2, low_precision=False, cap=cfg.group_probes,
            cache_bytes=group_cache_bytes(cfg.device),
        )  # fmt: skip
        streams = min(per_group, n_layers * len(cfg.seeds))
        best = max(best, 6.0 * batch * d_in * spec.hidden * variants * streams)  # first layer: forward + two backward GEMMs
    return best


def sweep_threads(cfg: SweepConfig, stores: Sequence[StoreLike]) -> tuple[int, str]:
    """(threads, reason) for a sweep of ``cfg`` over ``stores``."""
    if cfg.threads is None and cfg.device.type == "cuda":
        return 1, "CUDA device: host threads only launch kernels"
    return choose_threads(sweep_step_flops(cfg, stores), cfg.threads)


def sized_threads(sweep: Callable[[SweepConfig, list[StoreLike]], T]) -> Callable[[SweepConfig, list[StoreLike]], T]:
    """Decorator: run ``sweep(cfg, stores)`` with :func:`sweep_threads` torch threads, then restore
    torch's thread count (also when the sweep raises)."""

    @functools.wraps(sweep)
    def wrapper(cfg: SweepConfig, stores: list[StoreLike]) -> T:
        if cfg.device is None:  # a study's grid template: each sweep made from it names its device
            raise ProbeError("this sweep config has no device (a template); give it one (cpu, cuda or cuda:N) to run it")
        n, reason = sweep_threads(cfg, stores)
        log.info("probe sweep runs on %d torch thread(s): %s", n, reason)
        with torch_threads(n):
            return sweep(cfg, stores)

    return wrapper
