"""The LID as a Cooper constrained problem, and the small pieces the optimiser's loop acts with.

Problem (paper "Provably Safe Model Updates", orthotope LIDs)::

    maximise  size(T)   over boxes T = [θ₀ − l, θ₀ + u], l, u ≥ 0
    s.t.      soft certified value_k(T) ≥ τ_k     for every specification k

:class:`LIDProblem` only *reports*: :meth:`LIDProblem.compute_cmp_state` returns the loss ``−size(T)`` and
one constraint state per specification for a fresh minibatch; Cooper's optimiser and the loop in
:mod:`lirpa_lid.lid.solve` act on that report. The offsets' limits (:func:`offset_caps`), the objective's
element weights (:func:`width_weights`) and the box around θ₀ (:func:`base_domain`) are computed once,
before the loop; :class:`_Batches` draws the minibatches and :class:`StepSizes` adapts the learning rates.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import cooper
import torch
from torch import Tensor, nn

from lirpa_lid.bounds.core import BoundBackend
from lirpa_lid.domains.orthotope import Orthotope
from lirpa_lid.errors import DomainError, InputError
from lirpa_lid.lid.config import LIDConfig
from lirpa_lid.margin import bound_margins
from lirpa_lid.rounding import round_directed
from lirpa_lid.specification.base import Specification

#: parameter name -> tensor of the parameter's shape (offsets, caps, weights)
ParamDict = dict[str, Tensor]


class _Batches:
    """Seeded minibatches of one reference set: shuffled epochs, or everything if it is small.

    ``next()`` returns item indices ``[min(n, batch_size)]`` (int64); successive calls walk through one
    random permutation per epoch (drawn from ``generator``, shared by all specifications of a run).
    """

    def __init__(self, n: int, batch_size: int, generator: torch.Generator):
        self.n, self.batch_size, self.generator = n, batch_size, generator
        self.order, self.pos = torch.empty(0, dtype=torch.long), 0

    def next(self) -> Tensor:
        """Indices of the next minibatch (all items when the set fits one batch)."""
        if self.n <= self.batch_size:
            return torch.arange(self.n)
        if self.pos + self.batch_size > self.order.numel():
            self.order, self.pos = torch.randperm(self.n, generator=self.generator), 0
        idx = self.order[self.pos:self.pos + self.batch_size]
        self.pos += self.batch_size
        return idx


class LIDProblem(cooper.ConstrainedMinimizationProblem):
    """Cooper problem: loss = −size(T), one inequality constraint ``τ_k − soft_k(T) ≤ 0`` per spec.

    The primal variables are ``lower``/``upper`` offset tensors (one per boxed parameter, full
    shape, ``≥ 0``: the box is ``[θ₀ − lower, θ₀ + upper]``; elements outside ``free`` are held at 0 by
    :meth:`project_`). ``caps`` are the largest offsets allowed (:func:`offset_caps`), ``weights`` the
    objective's per-element weights (:func:`width_weights`). A constraint's violation is
    ``τ_k − value``: positive means the specification is not (yet) met.
    """

    def __init__(self, backend: BoundBackend, specs: list[Specification], base: Orthotope,
                 config: LIDConfig, caps: tuple[ParamDict, ParamDict], weights: ParamDict):
        super().__init__()
        self.backend, self.specs, self.base, self.config = backend, specs, base, config
        self.method = config.method
        self.cap_lower, self.cap_upper = caps
        self.weights = weights
        self.n_free = base.numel()
        self.lower = {n: torch.zeros_like(t, requires_grad=True) for n, t in base.reference.items()}
        self.upper = {n: torch.zeros_like(t, requires_grad=True) for n, t in base.reference.items()}
        gen = torch.Generator().manual_seed(config.seed)
        self.batches = [_Batches(len(s), config.batch_size, gen) for s in specs]
        self.constraints_by_spec: list[cooper.Constraint] = []
        for i, _ in enumerate(specs):
            c = cooper.Constraint(
                constraint_type=cooper.ConstraintType.INEQUALITY,
                formulation_type=cooper.formulations.AugmentedLagrangian,
                multiplier=cooper.multipliers.DenseMultiplier(init=torch.zeros(1)),
                penalty_coefficient=cooper.penalty_coefficients.DensePenaltyCoefficient(
                    init=torch.tensor(float(config.penalty))))
            setattr(self, f"constraint_{i}", c)
            self.constraints_by_spec.append(c)

    def primal_parameters(self) -> list[Tensor]:
        """The offsets Adam moves: every ``lower`` tensor, then every ``upper`` tensor."""
        return [*self.lower.values(), *self.upper.values()]

    def caps(self) -> tuple[ParamDict, ParamDict]:
        """The largest offsets allowed (``max_width``, the outer box, 0 outside ``free``)."""
        return self.cap_lower, self.cap_upper

    def offsets(self) -> tuple[ParamDict, ParamDict]:
        """Detached copies of the current offsets."""
        return ({n: t.detach().clone() for n, t in self.lower.items()},
                {n: t.detach().clone() for n, t in self.upper.items()})

    @torch.no_grad()
    def set_offsets(self, lower: ParamDict, upper: ParamDict) -> None:
        """Overwrite the offsets in place (e.g. with an earlier :meth:`offsets`: a rollback)."""
        for n in self.lower:
            self.lower[n].copy_(lower[n])
            self.upper[n].copy_(upper[n])

    def domain(self) -> Orthotope:
        """The current box (differentiable w.r.t. the offsets)."""
        return self.base.with_offsets(self.lower, self.upper)

    def snapshot(self) -> Orthotope:
        """The current box, detached (a candidate to evaluate later)."""
        return self.base.with_offsets(*self.offsets())

    def size(self, domain: Orthotope) -> Tensor:
        """The objective (a scalar): weighted mean width or mean log-width over the free elements."""
        total = 0.0
        for n in domain.names:
            width = domain.lower[n] + domain.upper[n]
            if self.config.objective == "log_volume":
                width = torch.log(width + self.config.log_floor)
            total = total + (self.weights[n] * width).sum()
        return total / self.n_free

    @torch.no_grad()
    def project_(self) -> None:
        """Offsets onto ``[0, cap]`` (cap: max_width, outer-box distances, 0 outside ``free``)."""
        for n in self.lower:
            self.lower[n].copy_(torch.minimum(self.lower[n].clamp(min=0), self.cap_lower[n]))
            self.upper[n].copy_(torch.minimum(self.upper[n].clamp(min=0), self.cap_upper[n]))

    def compute_cmp_state(self) -> cooper.CMPState:
        """Loss ``−size(T)`` and, per specification, the constraint state on its next minibatch.

        The violation is ``τ − soft value`` (differentiable, drives the primal step); with
        ``dual_violation="hard"`` the strict violation ``τ − hard value`` drives the multipliers.
        ``misc`` reports ``size`` and the per-spec ``soft`` and ``hard`` values as floats.
        """
        domain = self.domain()
        size = self.size(domain)
        observed, soft_values, hard = {}, [], []
        for spec, batches, constraint in zip(self.specs, self.batches, self.constraints_by_spec):
            sub = spec.subset(batches.next())
            lower = bound_margins(self.backend, sub.query(), domain, self.method)
            soft = sub.soft_value(lower)
            hv = sub.hard_value(lower.detach()).to(soft.dtype)
            strict = spec.threshold - hv if self.config.dual_violation == "hard" else None
            observed[constraint] = cooper.ConstraintState(violation=spec.threshold - soft,
                                                          strict_violation=strict)
            soft_values.append(float(soft.detach()))
            hard.append(float(hv))
        misc = {"size": float(size.detach()), "soft": soft_values, "hard": hard}
        return cooper.CMPState(loss=-size, observed_constraints=observed, misc=misc)

    def defects(self, state: cooper.CMPState) -> list[float]:
        """Per specification, ``τ − hard value`` of the minibatch in ``state`` (> 0: threshold missed)."""
        return [s.threshold - h for s, h in zip(self.specs, state.misc["hard"])]


class StepSizes:
    """The authors' adaptive learning rates: a shared multiplier m (primal lr ×m, dual lr ÷m) that
    shrinks by ``lr_factor`` while some hard defect exceeds ``lr_decrease_above`` and grows while
    every constraint holds, within ``lr_multiplier_range``. The primal base rate is
    ``primal_lr / n_free``."""

    def __init__(self, primal: torch.optim.Optimizer, dual: torch.optim.Optimizer, config: LIDConfig,
                 n_free: int):
        self.primal, self.dual, self.config = primal, dual, config
        self.primal_lr, self.multiplier = config.primal_lr / n_free, 1.0

    def shrink(self, factor: float) -> None:
        """Divide the multiplier by ``factor`` (kept above the range's low end), e.g. after a rollback."""
        self.multiplier = max(self.config.lr_multiplier_range[0], self.multiplier / factor)
        self._apply()

    def update(self, defects: list[float]) -> None:
        """One adaptive step from the per-spec hard defects ``τ − hard value`` (no-op unless ``adaptive_lr``)."""
        if not self.config.adaptive_lr:
            return
        if max(defects) > self.config.lr_decrease_above:
            self.multiplier /= self.config.lr_factor
        elif min(defects) < 0:
            self.multiplier *= self.config.lr_factor
        lo, hi = self.config.lr_multiplier_range
        self.multiplier = min(max(self.multiplier, lo), hi)
        self._apply()

    def _apply(self) -> None:
        for g in self.primal.param_groups:
            g["lr"] = self.primal_lr * self.multiplier
        for g in self.dual.param_groups:
            g["lr"] = self.config.dual_lr / self.multiplier


# ------------------------------------------------------------------------------- set up once
def offset_caps(base: Orthotope, config: LIDConfig, outer: Orthotope | None) -> tuple[ParamDict, ParamDict]:
    """Upper limits ``(cap_lower, cap_upper)`` of the offsets, each of the parameters' shapes and dtype:
    ``max_width``, 0 outside ``free``, and the distances from θ₀ to the outer box faces.

    Outer caps are computed in float64 and rounded towards zero, so that the float64 box
    ``[θ₀ − l, θ₀ + u]`` lies inside the outer one exactly.
    """
    cap_l, cap_u = {}, {}
    for n, ref in base.reference.items():
        cl = torch.full_like(ref, config.max_width, dtype=torch.float64)
        cu = cl.clone()
        if outer is not None:
            below, above = outer.face_distances({n: ref})[n]
            cl, cu = torch.minimum(cl, below), torch.minimum(cu, above)
        zero = torch.zeros((), dtype=torch.float64)
        out = []
        for c in (cl, cu):
            c = torch.where(base.free[n], c, zero)
            out.append(round_directed(c, ref.dtype, 0))
        cap_l[n], cap_u[n] = out
    return cap_l, cap_u


def width_weights(base: Orthotope, config: LIDConfig) -> ParamDict:
    """``LIDConfig.weights`` broadcast to each parameter's shape (default 1), 0 outside ``free``.

    Raises:
        InputError: a weight names a parameter outside the domain or does not broadcast to its shape.
    """
    given = dict(config.weights or {})
    unknown = sorted(set(given) - set(base.names))
    if unknown:
        raise InputError(f"LIDConfig.weights names parameter(s) {unknown} that are not in the domain "
                         f"({base.names})")
    out = {}
    for n, ref in base.reference.items():
        w = torch.as_tensor(given.get(n, 1.0), dtype=ref.dtype)
        try:
            w = torch.broadcast_to(w, ref.shape)
        except RuntimeError:
            raise InputError(f"LIDConfig.weights[{n!r}] has shape {tuple(w.shape)}, not broadcastable to "
                             f"{tuple(ref.shape)}") from None
        out[n] = torch.where(base.free[n], w, torch.zeros_like(w))
    return out


def base_domain(model: nn.Module, params: Sequence[str] | None, free: Mapping[str, Tensor] | None,
                outer: Orthotope | None) -> Orthotope:
    """The width-0 box at the model's weights θ₀ (a copy) over ``params``, with the ``free`` masks,
    checked against ``outer`` (same parameters and shapes, θ₀ inside it).

    Raises:
        DomainError: ``free`` names unknown parameters, nothing is free, or ``outer`` does not fit.
    """
    if free is not None:
        values = dict(model.named_parameters())
        unknown = sorted(set(free) - set(values if params is None else params))
        if unknown:
            raise DomainError(f"free masks given for parameter(s) {unknown} that are not in the domain")
    base = Orthotope.around(model, params, free=free)  # keeps a copy of θ₀ (training moves the model)
    if base.numel() == 0:
        raise DomainError("no free elements: every element of the domain is frozen")
    if outer is not None:
        _check_outer(base, outer)
    return base


def _check_outer(base: Orthotope, outer: Orthotope) -> None:
    if not isinstance(outer, Orthotope):
        raise DomainError(f"outer must be an Orthotope, got {type(outer).__name__}")
    if sorted(outer.names) != sorted(base.names):
        raise DomainError(f"the outer box covers {sorted(outer.names)}, the new domain {sorted(base.names)}; "
                          "they must cover the same parameters")
    for n in base.names:
        if outer.reference[n].shape != base.reference[n].shape:
            raise DomainError(f"parameter {n!r} has shape {tuple(base.reference[n].shape)} in the model "
                              f"and {tuple(outer.reference[n].shape)} in the outer box")
    reasons = outer.violations(base.reference)
    if reasons:
        raise DomainError("the current weights θ₀ are not inside the outer box, so no nested domain "
                          "around them exists (project the model into the outer box first): "
                          + "; ".join(reasons))
