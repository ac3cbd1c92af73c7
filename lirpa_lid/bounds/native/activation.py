"""Bound operators for element-wise activations: ReLU, and the S-shaped Tanh and Sigmoid.

Each activation is relaxed, neuron by neuron and from the bounds ``[l, u]`` of its input, by a lower
line ``kl·z + bl`` and an upper line ``ku·z + bu``; the backward step then picks, per coefficient
sign, the line that gives a lower bound.
"""
from __future__ import annotations

import torch
from torch import Tensor

from lirpa_lid.bounds.native.base import Op, Params


class ActivationOp(Op):
    """An element-wise activation relaxed by a lower and an upper line per neuron (no parameters).

    Subclasses supply :meth:`relaxation`; the backward step is shared.
    """

    elementwise = True
    nonlinear = True

    def relaxation(self, lo: Tensor, hi: Tensor, relax: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(kl, bl, ku, bu)``; ``kl/bl`` may carry a leading spec dimension when ``relax`` does."""
        raise NotImplementedError

    def backward(self, A: Tensor, lo: Tensor, hi: Tensor, p: Params,
                 relax: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Per coefficient, the lower line where ``A ≥ 0`` and the upper line where ``A < 0``:
        ``A_in = A·k`` ``[B, S, *shape]`` and ``const = Σ A·b`` ``[B, S]``."""
        kl, bl, ku, bu = self.relaxation(lo, hi, relax)
        kl, bl, ku, bu = (t.unsqueeze(1) if t.dim() == lo.dim() else t for t in (kl, bl, ku, bu))
        positive = A >= 0
        A_in = A * torch.where(positive, kl, ku)
        intercept = torch.where(positive, bl, bu) if self.lower_intercept else torch.where(positive, 0.0, bu)
        const = (A * intercept).flatten(2).sum(-1)
        return A_in, const

    #: whether the lower line has an intercept (ReLU's never does)
    lower_intercept = True


class ReluOp(ActivationOp):
    """ReLU. Unstable neurons (``l < 0 < u``): upper line is the chord, lower line ``α·z`` with
    ``α = 1`` if ``u > −l`` else ``0`` (CROWN's adaptive choice, as auto_LiRPA) or an optimised
    ``α ∈ [0, 1]`` (α-CROWN, passed as ``relax`` with shape ``[B, S, *shape]``)."""

    lower_intercept = False

    def forward(self, x: Tensor, p: Params) -> Tensor:
        """``relu(x)``."""
        return torch.relu(x)

    def interval(self, lo: Tensor, hi: Tensor, p: Params) -> tuple[Tensor, Tensor]:
        """``[relu(lo), relu(hi)]`` (exact: ReLU is monotone)."""
        return torch.relu(lo), torch.relu(hi)

    @staticmethod
    def upper_slope(lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
        """Upper-line slope and the unstable mask."""
        unstable = (lo < 0) & (hi > 0)
        denom = torch.where(unstable, hi - lo, torch.ones_like(hi))
        ku = torch.where(unstable, hi / denom, (lo >= 0).to(lo.dtype))
        return ku, unstable

    def relaxation(self, lo, hi, relax):
        """``(kl, bl, ku, bu)`` as in the class docstring; stable neurons get the exact line (0 or identity).

        ``ku``, ``bu`` have the input's shape ``[B, *shape]``; ``kl``, ``bl`` too, or ``[B, S, *shape]``
        when ``relax`` (α) is given, clamped to ``[0, 1]`` with an identity gradient.
        """
        ku, unstable = self.upper_slope(lo, hi)
        bu = torch.where(unstable, -ku * lo, torch.zeros_like(lo))
        active = (lo >= 0).to(lo.dtype)
        if relax is None:
            kl = torch.where(unstable, (ku > 0.5).to(lo.dtype), active)
        else:
            # clamp for soundness, identity gradient: torch ≥ 2.14's clamp has zero gradient at its
            # limits, and CROWN's starting slopes are exactly 0 or 1
            slope = relax + (relax.clamp(0, 1) - relax).detach()
            kl = torch.where(unstable.unsqueeze(1), slope, active.unsqueeze(1))
        return kl, torch.zeros_like(kl), ku, bu

    @staticmethod
    def initial_alpha(lo: Tensor, hi: Tensor, rows: int) -> Tensor:
        """CROWN's adaptive slopes, as α-CROWN's starting point: ``[B, rows, *shape]``."""
        ku, _ = ReluOp.upper_slope(lo, hi)
        return (ku > 0.5).to(lo.dtype).unsqueeze(1).expand(lo.shape[0], rows, *lo.shape[1:]).clone()


class SShapedOp(ActivationOp):
    """A sigmoid-like function σ: increasing, convex on (−∞, 0], concave on [0, ∞).

    Relaxation (CROWN, Zhang et al. 2018): on a convex piece, chord above and tangent at the
    midpoint below (mirrored on a concave piece); across 0, the upper line is the tangent at the
    smallest ``d ≥ 0`` whose tangent passes above ``(l, σ(l))`` (the chord if no such ``d ≤ u``),
    the lower line mirrored. ``d`` is found by bisection, keeping the side that is provably valid;
    its gradient is the implicit one. Very narrow intervals get the constant lines ``σ(l)``, ``σ(u)``
    so that no chord is computed from a difference of nearly equal numbers.
    """

    bisection_steps = 40

    def f(self, x: Tensor) -> Tensor:
        """σ itself, element-wise."""
        raise NotImplementedError

    def df(self, x: Tensor) -> Tensor:
        """σ', element-wise (positive)."""
        raise NotImplementedError

    def forward(self, x: Tensor, p: Params) -> Tensor:
        """``σ(x)``."""
        return self.f(x)

    def interval(self, lo: Tensor, hi: Tensor, p: Params) -> tuple[Tensor, Tensor]:
        """``[σ(lo), σ(hi)]`` (exact: σ is increasing)."""
        return self.f(lo), self.f(hi)

    def _tangent_through(self, anchor: Tensor, d_lo: Tensor, d_hi: Tensor, valid_high: bool,
                         used: Tensor) -> Tensor:
        """Tangent point ``d`` in ``[d_lo, d_hi]`` whose tangent passes through ``(anchor, σ(anchor))``.

        ``g(d) = σ(d) + σ'(d)(anchor − d) − σ(anchor)`` is monotone increasing on the interval; the
        valid side is ``g ≥ 0`` (``valid_high``: upper line) or ``g ≤ 0`` (lower line).

        ``used`` marks the elements whose tangent the relaxation selects; only they get the implicit
        gradient. Elsewhere (degenerate intervals ``d_lo = d_hi``, where ``∂g/∂d = 0``) the Newton
        correction is made zero *before* the division, so that the value and the gradient of ``d``
        are finite everywhere: ``torch.where`` later multiplies an unselected element's gradient by 0,
        and ``0 · inf`` or ``0 · nan`` would be NaN.
        """
        with torch.no_grad():
            a, lo_, hi_ = anchor.detach(), d_lo.detach().clone(), d_hi.detach().clone()
            for _ in range(self.bisection_steps):
                mid = (lo_ + hi_) / 2
                g = self.f(mid) + self.df(mid) * (a - mid) - self.f(a)
                go_low = g >= 0
                hi_ = torch.where(go_low, mid, hi_)
                lo_ = torch.where(go_low, lo_, mid)
            d0 = hi_ if valid_high else lo_
        if not anchor.requires_grad:
            return d0
        # implicit gradient: value d0, derivative -(∂g/∂anchor)/(∂g/∂d) at d0, where ∂g/∂d ≠ 0 and
        # the tangent is used; elsewhere g := 0 over a denominator of 1 (no correction). Without this,
        # an element with d_lo = d_hi = 0 (interval not crossing zero) has ∂g/∂d = 0, and g / tiny
        # overflows once |g| > 4, i.e. |anchor| ≳ 5 (Tanh) or ≳ 18 (Sigmoid): newton − newton.detach()
        # = inf − inf = NaN.
        g = self.f(d0) + self.df(d0) * (anchor - d0) - self.f(anchor)
        eps = torch.finfo(d0.dtype).tiny
        dd = self._d2f(d0) * (anchor.detach() - d0)
        implicit = used & (dd.abs() > eps)
        g = torch.where(implicit, g, torch.zeros_like(g))
        dd = torch.where(implicit, dd, torch.ones_like(dd))
        newton = d0 - g / dd
        return d0 + (newton - newton.detach())

    def _d2f(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def relaxation(self, lo, hi, relax):
        """``(kl, bl, ku, bu)``, each ``[B, *shape]``, as in the class docstring (``relax`` is ignored)."""
        f_lo, f_hi = self.f(lo), self.f(hi)
        scale = torch.maximum(torch.ones_like(lo), torch.maximum(lo.abs(), hi.abs()))
        tiny = (hi - lo) <= (1e-4 if lo.dtype == torch.float32 else 1e-8) * scale
        width = torch.where(tiny, torch.ones_like(lo), hi - lo)
        chord_k = (f_hi - f_lo) / width
        chord_b = f_lo - chord_k * lo
        mid = (lo + hi) / 2
        tan_k = self.df(mid)
        tan_b = self.f(mid) - tan_k * mid

        zero = torch.zeros_like(lo)
        # crossing zero: upper tangent at d ≥ 0 through (l, σ(l)), lower tangent at d ≤ 0 through (u, σ(u))
        cross = (lo < 0) & (hi > 0) & ~tiny
        g_at_u = f_hi + self.df(hi) * (lo - hi) - f_lo   # ≥ 0: a valid tangent point exists in [0, u]
        up_tangent = cross & (g_at_u >= 0)
        d_up = self._tangent_through(lo, zero, torch.where(cross, hi, zero), True, used=up_tangent)
        h_at_l = f_lo + self.df(lo) * (hi - lo) - f_hi   # ≤ 0: a valid tangent point exists in [l, 0]
        low_tangent = cross & (h_at_l <= 0)
        d_low = self._tangent_through(hi, torch.where(cross, lo, zero), zero, False, used=low_tangent)
        ku_t, kl_t = self.df(d_up), self.df(d_low)
        bu_t, bl_t = self.f(d_up) - ku_t * d_up, self.f(d_low) - kl_t * d_low

        convex = (hi <= 0) & ~tiny
        concave = (lo >= 0) & ~tiny
        # lower line
        kl = torch.where(convex, tan_k, torch.where(concave, chord_k, torch.where(low_tangent, kl_t, chord_k)))
        bl = torch.where(convex, tan_b, torch.where(concave, chord_b, torch.where(low_tangent, bl_t, chord_b)))
        # upper line
        ku = torch.where(convex, chord_k, torch.where(concave, tan_k, torch.where(up_tangent, ku_t, chord_k)))
        bu = torch.where(convex, chord_b, torch.where(concave, tan_b, torch.where(up_tangent, bu_t, chord_b)))
        # narrow intervals: constant lines
        kl, ku = torch.where(tiny, zero, kl), torch.where(tiny, zero, ku)
        bl, bu = torch.where(tiny, f_lo, bl), torch.where(tiny, f_hi, bu)
        return kl, bl, ku, bu


class TanhOp(SShapedOp):
    """``tanh``, relaxed as an S-shaped function."""

    def f(self, x):
        """``tanh(x)``."""
        return torch.tanh(x)

    def df(self, x):
        """``1 − tanh(x)²``."""
        return 1 - torch.tanh(x) ** 2

    def _d2f(self, x):
        t = torch.tanh(x)
        return -2 * t * (1 - t ** 2)


class SigmoidOp(SShapedOp):
    """The logistic sigmoid, relaxed as an S-shaped function."""

    def f(self, x):
        """``sigmoid(x)``."""
        return torch.sigmoid(x)

    def df(self, x):
        """``s·(1 − s)`` with ``s = sigmoid(x)``."""
        s = torch.sigmoid(x)
        return s * (1 - s)

    def _d2f(self, x):
        s = torch.sigmoid(x)
        return s * (1 - s) * (1 - 2 * s)
