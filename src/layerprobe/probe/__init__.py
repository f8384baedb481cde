"""Probe offline, in bulk: train thousands of probes from activation stores, batched.

Public API::

    SweepConfig, ProbeSpec, LinearSpec, PRESETS       # config (torch only to parse SweepConfig.device)
    run_sweep(cfg) -> polars.DataFrame                # stores -> results table (also parquet)
    train_mlp_group(features, streams, variants, ...) # batched MLP probes on tensors
    fit_linear_group(features, spec, ...)             # batched logistic regression on tensors
    prepare_features(x_lnd, labels, split)            # split + standardise (train statistics)
    make_splits(labels, split_column, valid, ...)     # store column / stratified / k-fold
    classification_metrics(prob_pnc, y_n)             # batched, equal to scikit-learn
    ReferenceProbe                                    # slow one-at-a-time MLP probe (tests)

Importing this package is light (config only); the torch-based parts load on first use, and
torch itself when a ``SweepConfig`` turns its device string into a ``torch.device``.
"""

from __future__ import annotations

from layerprobe.discovery import lazy_exports
from layerprobe.probe.config import PRESETS, LinearSpec, ProbeSpec, SweepConfig, get_preset, parse_memory

_LAZY_MODULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("sweep", ("run_sweep", "sweep_stores")),
    ("engine", ("train_mlp_group", "Stream", "MlpResult")),
    ("linear", ("fit_linear_group", "LinearResult")),
    ("features", ("prepare_features", "Features")),
    ("splits", ("make_splits", "Split")),
    ("metrics", ("classification_metrics", "Metrics")),
    ("reference", ("ReferenceProbe", "compare_linear_to_sklearn")),
)
"""Sub-module -> the public names it defines, loaded on first use (they import torch)."""
_LAZY: dict[str, str] = {name: module for module, names in _LAZY_MODULES for name in names}

__all__ = ["PRESETS", "LinearSpec", "ProbeSpec", "SweepConfig", "get_preset", "parse_memory", *_LAZY]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
