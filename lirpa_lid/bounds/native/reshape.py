"""Bound operator for reshapes that keep the batch dimension (Flatten, view, reshape)."""
from __future__ import annotations

from torch import Tensor

from lirpa_lid.bounds.native.base import Op, Params


class ReshapeOp(Op):
    """A reshape of the non-batch dimensions from ``in_shape`` to ``out_shape`` (exact, no parameters)."""

    elementwise = True

    def __init__(self, name: str, in_shape: tuple[int, ...], out_shape: tuple[int, ...]):
        super().__init__(name)
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)

    def forward(self, x: Tensor, p: Params) -> Tensor:
        """``x`` as ``[B, *out_shape]``."""
        return x.reshape(x.shape[0], *self.out_shape)

    def interval(self, lo: Tensor, hi: Tensor, p: Params) -> tuple[Tensor, Tensor]:
        """Both bounds reshaped (exact)."""
        return self.forward(lo, p), self.forward(hi, p)

    def backward(self, A: Tensor, lo: Tensor, hi: Tensor, p: Params,
                 relax: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``A`` reshaped to ``[B, S, *in_shape]``; zero constant."""
        return A.reshape(*A.shape[:2], *self.in_shape), A.new_zeros(A.shape[:2])
