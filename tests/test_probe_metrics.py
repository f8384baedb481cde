"""Batched metrics equal scikit-learn's on the same predictions."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from layerprobe.probe.metrics import classification_metrics


def _sklearn(y: np.ndarray, prob: np.ndarray) -> list[float]:
    pred = prob.argmax(axis=1)
    n_classes = prob.shape[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = [
            skm.accuracy_score(y, pred),
            skm.f1_score(y, pred, average="macro"),
            skm.precision_score(y, pred, average="macro"),
            skm.recall_score(y, pred, average="macro"),
        ]
    if len(np.unique(y)) < n_classes:
        out.append(float("nan"))
    elif n_classes == 2:
        out.append(skm.roc_auc_score(y, prob[:, 1]))
    else:
        out.append(skm.roc_auc_score(y, prob, multi_class="ovr", average="macro"))
    return out


def _probabilities(rng: np.random.Generator, n_probes: int, n: int, n_classes: int) -> torch.Tensor:
    logits = torch.from_numpy(rng.normal(size=(n_probes, n, n_classes))).float()
    logits[1] = torch.round(logits[1])  # many ties in scores and in argmax
    logits[2, :, 0] += 20  # always predicts class 0 (precision zero-division for the others)
    logits[3] = 0  # every score tied
    return torch.softmax(logits, dim=-1)


@pytest.mark.parametrize("n_classes", [2, 3, 5])
def test_metrics_equal_sklearn(n_classes: int) -> None:
    rng = np.random.default_rng(n_classes)
    y = rng.integers(0, n_classes, 157)
    prob = _probabilities(rng, 5, y.size, n_classes)
    ours = classification_metrics(prob, torch.from_numpy(y))
    for p in range(prob.shape[0]):
        expected = _sklearn(y, prob[p].numpy())
        got = [float(t[p]) for t in ours]
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_missing_class_gives_nan_auc_and_sklearn_macro_over_present_labels() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)  # classes 0 and 1 only, but 3 columns
    prob = _probabilities(rng, 4, y.size, 3)
    ours = classification_metrics(prob, torch.from_numpy(y))
    assert torch.isnan(ours.auc).all()
    for p in range(prob.shape[0]):
        expected = _sklearn(y, prob[p].numpy())[:4]
        np.testing.assert_allclose([float(t[p]) for t in ours[:4]], expected, atol=1e-12)


def test_perfect_and_inverted_scores() -> None:
    y = torch.tensor([0, 0, 1, 1, 1])
    good = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.2, 0.8], [0.4, 0.6]])
    out = classification_metrics(torch.stack([good, good.flip(1)]), y)
    assert out.accuracy.tolist() == [1.0, 0.0]
    assert out.auc.tolist() == [1.0, 0.0]
    assert out.f1[0] == 1.0
