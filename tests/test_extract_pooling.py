"""Per-image token means (capture.Pooling): strided and flattening layouts give the reference mean."""

from __future__ import annotations

import pytest
import torch

from layerprobe.extract.pooling import Pooling, _flattens


def _weights(crops_b: list[int], n_tokens: int, prefix: int = 0) -> torch.Tensor:
    """0/1 ``(B, R*N)``: image b owns ``crops_b[b]`` consecutive rows; the first ``prefix`` tokens of a row are left out."""
    n_rows = sum(crops_b)
    w = torch.zeros(len(crops_b), n_rows, n_tokens)
    row = 0
    for b, crops in enumerate(crops_b):
        w[b, row : row + crops, prefix:] = 1
        row += crops
    return w.view(len(crops_b), -1)


def _reference(w_bn: torch.Tensor, h_rnd: torch.Tensor) -> torch.Tensor:
    flat = h_rnd.double().reshape(-1, h_rnd.shape[-1])
    return torch.stack([flat[w.bool()].mean(0) for w in w_bn]).float()


@pytest.mark.parametrize("crops_b", [[1, 1, 1], [2, 1, 3]], ids=["one row an image", "crops"])
@pytest.mark.parametrize("prefix", [0, 1], ids=["all tokens", "CLS left out"])
def test_strided_and_contiguous_outputs_give_the_reference_mean(crops_b: list[int], prefix: int) -> None:
    torch.manual_seed(0)
    n_tokens, width = 7, 5
    w_bn = _weights(crops_b, n_tokens, prefix)
    channel_first = torch.randn(sum(crops_b), width, n_tokens)
    strided = channel_first.transpose(1, 2)  # (R, N, D) with strides (N*D, 1, N), as SigLIP towers return it
    contiguous = strided.contiguous()
    assert not _flattens(strided) and _flattens(contiguous)
    pooling = Pooling.of(w_bn, tuple(strided.shape), torch.float32)
    assert (pooling.owner_br is None) == (crops_b == [1, 1, 1])
    want = _reference(w_bn, contiguous)
    for h in (strided, contiguous):
        torch.testing.assert_close(pooling.mean(h), want, rtol=1e-6, atol=1e-6)


def test_bf16_strided_rows_match_the_flattened_matmul_to_one_rounding() -> None:
    torch.manual_seed(1)
    w_bn = _weights([1] * 4, 256)
    strided = torch.randn(4, 384, 256).to(torch.bfloat16).transpose(1, 2)
    pooling = Pooling.of(w_bn, tuple(strided.shape), torch.bfloat16)
    flattened = (pooling.w_bn @ strided.reshape(-1, 384)).float() / pooling.count_b1  # the copying path
    torch.testing.assert_close(pooling.mean(strided), flattened, rtol=2**-8, atol=0)


def test_packed_outputs_pool_by_one_matmul() -> None:
    w_bn = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    h = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    pooling = Pooling.of(w_bn, tuple(h.shape), torch.float32)
    assert pooling.keep_r1n is None
    torch.testing.assert_close(pooling.mean(h), torch.tensor([[2.0, 3.0], [5.0, 6.0]]))


def test_a_row_shared_by_two_images_falls_back_to_the_one_matmul() -> None:
    w_bn = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 1.0, 1.0]])  # row 0's second token belongs to both
    h = torch.arange(2 * 2 * 3, dtype=torch.float32).view(2, 3, 2).transpose(1, 2)  # (2 rows, 2 tokens, 3), strided
    pooling = Pooling.of(w_bn, tuple(h.shape), torch.float32)
    assert pooling.keep_r1n is None
    torch.testing.assert_close(pooling.mean(h), _reference(w_bn, h.contiguous()))
