"""Probe offline, in bulk: train thousands of probes from activation stores, batched.

Public API::

    SweepConfig, ProbeSpec, LinearSpec, PRESETS       # config (no torch import)
    run_sweep(cfg) -> polars.DataFrame                # stores -> results table (also parquet)
    train_mlp_group(features, streams, variants, ...) # batched MLP probes on tensors
    fit_linear_group(features, spec, ...)             # batched logistic regression on tensors
    prepare_features(x_lnd, labels, split)            # split + standardise (train statistics)
    make_splits(labels, split_column, valid, ...)     # store column / stratified / k-fold
    classification_metrics(prob_pnc, y_n)             # batched, equal to scikit-learn
    ReferenceProbe                                    # slow one-at-a-time MLP probe (tests)

Importing this package is light (config only); the torch-based parts load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from layerprobe.probe.config import PRESETS, LinearSpec, ProbeSpec, SweepConfig, get_preset, parse_memory

_LAZY = {
    "run_sweep": "sweep",
    "sweep_stores": "sweep",
    "train_mlp_group": "engine",
    "Stream": "engine",
    "MlpResult": "engine",
    "fit_linear_group": "linear",
    "LinearResult": "linear",
    "prepare_features": "features",
    "Features": "features",
    "make_splits": "splits",
    "Split": "splits",
    "classification_metrics": "metrics",
    "Metrics": "metrics",
    "ReferenceProbe": "reference",
    "compare_linear_to_sklearn": "reference",
}

__all__ = ["PRESETS", "LinearSpec", "ProbeSpec", "SweepConfig", "get_preset", "parse_memory", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'layerprobe.probe' has no attribute {name!r}")
    return getattr(importlib.import_module(f"layerprobe.probe.{module}"), name)
