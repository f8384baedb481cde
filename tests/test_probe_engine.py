"""The batched MLP engine equals one-by-one ReferenceProbe training (fp32).

Tolerance: predicted probabilities agree to 1e-5 absolute (observed ~1e-7: the only differences
are float summation order in the batched matmuls and the fused optimizer).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from layerprobe.probe.config import PRESETS, ProbeSpec
from layerprobe.probe.engine import BF16_MIN_BATCH, Stream, matmul_dtype, train_mlp_group
from layerprobe.probe.features import Features, balanced_class_weight, prepare_features
from layerprobe.probe.metrics import classification_metrics
from layerprobe.probe.optim import BatchedAdamW
from layerprobe.probe.reference import ReferenceProbe
from layerprobe.probe.schedule import lr_factor, warmup_steps
from layerprobe.probe.splits import make_splits
from layerprobe.testing.stores import synthetic_labels, synthetic_site

TOL = 1e-5


def _features(n: int = 100, d: int = 24, n_layers: int = 3, n_classes: int = 3, seed: int = 0) -> Features:
    labels = synthetic_labels(n, n_classes, seed)
    site = synthetic_site(labels, n_layers, d, seed=seed + 1, peak=1.5, n_massive=1)
    split = make_splits(labels, [""] * n, np.ones(n, bool), class_names=[str(c) for c in range(n_classes)], seed=seed)[0]
    return prepare_features(site.x_lnd, labels, split)


def _reference(features: Features, stream: Stream, spec: ProbeSpec, n_classes: int, weight: torch.Tensor | None) -> ReferenceProbe:
    probe = ReferenceProbe(features.train.shape[2], n_classes, spec, stream.seed, class_weight=weight)
    return probe.fit(features.train[stream.layer], features.y_train, features.val[stream.layer], features.y_val)


SPEC = ProbeSpec(name="t", hidden=16, epochs=2, batch_size=4, lr=3e-3)
MIXED = [SPEC, replace(SPEC, lr=1e-2, weight_decay=0.2, dropout=0.4), replace(SPEC, dropout=0.0)]
CASES = {  # name -> (variants, class-balanced loss)
    "uniform lr (fused AdamW)": ([SPEC], False),
    "mixed lr/decay/dropout, balanced": (MIXED, True),
    "early stopping + best snapshot": ([replace(SPEC, lr=5e-2, epochs=8, patience=2, restore_best=True)], False),
    "batch 7 (ragged last batch)": ([replace(SPEC, batch_size=7)], False),
}


@pytest.mark.parametrize("case", list(CASES))
def test_batched_equals_one_by_one(case: str) -> None:
    features = _features()
    variants, balanced = CASES[case]
    weight = balanced_class_weight(features.y_train, 3) if balanced else None
    streams = [Stream(0, 0), Stream(2, 0), Stream(1, 7)]
    result = train_mlp_group(features, streams, variants, n_classes=3, class_weight=weight)
    for g, stream in enumerate(streams):
        for q, spec in enumerate(variants):
            p = g * len(variants) + q
            ref = _reference(features, stream, spec, 3, weight)
            torch.testing.assert_close(result.test_prob[p], ref.predict_proba(features.test[stream.layer]), atol=TOL, rtol=0)
            torch.testing.assert_close(result.val_prob[p], ref.predict_proba(features.val[stream.layer]), atol=TOL, rtol=0)
            assert int(result.best_epoch[p]) == ref.best_epoch
    if case.startswith("early"):
        assert result.best_epoch.min() < variants[0].epochs, "the case should exercise early stopping"


def test_a_probe_does_not_depend_on_its_group() -> None:
    features = _features(n_layers=4)
    alone = train_mlp_group(features, [Stream(3, 5)], [SPEC], n_classes=3)
    grouped = train_mlp_group(features, [Stream(0, 1), Stream(3, 5), Stream(1, 5)], [SPEC], n_classes=3)
    torch.testing.assert_close(grouped.test_prob[1], alone.test_prob[0], atol=TOL, rtol=0)
    assert not torch.allclose(grouped.test_prob[0], grouped.test_prob[1])


@pytest.mark.parametrize("fused", [True, False])
def test_batched_adamw_equals_torch_adamw(fused: bool) -> None:
    torch.manual_seed(0)
    params = [torch.randn(3, 5, 4), torch.randn(3, 1, 4)]
    ref_params = [p.clone().requires_grad_() for p in params]
    lr, wd = 0.01, 0.05
    opt = BatchedAdamW(params, torch.full((3,), lr), torch.full((3,), wd), allow_fused=fused)
    assert opt.fused == fused
    ref = torch.optim.AdamW(ref_params, lr=lr, weight_decay=wd)
    for step in range(5):
        grads = [torch.randn_like(p) for p in params]
        factor = 0.5 + 0.1 * step
        opt.step(grads, factor)
        for p, g in zip(ref_params, grads):
            p.grad = g.clone()
        for group in ref.param_groups:
            group["lr"] = lr * factor
        ref.step()
    for p, r in zip(params, ref_params):
        torch.testing.assert_close(p, r.detach(), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("fused", [True, False])
def test_per_probe_learning_rates(fused: bool) -> None:
    """Probes with their own lr and weight decay (the fused path: one kernel call per distinct pair)
    move exactly as one torch AdamW per probe; a probe with lr 0 does not move."""
    torch.manual_seed(1)
    lrs, wds = torch.tensor([0.01, 0.0, 0.03, 0.01]), torch.tensor([0.05, 0.0, 0.0, 0.05])
    params = [torch.randn(4, 5, 3), torch.randn(4, 1, 3)]
    start = [p.clone() for p in params]
    opt = BatchedAdamW(params, lrs, wds, allow_fused=fused)
    assert opt.fused == fused
    refs = [[p[i].clone().requires_grad_() for p in params] for i in range(4)]
    ref_opts = [torch.optim.AdamW(r, lr=float(lrs[i]), weight_decay=float(wds[i])) for i, r in enumerate(refs)]
    for step in range(4):
        grads = [torch.randn_like(p) for p in params]
        opt.step(grads, 0.5 + 0.2 * step)
        for i, (r, o) in enumerate(zip(refs, ref_opts)):
            for t, g in zip(r, grads):
                t.grad = g[i].clone()
            o.param_groups[0]["lr"] = float(lrs[i]) * (0.5 + 0.2 * step)
            o.step()
    for i in range(4):
        for p, r in zip(params, refs[i]):
            torch.testing.assert_close(p[i], r.detach(), atol=1e-6, rtol=1e-6)
    assert all(torch.equal(p[1], s[1]) for p, s in zip(params, start))


def test_schedule_warmup_then_cosine() -> None:
    total, warm = 100, warmup_steps(100, 0.05)
    assert warm == 5
    assert lr_factor(0, total, warm) == 0.0
    assert lr_factor(2, total, warm) == pytest.approx(0.4)
    assert lr_factor(5, total, warm) == pytest.approx(1.0)
    assert lr_factor(5 + 95 // 2, total, warm) == pytest.approx(0.5 * (1 + math.cos(math.pi * 47 / 95)))
    assert lr_factor(100, total, warm) == pytest.approx(0.0, abs=1e-12)
    values = [lr_factor(s, total, warm) for s in range(warm, total)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_bf16_matmuls_match_fp32_accuracy() -> None:
    features = _features(n=400, d=64, n_layers=2, n_classes=2)
    spec = replace(PRESETS["fast"], hidden=32, epochs=15, batch_size=64, lr=3e-3)
    streams = [Stream(0, 0), Stream(1, 0)]
    fp32 = train_mlp_group(features, streams, [spec], n_classes=2)
    bf16 = train_mlp_group(features.to(torch.bfloat16), streams, [spec], n_classes=2)
    acc32 = classification_metrics(fp32.test_prob, features.y_test).accuracy
    acc16 = classification_metrics(bf16.test_prob, features.y_test).accuracy
    assert (acc32 - acc16).abs().max() <= 0.04
    assert (fp32.test_prob - bf16.test_prob).abs().mean() < 0.05


def test_matmul_dtype_policy() -> None:
    assert matmul_dtype("cpu", 4)[0] == torch.float32
    assert matmul_dtype("cpu", 4, "bfloat16")[0] == torch.bfloat16
    assert matmul_dtype("cpu", 512, "float32")[0] == torch.float32
    dtype, reason = matmul_dtype("cpu", BF16_MIN_BATCH)
    assert reason and dtype in (torch.float32, torch.bfloat16)
