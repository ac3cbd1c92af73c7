"""Bound operator for constant element-wise affine maps ``y = x * scale + shift`` (normalisation)."""
from __future__ import annotations

from torch import Tensor

from .base import Op, Params, batch_dot


class AffineOp(Op):
    elementwise = True

    def __init__(self, name: str, scale: Tensor, shift: Tensor):
        super().__init__(name)
        self.scale, self.shift = scale, shift

    def forward(self, x: Tensor, p: Params) -> Tensor:
        return x * self.scale + self.shift

    def interval(self, lo: Tensor, hi: Tensor, p: Params) -> tuple[Tensor, Tensor]:
        a, b = lo * self.scale + self.shift, hi * self.scale + self.shift
        return a.minimum(b), a.maximum(b)

    def backward(self, A: Tensor, lo: Tensor, hi: Tensor, p: Params,
                 relax: Tensor | None = None) -> tuple[Tensor, Tensor]:
        shift = self.shift.to(A.dtype).expand(lo.shape)
        return A * self.scale.to(A.dtype), batch_dot(A, shift)
