"""Batched MLP probe training: all probes that read one slab train in the same matmuls.

A group is G *streams* x Q *variants* = P probes (probe ``p = g * Q + q``). A stream is one
(layer, seed): the rows it sees (the seed's batch order) and its dropout draws. Variants differ only
in lr, weight decay and dropout, so they share a stream's input batch.

Layout and why
- Parameters are probe-major (``w1 [P, H, D]`` as ``nn.Linear`` stores it, ``b1 [P, 1, H]``,
  ``w2 [P, H, C]``, ``b2 [P, 1, C]``): each probe's rows are contiguous, which the fused AdamW
  kernel needs to give probes their own lr.
- The first layer runs as one GEMM per stream, ``W[g] @ x^T`` with ``W [G, Q*H, D]`` (the Q probes
  of stream g stacked, a view of the probe-major ``w1`` for any Q) and ``x [G, B, D]``; streams
  (layers, seeds) are the batch axis of one ``bmm``. In bf16 ``W`` is a contiguous bf16 copy of the
  fp32 master weights that the optimizer refreshes as it updates them (``BatchedAdamW(cast=...)``);
  in fp32 it is the master weights themselves.
- Hidden activations are transposed, ``[P, H, B]``, so the weight gradient ``da [G, Q*H, B] @ x``
  lands probe-major with no transposed batch operand (``x^T @ da`` made the GEMM copy ``x`` first:
  3.1 vs 2.1 ms for 8 x 256 x 4096 x 256 in bf16).
- The second layers are one ``bmm`` over probes.
- The loss is the sum of the probes' mean cross-entropies. Probes share no parameters, so each
  probe's gradient is exactly its own loss's gradient.
- The backward pass is written out (two matmuls and a mask) instead of autograd: no gradient with
  respect to the features is needed, gradients land in preallocated buffers (fresh large
  allocations cost page faults on every step on CPU), and the matmul dtype is under control.
  ReLU and dropout share one mask: ``h = relu(a) * keep`` with ``keep`` in {0, 1/(1-p)}, so
  ``dh/da = 1/(1-p)`` exactly where ``h > 0``; the scale is folded into ``w2``'s copy.
- Matmuls run in the features' dtype: bf16 (weights and first-layer bias rounded to bf16 for the
  forward pass, as mixed precision does) with fp32 master weights, fp32 hidden activations,
  softmax, loss and optimizer, where the device has native bf16 matmuls and the batch is large
  enough to be compute-bound; fp32 otherwise (see :func:`matmul_dtype`).
- Optimizer: :class:`~layerprobe.probe.optim.BatchedAdamW`, per-probe lr and weight decay.
- Early stopping: validation loss after every epoch; per-probe best epoch, best-state snapshot,
  patience counter; the group stops when every probe has stopped. Stopped probes keep training
  until then (their snapshot is frozen), which costs compute but keeps every matmul dense.
Randomness follows :mod:`layerprobe.probe.seeding`, so a probe's result does not depend on the
probes it is grouped with.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import NamedTuple

import torch

from layerprobe import vocab
from layerprobe.hardware import native_bf16
from layerprobe.probe.batches import Batch, Dropout, Runs, Sampler, Stream
from layerprobe.probe.config import ProbeSpec
from layerprobe.probe.features import Features
from layerprobe.probe.optim import BatchedAdamW, compiled_update_pays
from layerprobe.probe.schedule import lr_factor, warmup_steps
from layerprobe.probe.seeding import init_mlp

BF16_MIN_BATCH = 32
"""Below this batch size a step is bound by the optimizer's memory traffic, not by matmuls: the
bf16 weight and gradient casts cost about what the smaller matmuls save (batch 4: 0.43 ms per
4-probe step either way on this CPU), so ``auto`` keeps fp32, which also keeps the paper preset
identical to the one-by-one reference (docs/LOG.md, "probe")."""
SMALL_FP32_BATCH = 8
"""Up to this batch size an fp32 first layer is computed as ``x @ W^T`` (see :func:`_first_layer`)."""
PREDICT_ROWS = 4096
"""Rows per chunk when predicting, to bound activation memory on large evaluation sets."""


class MlpResult(NamedTuple):
    """Outputs of one group; probe ``p = g * Q + q`` (stream g, variant q)."""

    val_prob: torch.Tensor
    """[P, n_val, C] float32 class probabilities, CPU."""
    test_prob: torch.Tensor
    """[P, n_test, C]"""
    best_epoch: torch.Tensor
    """[P] int64: the epoch (1-based) whose weights are reported; 0 = the initial weights."""
    epochs_run: int
    """Epochs trained before every probe stopped (or all of them)."""
    seconds: float
    """Wall time of the whole group."""
    matmul_flops: float
    """Floating-point operations done in matmuls (training and evaluation)."""


def matmul_dtype(device: torch.device | str, batch_size: int, requested: str = vocab.AUTO) -> tuple[torch.dtype, str]:
    """The matmul dtype for MLP probes and the reason, logged with the results."""
    if requested == vocab.FLOAT32:
        return torch.float32, "float32 requested"
    if requested == vocab.BFLOAT16:
        return torch.bfloat16, "bfloat16 requested"
    if batch_size < BF16_MIN_BATCH:
        return torch.float32, f"batch size {batch_size} < {BF16_MIN_BATCH} is memory-bound; bf16 casts would only add traffic"
    if native_bf16(device):
        return torch.bfloat16, f"{torch.device(device).type} has native bf16 matmuls"
    return torch.float32, f"{torch.device(device).type} has no native bf16 matmuls"


class _Params(NamedTuple):
    """Probe-major fp32 master parameters (probe ``p = g * Q + q``)."""

    w1: torch.Tensor  # [P, H, D]
    b1: torch.Tensor  # [P, 1, H]
    w2: torch.Tensor  # [P, H, C]
    b2: torch.Tensor  # [P, 1, C]


class _Layout(NamedTuple):
    n_streams: int
    n_variants: int
    hidden: int


def train_mlp_group(
    features: Features,
    streams: Sequence[Stream],
    variants: Sequence[ProbeSpec],
    *,
    n_classes: int,
    class_weight: torch.Tensor | None = None,
    allow_fused: bool = True,
) -> MlpResult:
    """Train ``len(streams) * len(variants)`` MLP probes together and predict val and test.

    ``features`` holds standardised inputs in the matmul dtype (its layer axis is what
    ``Stream.layer`` indexes); ``class_weight`` ([C], optional) weights each sample's loss by its class.
    """
    start = time.perf_counter()
    spec = variants[0]
    if any(v.structure() != spec.structure() for v in variants):
        raise ValueError("variants trained together must share hidden, epochs, batch size, warmup and early stopping")
    x_train = features.train
    device, dtype = x_train.device, x_train.dtype
    layout = _Layout(len(streams), len(variants), spec.hidden)
    n_probes = layout.n_streams * layout.n_variants
    params = _init_params(streams, len(variants), spec.hidden, x_train.shape[2], n_classes, device)
    lr_p = torch.tensor([v.lr for v in variants], dtype=torch.float32).repeat(layout.n_streams)
    wd_p = torch.tensor([v.weight_decay for v in variants], dtype=torch.float32).repeat(layout.n_streams)
    drop_q = torch.tensor([v.dropout for v in variants], dtype=torch.float32, device=device)
    dropout = Dropout(drop_q.view(-1, 1, 1), 1 / (1 - drop_q.view(-1, 1, 1)), (1 / (1 - drop_q)).repeat(layout.n_streams).view(n_probes, 1, 1))
    sampler = Sampler(features, streams, spec, class_weight, dropout)
    total = spec.epochs * sampler.steps_per_epoch
    n_warmup = warmup_steps(total, spec.warmup_frac)
    buffers = _Buffers(params, layout, dtype)
    compiled = buffers.w_cast is not None and compiled_update_pays(device, spec.hidden * x_train.shape[2] * total)  # one probe's work
    opt = BatchedAdamW(params, lr_p, wd_p, beta1=spec.beta1, beta2=spec.beta2, eps=spec.eps, allow_fused=allow_fused,
                       cast=buffers.w_cast, compile_cast=compiled)  # fmt: skip
    best = _Best(params, spec)
    flops, step, epochs_run = 0.0, 0, 0
    for epoch in range(spec.epochs):
        for s in range(sampler.steps_per_epoch):
            batch = sampler.batch(epoch, s)
            opt.step(_gradients(batch, dropout, params, layout, buffers), lr_factor(step, total, n_warmup))
            step += 1
            flops += _train_flops(params, batch.x_gbd.shape[1])
        epochs_run = epoch + 1
        if spec.needs_validation:
            logits = _predict(features.val, sampler.runs, params, layout)
            flops += _predict_flops(params, features.val.shape[1])
            best.update(_mean_ce(logits, features.y_val, class_weight), params, epoch + 1)
            if not bool(best.active.any()):
                break
    final = best.params(params)
    val_logits = _predict(features.val, sampler.runs, final, layout)
    test_logits = _predict(features.test, sampler.runs, final, layout)
    flops += _predict_flops(params, features.val.shape[1] + features.test.shape[1])
    best_epoch = best.best_epoch if spec.restore_best else torch.full((n_probes,), epochs_run, dtype=torch.int64)
    return MlpResult(
        torch.softmax(val_logits, dim=-1).cpu(), torch.softmax(test_logits, dim=-1).cpu(),
        best_epoch.cpu(), epochs_run, time.perf_counter() - start, flops,
    )  # fmt: skip


def _init_params(streams: Sequence[Stream], n_variants: int, hidden: int, d_in: int, n_classes: int, device: torch.device) -> _Params:
    n_probes = len(streams) * n_variants
    w1 = torch.empty(n_probes, hidden, d_in)
    b1 = torch.empty(n_probes, 1, hidden)
    w2 = torch.empty(n_probes, hidden, n_classes)
    b2 = torch.empty(n_probes, 1, n_classes)
    inits = {seed: init_mlp(seed, d_in, hidden, n_classes) for seed in {s.seed for s in streams}}
    for g, stream in enumerate(streams):
        init = inits[stream.seed]
        rows = slice(g * n_variants, (g + 1) * n_variants)
        w1[rows].copy_(init.w1_hd)
        b1[rows, 0].copy_(init.b1_h)
        w2[rows].copy_(init.w2_ch.t())
        b2[rows, 0].copy_(init.b2_c)
    return _Params(*(t.to(device) for t in (w1, b1, w2, b2)))


class _Buffers:
    """Preallocated per-step tensors: the first layer's weights and weight gradient in the matmul
    dtype. In bf16 the optimizer keeps ``w_cast`` equal to the fp32 master weights (its ``casts``)
    and takes the bf16 gradient; in fp32 the GEMMs use the master weights themselves."""

    def __init__(self, params: _Params, layout: _Layout, dtype: torch.dtype) -> None:
        self.n_streams, self.dtype = layout.n_streams, dtype
        cast = dtype != params.w1.dtype
        self.dw1 = torch.empty_like(params.w1, dtype=dtype)
        self.w_cast = torch.empty_like(params.w1, dtype=dtype) if cast else None

    def weights(self, params: _Params) -> tuple[torch.Tensor, torch.Tensor]:
        """``W [G, Q*H, D]`` and ``b [G, Q*H, 1]`` for the first-layer GEMM, in the matmul dtype."""
        w = params.w1 if self.w_cast is None else self.w_cast
        return w.view(self.n_streams, -1, w.shape[2]), params.b1.view(self.n_streams, -1, 1).to(self.dtype)

    def grad_w1(self, da_gkb: torch.Tensor, x_gbd: torch.Tensor) -> torch.Tensor:
        """The probe-major first-layer gradient ``da @ x``, in the matmul dtype (``da_gkb``'s)."""
        torch.bmm(da_gkb, x_gbd, out=self.dw1.view(self.n_streams, -1, self.dw1.shape[2]))
        return self.dw1


def _gradients(batch: Batch, dropout: Dropout, params: _Params, layout: _Layout, buffers: _Buffers) -> list[torch.Tensor]:
    """Per-probe gradients of the summed mean cross-entropies on one batch (training mode).

    Hidden activations are kept transposed, ``[P, H, B]``: the first layer is ``W @ x^T``, so its
    weight gradient ``da @ x`` and the second layer's ``h @ dlogits`` read contiguous operands.
    """
    n_streams, n_variants, hidden = layout
    n_probes = n_streams * n_variants
    x_gbd, y_gb, weight_gb, keep_gqhb = batch
    n_rows = x_gbd.shape[1]
    a_gkb = _first_layer(*buffers.weights(params), x_gbd)
    h_phb = torch.empty(n_probes, hidden, n_rows, device=x_gbd.device)
    torch.mul(a_gkb.view(n_streams, n_variants, hidden, n_rows), keep_gqhb, out=h_phb.view(n_streams, n_variants, hidden, n_rows))
    h_phb.clamp_min_(0)  # keep >= 0, so relu(a) * keep == relu(a * keep)
    w2, b2 = params.w2, params.b2
    dlogits_pbc = torch.softmax(torch.baddbmm(b2, h_phb.transpose(1, 2), w2), dim=-1)
    y_pb = y_gb.repeat_interleave(n_variants, dim=0)
    dlogits_pbc.scatter_add_(2, y_pb[:, :, None], torch.full_like(dlogits_pbc[:, :, :1], -1.0))
    if weight_gb is None:
        dlogits_pbc.mul_(1.0 / n_rows)
    else:
        dlogits_pbc.mul_((weight_gb / weight_gb.sum(dim=1, keepdim=True)).repeat_interleave(n_variants, dim=0)[:, :, None])
    dw2 = torch.bmm(h_phb, dlogits_pbc)
    db2 = dlogits_pbc.sum(dim=1, keepdim=True)
    dh_phb = torch.bmm(w2 * dropout.scale_p11, dlogits_pbc.transpose(1, 2))
    # ReLU's own backward kernel: ~3x faster than multiplying by a (h > 0) mask into bf16
    da_phb = torch.ops.aten.threshold_backward(dh_phb, h_phb, 0.0)
    db1 = da_phb.sum(dim=2).view(n_probes, 1, hidden)
    dw1 = buffers.grad_w1(da_phb.to(buffers.dtype).view(n_streams, n_variants * hidden, n_rows), x_gbd)
    return [dw1, db1, dw2, db2]


def _first_layer(w_gkd: torch.Tensor, b_gk1: torch.Tensor, x_gbd: torch.Tensor) -> torch.Tensor:
    """``W @ x^T + b`` as ``[G, K, B]`` (a transposed view when computed the other way round).

    fp32 GEMMs with a batch of 8 or less run about 1.5-2x faster as ``x @ W^T`` (4 x 4 x 1024 x 256:
    69 vs 148 us, the paper preset's shape); every other case is faster as ``W @ x^T`` or equal."""
    if x_gbd.dtype == torch.float32 and x_gbd.shape[1] <= SMALL_FP32_BATCH:
        return torch.baddbmm(b_gk1.transpose(1, 2), x_gbd, w_gkd.transpose(1, 2)).transpose(1, 2)
    return torch.baddbmm(b_gk1, w_gkd, x_gbd.transpose(1, 2))


def _predict(x_lnd: torch.Tensor, runs: Runs, params: _Params, layout: _Layout) -> torch.Tensor:
    """Logits ``[P, n, C]`` in evaluation mode (no dropout), in row chunks, reading the features in place."""
    n_streams, n_variants, hidden = layout
    n_probes = n_streams * n_variants
    w1c_kd = params.w1.to(x_lnd.dtype).view(n_streams, n_variants * hidden, -1).transpose(1, 2)
    b1 = params.b1.view(n_streams, 1, n_variants * hidden)
    w2, b2 = params.w2, params.b2
    out = []
    for lo in range(0, x_lnd.shape[1], PREDICT_ROWS):
        h_gnk = torch.cat([torch.bmm(x_lnd[first : first + count, lo : lo + PREDICT_ROWS], w1c_kd[g : g + count]) for g, first, count in runs.spans()])
        n = h_gnk.shape[1]
        h = h_gnk.float().add_(b1).clamp_min_(0)
        h_pnh = h.view(n_streams, n, n_variants, hidden).permute(0, 2, 1, 3).reshape(n_probes, n, hidden)
        out.append(torch.baddbmm(b2, h_pnh, w2))
    if not out:
        return torch.zeros(n_probes, 0, w2.shape[2], device=w2.device)
    return torch.cat(out, dim=1)


def _mean_ce(logits_pnc: torch.Tensor, y_n: torch.Tensor, class_weight: torch.Tensor | None) -> torch.Tensor:
    """Per-probe mean cross-entropy (class-weighted like the training loss)."""
    nll_pn = -torch.log_softmax(logits_pnc, dim=-1).gather(2, y_n.expand(logits_pnc.shape[0], -1)[:, :, None])[:, :, 0]
    if class_weight is None:
        return nll_pn.mean(dim=1)
    w_n = class_weight.to(y_n.device)[y_n]
    return (nll_pn * w_n).sum(dim=1) / w_n.sum()


def _train_flops(params: _Params, batch: int) -> float:
    n_probes, hidden, d_in = params.w1.shape
    n_classes = params.w2.shape[2]
    return 4.0 * n_probes * batch * d_in * hidden + 6.0 * n_probes * batch * hidden * n_classes


def _predict_flops(params: _Params, rows: int) -> float:
    n_probes, hidden, d_in = params.w1.shape
    n_classes = params.w2.shape[2]
    return 2.0 * n_probes * rows * d_in * hidden + 2.0 * n_probes * rows * hidden * n_classes


class _Best:
    """Per-probe early stopping: best validation loss, its epoch, patience, and (optionally) weights."""

    def __init__(self, params: _Params, spec: ProbeSpec) -> None:
        n_probes = params.w1.shape[0]
        device = params.w1.device
        self.patience = spec.patience
        self.snapshot = [p.clone() for p in params] if spec.restore_best else None
        self.best_loss = torch.full((n_probes,), math.inf, device=device)
        self.best_epoch = torch.zeros(n_probes, dtype=torch.int64, device=device)
        self.waited = torch.zeros(n_probes, dtype=torch.int64, device=device)
        self.active = torch.ones(n_probes, dtype=torch.bool, device=device)

    def update(self, loss_p: torch.Tensor, params: _Params, epoch: int) -> None:
        improved = (loss_p < self.best_loss) & self.active
        self.best_loss = torch.where(improved, loss_p, self.best_loss)
        self.best_epoch = torch.where(improved, torch.full_like(self.best_epoch, epoch), self.best_epoch)
        self.waited = torch.where(improved, torch.zeros_like(self.waited), self.waited + 1)
        if self.patience:
            self.active &= self.waited < self.patience
        if self.snapshot is not None and bool(improved.any()):
            mask = improved.view(-1, 1, 1)
            for saved, current in zip(self.snapshot, params):
                torch.where(mask, current, saved, out=saved)

    def params(self, current: _Params) -> _Params:
        return current if self.snapshot is None else _Params(*self.snapshot)
