"""Regression: linear probes on slabs wider than the training split (d > n_train).

Tiny stores and few-shot datasets have more features than training rows; the Nyström
preconditioner's Cholesky used to fail there (fp32 sketch rounding ~ the shift).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from layerprobe.probe.config import LinearSpec
from layerprobe.probe.features import prepare_features
from layerprobe.probe.linear import fit_linear_group
from layerprobe.probe.metrics import classification_metrics
from layerprobe.probe.reference import sklearn_linear_probe
from layerprobe.probe.splits import make_splits
from layerprobe.testing.stores import synthetic_labels, synthetic_site


@pytest.mark.parametrize(("d", "seed"), [(64, 0), (32, 1)])
def test_linear_probe_wider_than_train_split_matches_sklearn(d: int, seed: int) -> None:
    # Sketch rank k = min(64, d) = d here: the configuration that failed before the fix.
    labels = synthetic_labels(36, 3, seed=seed)
    site = synthetic_site(labels, 2, d, seed=seed, peak=2.0)
    split = make_splits(labels, [""] * labels.size, np.ones(labels.size, bool), class_names=["a", "b", "c"])[0]
    features = prepare_features(site.x_lnd, labels, split)
    assert features.train.shape[-1] > features.train.shape[-2]  # d > n_train: rank-deficient Hessian
    ours = fit_linear_group(features, LinearSpec(), n_classes=3)
    assert torch.isfinite(ours.test_prob).all()
    for layer in range(2):
        x = [t[layer].double().numpy() for t in (features.train, features.val, features.test)]
        theirs = sklearn_linear_probe(x[0], features.y_train.numpy(), x[1], features.y_val.numpy(), x[2], n_classes=3, class_weight=None)
        acc_ours = classification_metrics(ours.test_prob[layer : layer + 1], features.y_test).accuracy[0]
        acc_theirs = classification_metrics(torch.from_numpy(theirs.test_prob)[None].float(), features.y_test).accuracy[0]
        assert abs(float(acc_ours - acc_theirs)) <= 0.1  # ~7 test rows: one row is 0.14
