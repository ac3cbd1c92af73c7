"""Bound operator for constant element-wise affine maps (normalisation, ``x ± c``, ``x · c``, ``x / c``).

``y = x · scale + shift``, or ``y = x / divisor + shift`` for a traced division: the model's own
operations in the model's own order, so that at width 0 the bounds are the network's outputs to the
last bit (``x · (1/c)`` is not ``x / c`` in floating point). The constants keep the model's dtype and
are cast to the dtype of each bound computation (a float64 model bounded in float32 for a search).
"""
from __future__ import annotations

from torch import Tensor

from lirpa_lid.bounds.native.base import Op, Params, batch_dot


class AffineOp(Op):
    """``y = x·scale + shift`` (or ``x / divisor + shift``) with constant tensors, no boxed parameters."""

    elementwise = True

    def __init__(self, name: str, scale: Tensor, shift: Tensor, divisor: Tensor | None = None):
        super().__init__(name)
        self.scale, self.shift, self.divisor = scale, shift, divisor

    def _apply(self, x: Tensor) -> Tensor:
        scaled = x / self.divisor.to(x.dtype) if self.divisor is not None else x * self.scale.to(x.dtype)
        return scaled + self.shift.to(x.dtype)

    def forward(self, x: Tensor, p: Params) -> Tensor:
        """The map, computed exactly as the model computes it."""
        return self._apply(x)

    def interval(self, lo: Tensor, hi: Tensor, p: Params) -> tuple[Tensor, Tensor]:
        """Images of the two end points, ordered (sound since rounding is monotone)."""
        # rounding is monotone, so the images of the end points bound every image of the interval
        a, b = self._apply(lo), self._apply(hi)
        return a.minimum(b), a.maximum(b)

    def backward(self, A: Tensor, lo: Tensor, hi: Tensor, p: Params,
                 relax: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``A_in = A·scale`` (or ``A / divisor``) and ``const = A·shift`` ``[B, S]``: no relaxation, the map
        is affine."""
        shift = self.shift.to(A.dtype).expand(lo.shape)
        A_in = A / self.divisor.to(A.dtype) if self.divisor is not None else A * self.scale.to(A.dtype)
        return A_in, batch_dot(A, shift)
