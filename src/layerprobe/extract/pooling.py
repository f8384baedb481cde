"""Per-image token means of a vision or connector output (what the capture's hooks store).

The adapter says which tokens belong to which image as a 0/1 ``(B, R*N)`` matrix
(:meth:`~layerprobe.extract.model.adapters.base.Adapter.pool_weights`); :class:`Pooling` holds
it, built once per batch and output shape, and pools any output of that shape.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class Pooling(NamedTuple):
    """The per-image token mean of one output shape, from the adapter's 0/1 ``(B, R*N)`` matrix.

    A ``(rows, tokens, D)`` output that flattens to ``(R*N, D)`` without a copy is pooled by one
    matmul with that matrix. SigLIP-style towers hand back ``(R, N, D)`` views of channel-first
    memory (strides ``(N*D, 1, N)``, from the patch convolution), where flattening copied the whole
    activation on every layer (9 ms a 32-image run of the tiny gemma3 benchmark model, more than the
    pooling itself); those are summed per row by one ``bmm`` that reads the strided rows in place,
    then per image (rows of one image: its crops). In bf16 the row sums are rounded to bf16 before
    the crops are added in fp32; with one row per image both ways round once.
    """

    w_bn: torch.Tensor
    """``(B, R*N)`` 0/1 in the activations' dtype (exact in bf16; the matmul accumulates in fp32)."""
    count_b1: torch.Tensor
    """``(B, 1)`` float32 tokens pooled per image."""
    keep_r1n: torch.Tensor | None
    """``(R, 1, N)`` 0/1 tokens kept per row, for outputs that do not flatten (else None)."""
    owner_br: torch.Tensor | None
    """``(B, R)`` float32 row -> image, or None where row ``r`` is image ``r``."""

    @classmethod
    def of(cls, w_bn: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype) -> Pooling:
        count_b1 = w_bn.sum(1, keepdim=True)
        if len(shape) != 3:
            return cls(w_bn.to(dtype), count_b1, None, None)
        n_images, (n_rows, n_tokens) = w_bn.shape[0], shape[:2]
        w_brn = w_bn.view(n_images, n_rows, n_tokens)
        owner_br = w_brn.amax(2)  # pool_weights gives every row to one image (its crop) or to none
        if bool((owner_br.sum(0) > 1).any()):  # a row shared by images cannot be summed once per row
            return cls(w_bn.to(dtype), count_b1, None, None)
        identity = n_rows == n_images and torch.equal(owner_br, torch.eye(n_images, device=w_bn.device, dtype=owner_br.dtype))
        keep = w_brn.sum(0).unsqueeze(1).to(dtype)
        return cls(w_bn.to(dtype), count_b1, keep, None if identity else owner_br)

    def mean(self, h: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` float32 per-image means of ``h`` (of the shape this pooling was made for)."""
        if self.keep_r1n is None or _flattens(h):
            return (self.w_bn @ h.reshape(-1, h.shape[-1])).float() / self.count_b1
        sums_rd = torch.bmm(self.keep_r1n, h).squeeze(1).float()
        return (sums_rd if self.owner_br is None else self.owner_br @ sums_rd) / self.count_b1


def _flattens(h: torch.Tensor) -> bool:
    """Whether ``(R, N, D)`` ``h`` reshapes to ``(R*N, D)`` as a view (no copy)."""
    return h.shape[0] == 1 or h.shape[1] == 1 or h.stride(0) == h.shape[1] * h.stride(1)
