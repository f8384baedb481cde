"""prepare_features (sums instead of isfinite, two-pass variance) against its plain reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from layerprobe.probe.features import prepare_features, prepare_features_reference
from layerprobe.probe.splits import Split


def _split(n: int, seed: int = 0) -> Split:
    perm = np.random.default_rng(seed).permutation(n)
    a, b = int(n * 0.6), int(n * 0.8)
    return Split(name="t", train=np.sort(perm[:a]), val=np.sort(perm[a:b]), test=np.sort(perm[b:]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_equals_the_reference_with_bad_layers_and_constant_features(dtype):
    torch.manual_seed(0)
    x = (torch.randn(6, 300, 40) * torch.linspace(0.1, 30, 40) + 5).to(dtype)
    x[:, :, 3] = 2.5  # a constant feature: scale 1, values 0 in train
    x[1, 7, 5] = float("nan")  # in some split's rows
    x[2, 299, 0] = float("inf")
    x[4, 10, 10] = -float("inf")
    x[4, 11, 11] = float("nan")
    split, labels = _split(300), np.arange(300) % 3
    fast, ref = prepare_features(x, labels, split), prepare_features_reference(x, labels, split)
    assert fast.n_bad.tolist() == ref.n_bad.tolist() == [0, 1, 1, 0, 2, 0]
    assert fast.finite.tolist() == ref.finite.tolist()
    for a, b in zip(fast[:3], ref[:3], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    for a, b in zip(fast[3:6], ref[3:6], strict=True):
        assert torch.equal(a, b)
    assert float(fast.train[0, :, 3].abs().max()) == 0.0 and float(fast.train[1].abs().max()) == 0.0


def test_a_sum_that_overflows_is_not_a_bad_value():
    x = torch.full((2, 50, 4), 3e38)
    x[1] = torch.randn(50, 4)
    features = prepare_features(x, np.zeros(50, dtype=np.int64), _split(50))
    assert features.n_bad.tolist() == [0, 0] and features.finite.tolist() == [True, True]


def test_one_layer_two_dimensional_input():
    x = torch.randn(80, 8)
    split = _split(80, seed=1)
    fast, ref = prepare_features(x, np.zeros(80, dtype=np.int64), split), prepare_features_reference(x, np.zeros(80, dtype=np.int64), split)
    assert fast.train.shape == (1, 48, 8)
    torch.testing.assert_close(fast.test, ref.test, rtol=1e-5, atol=1e-5)
