"""Directed rounding of a conversion to a narrower dtype: the one place where a value is rounded so that
a box still contains what it must contain (outward) or an offset never grows (towards zero).

``direction``: −1 rounds towards −∞, +1 towards +∞, 0 towards zero. Exact conversions are unchanged.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def round_directed(t: Tensor, dtype: torch.dtype, direction: int) -> Tensor:
    """``t`` converted to ``dtype``, moved one ulp in ``direction`` where the conversion rounded the
    wrong way (compared in ``t``'s own dtype, or float64 if ``dtype`` is wider)."""
    if direction not in (-1, 0, 1):
        raise ValueError(f"direction must be -1, 0 or +1, got {direction}")
    out = t.to(dtype)
    wide = t.dtype if torch.finfo(t.dtype).bits >= torch.finfo(dtype).bits else dtype
    back, exact = out.to(wide), t.to(wide)
    if direction == 0:
        bad = back.abs() > exact.abs()
        towards = torch.zeros_like(out)
    else:
        bad = back > exact if direction < 0 else back < exact
        towards = torch.full_like(out, direction * math.inf)
    return torch.where(bad, torch.nextafter(out, towards), out)
