"""Batched linear probes agree with scikit-learn; label-shuffled controls land at chance."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from layerprobe.probe.config import PRESETS, LinearSpec
from layerprobe.probe.engine import Stream, train_mlp_group
from layerprobe.probe.features import Features, balanced_class_weight, prepare_features
from layerprobe.probe.linear import fit_linear_group
from layerprobe.probe.metrics import classification_metrics
from layerprobe.probe.reference import sklearn_linear_probe
from layerprobe.probe.splits import make_splits
from layerprobe.testing.stores import synthetic_labels, synthetic_site


def _features(labels: np.ndarray, n_layers: int, d: int, seed: int, peak: float = 0.8) -> Features:
    n_classes = int(labels.max()) + 1
    site = synthetic_site(labels, n_layers, d, seed=seed, peak=peak)
    split = make_splits(labels, [""] * labels.size, np.ones(labels.size, bool), class_names=[str(c) for c in range(n_classes)])[0]
    return prepare_features(site.x_lnd, labels, split)


@pytest.mark.parametrize(("n_classes", "class_weight"), [(2, None), (3, None), (3, "balanced")])
def test_linear_matches_sklearn(n_classes: int, class_weight: str | None) -> None:
    labels = synthetic_labels(500, n_classes, seed=n_classes)
    if class_weight:  # make it imbalanced so the weights matter
        labels = np.where(np.arange(labels.size) % 5 == 0, 0, labels)
    features = _features(labels, n_layers=3, d=48, seed=n_classes)
    weight = balanced_class_weight(features.y_train, n_classes) if class_weight else None
    ours = fit_linear_group(features, LinearSpec(), n_classes=n_classes, class_weight=weight)
    assert bool(ours.converged.all())
    m_ours = classification_metrics(ours.test_prob, features.y_test)
    for layer in range(3):
        x = [t[layer].double().numpy() for t in (features.train, features.val, features.test)]
        theirs = sklearn_linear_probe(
            x[0], features.y_train.numpy(), x[1], features.y_val.numpy(), x[2], n_classes=n_classes, class_weight=class_weight,
        )  # fmt: skip
        m_theirs = classification_metrics(torch.from_numpy(theirs.test_prob)[None].float(), features.y_test)
        assert float(ours.chosen_c[layer]) == theirs.c
        assert abs(float(m_ours.accuracy[layer] - m_theirs.accuracy[0])) <= 0.01
        assert abs(float(m_ours.auc[layer] - m_theirs.auc[0])) <= 0.01
        np.testing.assert_allclose(ours.test_prob[layer].numpy(), theirs.test_prob, atol=0.02)


def test_linear_probe_learns_and_c_selection_uses_validation() -> None:
    labels = synthetic_labels(400, 2, seed=5)
    features = _features(labels, n_layers=2, d=32, seed=5, peak=2.0)
    result = fit_linear_group(features, LinearSpec(cs=(1e-4, 1.0)), n_classes=2)
    acc = classification_metrics(result.test_prob, features.y_test).accuracy
    assert (acc > 0.6).all() and acc[-1] > 0.8
    assert set(result.chosen_c.tolist()) <= {1e-4, 1.0}


def test_label_shuffled_control_is_at_chance() -> None:
    labels = synthetic_labels(1000, 2, seed=11)
    site = synthetic_site(labels, 2, 32, seed=11, peak=2.0)
    shuffled = np.random.default_rng(0).permutation(labels)
    spec = replace(PRESETS["fast"], hidden=32, batch_size=64, epochs=20, lr=3e-3)
    for targets, expect_signal in ((labels, True), (shuffled, False)):
        split = make_splits(targets, [""] * targets.size, np.ones(targets.size, bool), class_names=["0", "1"])[0]
        feats = prepare_features(site.x_lnd, targets, split)
        linear = classification_metrics(fit_linear_group(feats, LinearSpec(), n_classes=2).test_prob, feats.y_test)
        mlp = classification_metrics(train_mlp_group(feats, [Stream(0, 0), Stream(1, 0)], [spec], n_classes=2).test_prob, feats.y_test)
        for m in (linear, mlp):
            if expect_signal:
                assert (m.accuracy > 0.75).all()
            else:  # 200 test samples: chance is 0.5 +- 0.035 (1 sd); allow 3 sd
                assert ((m.accuracy - 0.5).abs() <= 0.105).all(), m.accuracy
                assert ((m.auc - 0.5).abs() <= 0.105).all(), m.auc
