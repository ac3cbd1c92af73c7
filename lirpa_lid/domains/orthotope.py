"""Orthotope: an axis-aligned box in weight space around reference weights θ₀.

The box is ``θ₀ − lower ≤ θ ≤ θ₀ + upper`` element-wise, over a chosen set of named parameters,
with non-negative offsets that need not be symmetric. Elements outside the ``free`` selection have
zero width (they are frozen at θ₀). Offsets may be tensors that require grad: the LID optimiser
builds an ``Orthotope`` from its primal variables at every step and differentiates bounds through it.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from lirpa_lid.digest import named_parameter_values
from lirpa_lid.domains.base import load_domain, register_domain_kind, save_domain
from lirpa_lid.errors import DomainError
from lirpa_lid.rounding import round_directed

ParamDict = dict[str, Tensor]


class _Masked(torch.autograd.Function):
    """``where(mask, x, 0)`` whose backward keeps the mask on the context instead of saving it, so one
    domain can be bounded and differentiated several times (e.g. chunk by chunk) without autograd's
    "backward through the graph a second time" error."""

    @staticmethod
    def forward(ctx, x: Tensor, mask: Tensor) -> Tensor:
        ctx.mask = mask
        return torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device))

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return torch.where(ctx.mask, grad, torch.zeros((), dtype=grad.dtype, device=grad.device)), None


@register_domain_kind
class Orthotope:
    """Box ``{θ : θ₀ − lower ≤ θ ≤ θ₀ + upper}`` over named parameters (others are fixed at θ₀).

    Attributes (all dicts keyed by parameter name, tensors of the parameter's shape):
        reference: θ₀, detached.
        lower, upper: non-negative offsets (zero where not free).
        free: boolean masks of the elements allowed to move.
    """

    kind = "orthotope"

    def __init__(self, reference: Mapping[str, Tensor], lower: Mapping[str, Tensor] | None = None,
                 upper: Mapping[str, Tensor] | None = None, free: Mapping[str, Tensor] | None = None):
        if not reference:
            raise DomainError("an orthotope needs at least one parameter")
        self.reference: ParamDict = {}
        self.free: ParamDict = {}
        self.lower: ParamDict = {}
        self.upper: ParamDict = {}
        for name, ref in reference.items():
            ref = ref.detach().clone()  # a copy: later in-place updates of the model must not move θ₀
            if not torch.isfinite(ref).all():
                raise DomainError(f"reference weights of {name!r} contain NaN or inf")
            mask = torch.ones_like(ref, dtype=torch.bool) if free is None or name not in free \
                else free[name].to(device=ref.device, dtype=torch.bool)
            if mask.shape != ref.shape:
                raise DomainError(f"free mask of {name!r} has shape {tuple(mask.shape)}, "
                                  f"parameter has {tuple(ref.shape)}")
            self.reference[name] = ref
            self.free[name] = mask
            for side, given, store in (("lower", lower, self.lower), ("upper", upper, self.upper)):
                off = torch.zeros_like(ref) if given is None or name not in given else given[name]
                if off.shape != ref.shape:
                    raise DomainError(f"{side} offsets of {name!r} have shape {tuple(off.shape)}, "
                                      f"parameter has {tuple(ref.shape)}")
                if not torch.isfinite(off).all():
                    raise DomainError(f"{side} offsets of {name!r} contain NaN or inf")
                if (off < 0).any():
                    raise DomainError(f"{side} offsets of {name!r} are negative (lower bound above "
                                      f"upper bound); offsets must be >= 0")
                off = off.to(ref.dtype)
                store[name] = _Masked.apply(off, mask) if off.requires_grad else torch.where(mask, off, 0.0)

    # ---------------------------------------------------------------- construction
    @classmethod
    def around(cls, model: nn.Module | Mapping[str, Tensor], params: Iterable[str] | None = None,
               lower: float | Mapping[str, Tensor] = 0.0, upper: float | Mapping[str, Tensor] | None = None,
               free: Mapping[str, Tensor] | None = None) -> Orthotope:
        """Box around the current weights of ``model`` over ``params`` (default: all parameters).

        ``lower``/``upper`` are offsets: a float (same for every element) or per-parameter tensors;
        ``upper`` defaults to ``lower`` (a symmetric box).
        """
        values = named_parameter_values(model)
        names = list(values) if params is None else list(params)
        unknown = [n for n in names if n not in values]
        if unknown:
            raise DomainError(f"unknown parameter name(s) {unknown}; the model has {sorted(values)}")
        reference = {n: values[n].detach() for n in names}
        upper = lower if upper is None else upper

        def offsets(spec: float | Mapping[str, Tensor]) -> ParamDict:
            if isinstance(spec, Mapping):
                return {n: spec[n] for n in names if n in spec}
            return {n: torch.full_like(reference[n], float(spec)) for n in names}

        return cls(reference, offsets(lower), offsets(upper), free)

    def with_offsets(self, lower: Mapping[str, Tensor], upper: Mapping[str, Tensor]) -> Orthotope:
        """Same reference and selection, new offsets (differentiable if the offsets are)."""
        return Orthotope(self.reference, lower, upper, self.free)

    def scaled(self, factor: float) -> Orthotope:
        """Offsets times ``factor ≥ 0``. Boxes scaled by ``s ≤ s′`` are nested (rounding is monotone),
        so bounds computed over the larger one hold over the smaller."""
        if not factor >= 0:
            raise DomainError(f"scale factor must be >= 0, got {factor}")
        return self.with_offsets({n: t * factor for n, t in self.lower.items()},
                                 {n: t * factor for n, t in self.upper.items()})

    # ---------------------------------------------------------------- views
    @property
    def names(self) -> list[str]:
        """Parameter names of the box, in the order of ``reference``."""
        return list(self.reference)

    def bounds(self) -> dict[str, tuple[Tensor, Tensor]]:
        """``name -> (θ₀ − lower, θ₀ + upper)``."""
        return {n: (self.reference[n] - self.lower[n], self.reference[n] + self.upper[n]) for n in self.names}

    def exact_bounds(self, names: Iterable[str] | None = None) -> dict[str, tuple[Tensor, Tensor]]:
        """The set the domain denotes: ``θ₀ ∓ offsets`` evaluated in float64 (exact for float32 data).
        Membership, nesting and projection are all decided against these bounds."""
        out = {}
        for n in self.names if names is None else names:
            ref = self.reference[n].detach().double()
            out[n] = (ref - self.lower[n].detach().double(), ref + self.upper[n].detach().double())
        return out

    def face_distances(self, params: nn.Module | Mapping[str, Tensor]) -> dict[str, tuple[Tensor, Tensor]]:
        """Per element, the float64 distances ``(θ − lo, hi − θ)`` from ``params`` to the lower and upper
        faces of the box (:meth:`exact_bounds`), clamped at 0 (an element outside is at distance 0 from
        the face it crossed): how far each element may move down and up and stay inside. Each tensor
        has its parameter's shape; only parameters of the box that ``params`` has are returned."""
        values = named_parameter_values(params)
        out = {}
        for n, (lo, hi) in self.exact_bounds([n for n in self.names if n in values]).items():
            t = values[n].detach().double()
            out[n] = ((t - lo).clamp(min=0), (hi - t).clamp(min=0))
        return out

    def inner_bounds(self, dtype: torch.dtype, names: Iterable[str] | None = None) -> dict[str, tuple[Tensor, Tensor]]:
        """Bounds representable in ``dtype`` and rounded inwards: every ``dtype`` value between them
        lies in the domain. (A box narrower than one ulp collapses onto θ₀, which is representable.)"""
        out = {}
        for n, (lo64, hi64) in self.exact_bounds(names).items():
            lo, hi = lo64.to(dtype), hi64.to(dtype)
            lo, hi = round_directed(lo64, dtype, +1), round_directed(hi64, dtype, -1)  # inwards
            ref = self.reference[n].detach().to(dtype)
            crossed = lo > hi
            out[n] = (torch.where(crossed, ref, lo), torch.where(crossed, ref, hi))
        return out

    def center_radius(self, dtype: torch.dtype) -> dict[str, tuple[Tensor, Tensor]]:
        """Centre and radius in ``dtype`` (differentiable in the offsets) whose box ``centre ± radius``
        contains the domain despite rounding: the radius carries a slack of a few ulps. This is the
        form bound backends use."""
        eps = torch.finfo(dtype).eps
        out = {}
        for n in self.names:
            ref, low, up = self.reference[n].to(dtype), self.lower[n].to(dtype), self.upper[n].to(dtype)
            centre = ref + (up - low) / 2
            radius = (up + low) / 2
            out[n] = (centre, radius + 4 * eps * (centre.detach().abs() + radius.detach()))
        return out

    def numel(self) -> int:
        """Number of free elements."""
        return int(sum(int(m.sum()) for m in self.free.values()))

    def widths(self) -> Tensor:
        """Widths of the free elements, flattened in parameter order, shape ``[numel()]``."""
        return torch.cat([(self.lower[n] + self.upper[n])[self.free[n]] for n in self.names])

    def mean_width(self) -> Tensor:
        """Mean of ``lower + upper`` over the free elements (the paper code's size measure)."""
        if self.numel() == 0:
            raise DomainError("the orthotope has no free elements")
        return self.widths().mean()

    def log_volume(self) -> Tensor:
        """``Σ log(width)`` over the free elements (−inf if any free element has zero width)."""
        return torch.log(self.widths()).sum()

    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> Orthotope:
        """A copy with reference and offsets converted (masks only moved); ``None`` keeps dtype/device."""
        conv = (lambda t: t.to(device=device, dtype=dtype))
        return Orthotope({n: conv(t) for n, t in self.reference.items()},
                         {n: conv(t) for n, t in self.lower.items()},
                         {n: conv(t) for n, t in self.upper.items()},
                         {n: m.to(device=device) for n, m in self.free.items()})

    def detach(self) -> Orthotope:
        """The same box with its offsets detached from the autograd graph (for storing a candidate)."""
        return Orthotope(self.reference, {n: t.detach() for n, t in self.lower.items()},
                         {n: t.detach() for n, t in self.upper.items()}, self.free)

    # ---------------------------------------------------------------- membership and projection
    def violations(self, params: nn.Module | Mapping[str, Tensor], atol: float = 0.0) -> list[str]:
        """Reasons why ``params`` is not in the box (empty list: it is), checked in float64."""
        values = named_parameter_values(params)
        exact = self.exact_bounds()
        reasons = []
        for n in self.names:
            if n not in values:
                reasons.append(f"parameter {n!r} is missing")
                continue
            v = values[n].detach().to(torch.float64)
            if v.shape != self.reference[n].shape:
                reasons.append(f"parameter {n!r} has shape {tuple(v.shape)}, domain has "
                               f"{tuple(self.reference[n].shape)}")
                continue
            lo, hi = exact[n]
            lo, hi = lo - atol, hi + atol
            outside = (v < lo) | (v > hi) | ~torch.isfinite(v)
            if outside.any():
                excess = torch.maximum(lo - v, v - hi).nan_to_num(math.inf)[outside].max().item()
                reasons.append(f"parameter {n!r}: {int(outside.sum())} element(s) outside the box "
                               f"(largest excess {excess:.3g})")
        return reasons

    def contains(self, params: nn.Module | Mapping[str, Tensor], atol: float = 0.0) -> bool:
        """Whether ``params`` lies in the box enlarged by ``atol`` (exact float64 check)."""
        return not self.violations(params, atol)

    def _checked(self, params: nn.Module | Mapping[str, Tensor]) -> ParamDict:
        values = named_parameter_values(params)
        for n in self.names:
            if n not in values:
                raise DomainError(f"parameter {n!r} of the domain is missing")
            if values[n].shape != self.reference[n].shape:
                raise DomainError(f"parameter {n!r} has shape {tuple(values[n].shape)}, the domain "
                                  f"{tuple(self.reference[n].shape)}")
            if not torch.isfinite(values[n]).all():
                raise DomainError(f"parameter {n!r} contains NaN or inf")
        return values

    def project(self, params: nn.Module | Mapping[str, Tensor]) -> ParamDict:
        """Euclidean projection onto the box: an element-wise clamp, to bounds rounded inwards so the
        result lies in the box exactly (parameters outside the domain are copied unchanged)."""
        values = self._checked(params)
        out = {n: t.detach().clone() for n, t in values.items()}
        for n in self.names:
            lo, hi = self.inner_bounds(out[n].dtype, [n])[n]
            out[n] = torch.minimum(torch.maximum(out[n], lo), hi)
        return out

    @torch.no_grad()
    def project_(self, model: nn.Module) -> nn.Module:
        """``project``, in place on the model's parameters."""
        projected = self.project(model)
        params = dict(model.named_parameters())
        for n in self.names:
            params[n].copy_(projected[n])
        return model

    def distance(self, params: nn.Module | Mapping[str, Tensor]) -> float:
        """Euclidean distance from ``params`` to the box (float64)."""
        values = self._checked(params)
        sq = 0.0
        for n, (lo, hi) in self.exact_bounds().items():
            v = values[n].detach().double()
            sq += float(((v - v.clamp(lo, hi)) ** 2).sum())
        return math.sqrt(sq)

    # ---------------------------------------------------------------- set operations
    def _check_compatible(self, other: Orthotope) -> None:
        if self.names != other.names:
            raise DomainError(f"orthotopes over different parameters: {self.names} vs {other.names}")
        for n in self.names:
            if self.reference[n].shape != other.reference[n].shape:
                raise DomainError(f"parameter {n!r} has different shapes in the two orthotopes")

    def is_subset(self, outer: Orthotope, atol: float = 0.0) -> bool:
        """Whether this box lies inside ``outer`` (exact float64 bounds)."""
        self._check_compatible(outer)
        mine, theirs = self.exact_bounds(), outer.exact_bounds()
        for n in self.names:
            (lo, hi), (olo, ohi) = mine[n], theirs[n]
            if (lo < olo - atol).any() or (hi > ohi + atol).any():
                return False
        return True

    def intersection(self, other: Orthotope) -> Orthotope:
        """The intersection, expressed around this box's reference (which must lie in ``other``)."""
        self._check_compatible(other)
        if not other.contains(self.reference):
            raise DomainError("the intersection does not contain this orthotope's reference weights")
        lower, upper = {}, {}
        room = other.face_distances(self.reference)
        for n in self.names:
            below, above = room[n]
            lower[n] = torch.minimum(self.lower[n], round_directed(below, self.lower[n].dtype, 0))
            upper[n] = torch.minimum(self.upper[n], round_directed(above, self.upper[n].dtype, 0))
        return Orthotope(self.reference, lower, upper, {n: self.free[n] & other.free[n] for n in self.names})

    def clip_to(self, outer: Orthotope) -> Orthotope:
        """This box shrunk to fit inside ``outer`` (nesting for continual learning)."""
        return self.intersection(outer)

    # ---------------------------------------------------------------- sampling
    def sample(self, n: int, generator: torch.Generator | None = None,
               corner_fraction: float = 0.5) -> ParamDict:
        """``n`` weight vectors in the box: ``name -> [n, *shape]``.

        The first ``round(n * corner_fraction)`` are random vertices, the rest uniform.
        """
        n_corner = int(round(n * corner_fraction))
        out = {}
        for name in self.names:
            lo, hi = self.inner_bounds(self.reference[name].dtype, [name])[name]
            shape = (n, *lo.shape)
            u = torch.rand(shape, generator=generator, dtype=lo.dtype, device=lo.device)
            u[:n_corner] = (u[:n_corner] > 0.5).to(lo.dtype)
            out[name] = torch.clamp(lo + u * (hi - lo), lo, hi)
        return out

    # ---------------------------------------------------------------- files
    def state_dict(self) -> dict:
        """``reference``, ``lower``, ``upper`` (detached) and ``free``, each a name → tensor dict."""
        return {"reference": self.reference, "lower": {n: t.detach() for n, t in self.lower.items()},
                "upper": {n: t.detach() for n, t in self.upper.items()}, "free": self.free}

    @classmethod
    def from_state_dict(cls, state: Mapping) -> Orthotope:
        """The orthotope a :meth:`state_dict` describes (re-validated); ``DomainError`` if a key is missing."""
        try:
            return cls(state["reference"], state["lower"], state["upper"], state["free"])
        except KeyError as exc:
            raise DomainError(f"not an orthotope file: missing key {exc}") from None

    def save(self, path: str | Path) -> None:
        """Write the box to ``path`` as a domain file recording its kind (see :func:`save_domain`)."""
        save_domain(self, path)

    @classmethod
    def load(cls, path: str | Path) -> Orthotope:
        """Read an orthotope file; ``DomainError`` if the file holds another kind of domain."""
        domain = load_domain(path)
        if not isinstance(domain, cls):
            raise DomainError(f"{path}: a {domain.kind} file, not an orthotope file")
        return domain

    def __repr__(self) -> str:
        return (f"Orthotope({len(self.names)} parameter tensor(s), {self.numel()} free elements, "
                f"mean width {float(self.mean_width()) if self.numel() else 0.0:.4g})")
