"""Bound operator for ``nn.Linear`` with an optional box on its weight and bias."""
from __future__ import annotations

from torch import Tensor, nn

from lirpa_lid.bounds.native.base import Op, Params, batch_dot
from lirpa_lid.bounds.native.bilinear import interval_product


def _linear(x: Tensor, w: Tensor) -> Tensor:
    return x.matmul(w.t())


class LinearOp(Op):
    """``z = W h + b``.

    Backward (lower direction), with ``W ∈ Wc ± Wr`` and ``h ∈ [hl, hu]``: every product
    ``W_ij h_j`` is relaxed by the McCormick plane through ``h = hl`` — the plane auto_LiRPA uses for
    a weight-perturbed Linear layer (``BoundMul.get_bound_mul``), so the bounds coincide — and the
    weight terms are concretised at once. Their coefficient ``A_i hl_j`` is rank one per row, so the
    result needs only two matrix products::

        A·z ≥ (A Wc − |A| Wr)·h + 2 (|A| Wr)·min(hl, 0) + A·bc − |A|·br
    """

    independent_rows = True

    def __init__(self, name: str, module: nn.Linear, param_names: dict[str, str]):
        super().__init__(name)
        self.module = module
        self.param_names = param_names

    def forward(self, x: Tensor, p: Params) -> Tensor:
        """``h Wcᵀ + bc`` at the parameter centres."""
        out = _linear(x, p["weight"].center)
        return out + p["bias"].center if "bias" in p else out

    def interval(self, lo: Tensor, hi: Tensor, p: Params) -> tuple[Tensor, Tensor]:
        """Interval bounds ``[B, O]``: centre-radius form for a fixed weight, the exact range of every
        product term (:func:`interval_product`) for a boxed one; plus the bias box."""
        w = p["weight"]
        if w.radius is None:
            mid, rad = (hi + lo) / 2, (hi - lo) / 2
            c, r = _linear(mid, w.center), _linear(rad, w.center.abs())
            lower, upper = c - r, c + r
        else:
            lower, upper = interval_product(lo, hi, w.lower, w.upper, _linear, lambda t: t.unsqueeze(-1), -1)
        if "bias" in p:
            lower, upper = lower + p["bias"].lower, upper + p["bias"].upper
        return lower, upper

    def backward(self, A: Tensor, lo: Tensor, hi: Tensor, p: Params,
                 relax: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(A_in, const)`` by the relaxation in the class docstring: ``A_in`` ``[B, S, I]``, ``const``
        ``[B, S]``."""
        w = p["weight"]
        A_in = A.matmul(w.center)
        const = A.new_zeros(A.shape[:2])
        if w.radius is not None:
            q = A.abs().matmul(w.radius)
            A_in = A_in - q
            const = const + 2 * batch_dot(q, lo.clamp(max=0))
        if "bias" in p:
            b = p["bias"]
            const = const + A.matmul(b.center)
            if b.radius is not None:
                const = const - A.abs().matmul(b.radius)
        return A_in, const
