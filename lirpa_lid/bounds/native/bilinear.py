"""Exact interval bounds of a bilinear layer (``x @ Wᵀ`` or a convolution) over an input box and a
weight box: the sum over terms of the exact range of each product ``w·x``.

Terms whose input interval does not straddle zero (after a ReLU, for a fixed input, for positive
images) are bounded exactly by four dense products with the positive/negative parts of the weight
bounds, computed as one product of stacked inputs and a block weight matrix (two for a fixed
non-negative input). Terms whose input straddles zero have range ``[min(wl·xu, wu·xl, …), max(…)]`` that is not a
sum of products; they are evaluated element-wise on the unfolded input, only for those columns and in
chunks of the batch.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from lirpa_lid.bounds.native.base import pos_neg

Apply = Callable[[Tensor, Tensor], Tensor]
Unfold = Callable[[Tensor], Tensor]


def interval_product(lo: Tensor, hi: Tensor, w_lo: Tensor, w_hi: Tensor, apply: Apply, unfold: Unfold,
                     feature_dim: int, max_elements: int = 2 ** 24) -> tuple[Tensor, Tensor]:
    """Bounds of ``apply(x, W)`` for ``x ∈ [lo, hi]``, ``W ∈ [w_lo, w_hi]``.

    ``unfold(x)`` gives the product terms as ``[B, K, L]`` (K: weight columns, L: output positions) with
    ``apply(x, W) = (W.reshape(O, K) @ unfold(x)).reshape(output shape)``. ``feature_dim`` is the
    dimension of ``x`` (and of the output) that the weight's dimension 1 (and 0) indexes.
    """
    if lo is hi:  # a fixed input: the weight box alone
        if bool((lo >= 0).all()):
            out = apply(lo, torch.cat([w_lo, w_hi]))
            return out.tensor_split(2, dim=feature_dim)
        return _paired(apply, lo.clamp(min=0), lo.clamp(max=0), w_lo, w_hi, w_hi, w_lo, feature_dim)
    wl_p, wl_n = pos_neg(w_lo)
    wu_p, wu_n = pos_neg(w_hi)
    pos = lo >= 0
    if bool(pos.all()):
        return _paired(apply, lo, hi, wl_p, wl_n, wu_n, wu_p, feature_dim)
    neg = (hi <= 0) & ~pos
    mix = ~(pos | neg)
    P, N = pos.to(lo.dtype), neg.to(lo.dtype)
    lower = apply(lo * P, wl_p) + apply(hi * P, wl_n) + apply(lo * N, wu_p) + apply(hi * N, wu_n)
    upper = apply(hi * P, wu_p) + apply(lo * P, wu_n) + apply(hi * N, wl_p) + apply(lo * N, wl_n)
    if bool(mix.any()):
        M = mix.to(lo.dtype)
        m_lo, m_hi = _mixed_terms(unfold(lo * M), unfold(hi * M), unfold(M) > 0, w_lo, w_hi, max_elements)
        lower = lower + m_lo.reshape(lower.shape)
        upper = upper + m_hi.reshape(upper.shape)
    return lower, upper


def _paired(apply: Apply, a: Tensor, b: Tensor, wa_lo: Tensor, wb_lo: Tensor, wa_hi: Tensor, wb_hi: Tensor,
            feature_dim: int) -> tuple[Tensor, Tensor]:
    """``(apply(a, wa_lo) + apply(b, wb_lo), apply(a, wa_hi) + apply(b, wb_hi))`` as *one* product: inputs
    stacked along ``feature_dim``, weights as a 2×2 block matrix. Same arithmetic as four products, but
    one large call is much faster than four small ones (few-channel convolutions)."""
    x = torch.cat([a, b], dim=feature_dim)
    w = torch.cat([torch.cat([wa_lo, wb_lo], dim=1), torch.cat([wa_hi, wb_hi], dim=1)], dim=0)
    return apply(x, w).tensor_split(2, dim=feature_dim)


def _mixed_terms(lo: Tensor, hi: Tensor, mask: Tensor, w_lo: Tensor, w_hi: Tensor,
                 max_elements: int) -> tuple[Tensor, Tensor]:
    """Exact sums of product ranges over the masked terms: ``[B, O, L]`` each."""
    B, K, L = lo.shape
    O = w_lo.shape[0]
    cols = mask.any(dim=(0, 2)).nonzero().flatten()
    lo, hi, mask = lo[:, cols], hi[:, cols], mask[:, cols].to(lo.dtype)
    wl = w_lo.reshape(O, K)[:, cols].unsqueeze(-1)
    wu = w_hi.reshape(O, K)[:, cols].unsqueeze(-1)
    chunk = max(1, max_elements // max(1, O * len(cols) * L))
    outs_lo, outs_hi = [], []
    for s in range(0, B, chunk):
        a, b, m = lo[s:s + chunk, None], hi[s:s + chunk, None], mask[s:s + chunk, None]
        prods = torch.stack([wl * a, wl * b, wu * a, wu * b])
        outs_lo.append((prods.amin(0) * m).sum(2))
        outs_hi.append((prods.amax(0) * m).sum(2))
    return torch.cat(outs_lo), torch.cat(outs_hi)
