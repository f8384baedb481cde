"""A probe's randomness is a function of its seed alone: initial weights, batch order, dropout masks.

The batched engine and the one-at-a-time :class:`~layerprobe.probe.reference.ReferenceProbe` draw
from these functions in the same order, so a seed gives the same probe however it is trained and
whatever it is grouped with (up to floating-point summation order).
- Init: ``torch.nn.Linear``'s default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases,
  drawn on the CPU (same numbers on every device) in the order w1, b1, w2, b2.
- Batch order: one ``randperm`` of the training rows per epoch, from its own CPU generator, so
  changing dropout or the width does not change the order.
- Dropout: one ``rand(batch, hidden)`` per step from a generator on the training device; a unit is
  kept where ``u >= p``. Probes with the same seed share masks (and differ in p, if at all).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

_ORDER_STREAM = 0x9E3779B1
_DROPOUT_STREAM = 0x85EBCA77


class MlpInit(NamedTuple):
    """Initial parameters of one probe, in ``torch.nn.Linear`` layout (weight is [out, in])."""

    w1_hd: torch.Tensor
    b1_h: torch.Tensor
    w2_ch: torch.Tensor
    b2_c: torch.Tensor


def init_mlp(seed: int, d_in: int, hidden: int, n_classes: int) -> MlpInit:
    """Initial weights of the probe with ``seed`` (fp32, CPU)."""
    gen = torch.Generator().manual_seed(seed)

    def uniform(shape: tuple[int, ...], fan_in: int) -> torch.Tensor:
        bound = 1.0 / math.sqrt(fan_in)
        return torch.rand(shape, generator=gen).mul_(2 * bound).sub_(bound)

    return MlpInit(uniform((hidden, d_in), d_in), uniform((hidden,), d_in), uniform((n_classes, hidden), hidden), uniform((n_classes,), hidden))


def epoch_orders(seed: int, n_rows: int, epochs: int) -> torch.Tensor:
    """``[epochs, n_rows]`` int64: the order training rows are visited in each epoch (CPU)."""
    gen = torch.Generator().manual_seed((seed * 2 + 1) ^ _ORDER_STREAM)
    return torch.stack([torch.randperm(n_rows, generator=gen) for _ in range(epochs)])


def dropout_generator(seed: int, device: torch.device | str) -> torch.Generator:
    """The generator that draws the probe's dropout uniforms, one ``rand(batch, hidden)`` per step."""
    return torch.Generator(device=device).manual_seed((seed * 2 + 1) ^ _DROPOUT_STREAM)
