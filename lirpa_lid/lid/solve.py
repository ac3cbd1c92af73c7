"""The LID optimiser: grow a box in weight space while a certified specification keeps holding.

Problem (paper "Provably Safe Model Updates", orthotope LIDs)::

    maximise  size(T)   over boxes T = [θ₀ − l, θ₀ + u], l, u ≥ 0
    s.t.      soft certified value_k(T) ≥ τ_k     for every specification k

``size`` is the mean width over the free elements (the paper code's default) or the mean
log-width ``log(l + u + floor)`` (log-volume per element). Margins are lower-bounded over the
whole box by a bound backend (IBP, CROWN, CROWN-IBP, α-CROWN: the optimiser never knows which).

Solver (as in the authors' code, with Cooper 1.0.1): augmented Lagrangian, one dense multiplier per
constraint (initialised at 0, kept ≥ 0), ``AlternatingDualPrimalOptimizer``; the dual step uses the
*hard* certified value of the minibatch (Cooper's ``strict_violation``), the primal step the soft one.
Primal: Adam on the offsets of the free elements, learning rate ``primal_lr / n_free``, starting
at width 0; after every step the offsets are projected onto ``[0, max_width]`` (each side), zero
outside ``free`` and, with an ``outer`` box, onto the distances from θ₀ to the outer faces (nesting).
Dual: SGD ascent. Penalty coefficient ×``penalty_growth`` while the hard defect exceeds
``penalty_tolerance``, reset to its initial value once the constraint holds (Cooper's
``MultiplicativePenaltyCoefficientUpdater`` defaults, as in the authors' code), capped at
``penalty_max``. Adaptive learning rates: a shared multiplier m (primal ×m, dual ÷m) shrinks by 1.1
while some hard defect exceeds 0.05 and grows by 1.1 while every constraint holds, m ∈ [1/20, 20].

Differences from the authors' code (each deliberate):

* the penalty coefficient is updated after Cooper's ``roll`` from the state it returns (the
  problem only reports state, as Cooper's design intends), not inside ``compute_cmp_state``: the
  update lands one half-step later;
* snapshots are evaluated on the *whole* optimisation set in float64, and a snapshot whose hard
  value falls below a threshold is shrunk towards θ₀ (offsets scaled by the largest factor found by
  bisection that satisfies every threshold) instead of being reported as it is — every candidate
  returned satisfies its thresholds on the optimisation set;
* the objective is normalised by the number of free elements (not all elements), so freezing
  parameters does not shrink the primal step;
* collapse rollback (``rollback_defect``, on by default; ``None`` gives the authors' loop): when the
  minibatch's hard value falls more than ``rollback_defect`` below a threshold, the offsets return
  to the last iterate whose minibatch met every threshold, Adam's state is reset and the step
  multiplier is divided by 4. Why: the soft surrogate saturates (``T = 10``), so items whose
  margins fall far below 0 give no gradient and never come back; with CROWN bounds (whose ReLU
  relaxation switches slopes abruptly) we saw runs lose half the items in two steps and stay there;
* optionally (``certify_method``, ``grow``) the snapshots are certified by a tighter bound method than
  the one that shaped them and enlarged along their own direction while it certifies them (off by
  default: the paper shapes and certifies with one method);
* ``dual_violation="soft"`` optionally drives the multipliers by the soft value too (a plain
  augmented Lagrangian, which converges to the KKT point of the soft problem; the tests use it on a
  problem with a known optimum). The default, ``"hard"``, is the authors' choice.

Cooper expresses everything here; the adaptive learning rates are set on the optimisers' parameter
groups directly (the authors used ``LambdaLR``; same effect).
"""
from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import cooper
import torch
from torch import Tensor, nn

from lirpa_lid.bounds.core import BoundBackend, BoundMethod
from lirpa_lid.bounds.resolve import resolve_backend
from lirpa_lid.domains.orthotope import Orthotope
from lirpa_lid.errors import DomainError, InputError, SpecificationError
from lirpa_lid.margin import bound_margins, hard_values, largest_scale, margins_within, scaled_box
from lirpa_lid.rounding import round_directed
from lirpa_lid.specification.base import Specification, as_spec_list

ParamDict = dict[str, Tensor]
OBJECTIVES = ("mean_width", "log_volume")


# ------------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class LIDConfig:
    """Hyperparameters of :func:`compute_lid` (defaults: the authors' MNIST settings).

    ``weights`` optionally maps parameter names to non-negative floats or tensors (broadcastable to
    the parameter) that weight each element's width in the objective (default 1). ``max_width``
    caps each offset (``l`` and ``u`` separately, as in the authors' code). ``eval_dtype`` is the
    arithmetic of the final evaluation of the candidates (float64 by default; optimisation itself
    runs in the model's dtype). ``time_limit`` (seconds, optional) makes the growth anytime: the loop
    stops at the first iteration after the limit and keeps a snapshot of where it got to (the
    evaluation of the snapshots, which makes every candidate sound, still runs after it).

    ``certify_method`` (default: ``method``) bounds the final evaluation of the snapshots, so a box
    shaped by a cheap method (IBP: one bound per iteration) can be certified by a tighter one (CROWN:
    a few bounds per snapshot). ``grow`` > 1 then tries to enlarge every snapshot that meets its
    thresholds: its offsets are scaled by the largest factor in ``[1, grow]`` that still meets every
    threshold (:func:`largest_scale`: a ladder of factors, then ``shrink_steps`` bisection steps),
    clipped to ``max_width`` and the outer box. With float64 evaluation, these searches (and the shrinking
    of snapshots below a threshold) run in float32 and the factor found is bounded in float64.
    """

    iterations: int = 200
    primal_lr: float = 0.33
    dual_lr: float = 0.01
    penalty: float = 1.0
    penalty_growth: float = 1.01
    penalty_tolerance: float = 0.05
    penalty_max: float = 1e3
    penalty_restart: bool = True
    snapshot_every: int = 20
    batch_size: int = 500
    method: str = "CROWN"
    objective: str = "mean_width"
    log_floor: float = 1e-6
    max_width: float = 10.0
    seed: int = 0
    progress: bool = True
    weights: Mapping[str, float | Tensor] | None = field(default=None, compare=False, hash=False)
    adaptive_lr: bool = True
    lr_factor: float = 1.1
    lr_multiplier_range: tuple[float, float] = (1 / 20, 20.0)
    lr_decrease_above: float = 0.05
    shrink_steps: int = 8
    rollback_defect: float | None = 0.2
    dual_violation: str = "hard"
    eval_dtype: torch.dtype = torch.float64
    time_limit: float | None = None
    certify_method: str | None = None
    grow: float = 1.0

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> InputError:
            return InputError(f"LIDConfig.{name} {why}, got {getattr(self, name)!r}")

        for name in ("iterations", "snapshot_every", "batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise bad(name, "must be a positive integer")
        if not isinstance(self.shrink_steps, int) or self.shrink_steps < 0:
            raise bad("shrink_steps", "must be a non-negative integer")
        for name in ("primal_lr", "dual_lr", "penalty", "penalty_max", "max_width", "log_floor"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise bad(name, "must be a positive finite number")
        if not (self.penalty_growth >= 1 and math.isfinite(self.penalty_growth)):
            raise bad("penalty_growth", "must be >= 1")
        if not (self.lr_factor >= 1 and math.isfinite(self.lr_factor)):
            raise bad("lr_factor", "must be >= 1")
        if self.rollback_defect is not None and not (0 < self.rollback_defect <= 1):
            raise bad("rollback_defect", "must be in (0, 1] or None")
        if not (self.penalty_tolerance >= 0 and self.lr_decrease_above >= 0):
            raise InputError("LIDConfig.penalty_tolerance and lr_decrease_above must be >= 0")
        lo, hi = self.lr_multiplier_range
        if not (0 < lo <= 1 <= hi < math.inf):
            raise bad("lr_multiplier_range", "must satisfy 0 < low <= 1 <= high")
        if self.dual_violation not in ("hard", "soft"):
            raise bad("dual_violation", "must be 'hard' (the authors' choice) or 'soft'")
        if self.objective not in OBJECTIVES:
            raise bad("objective", f"must be one of {OBJECTIVES}")
        BoundMethod.parse(self.method)  # raises InputError naming the choices
        if self.certify_method is not None:
            BoundMethod.parse(self.certify_method)
        if not (isinstance(self.grow, (int, float)) and not isinstance(self.grow, bool)
                and math.isfinite(self.grow) and self.grow >= 1):
            raise bad("grow", "must be a finite number >= 1 (1: snapshots are not enlarged)")
        if self.eval_dtype not in (torch.float32, torch.float64):
            raise bad("eval_dtype", "must be torch.float32 or torch.float64")
        if self.time_limit is not None and not (isinstance(self.time_limit, (int, float))
                                                and not isinstance(self.time_limit, bool)
                                                and math.isfinite(self.time_limit) and self.time_limit > 0):
            raise bad("time_limit", "must be a positive number of seconds or None")
        if self.weights is not None:
            if not isinstance(self.weights, Mapping):
                raise bad("weights", "must map parameter names to weights")
            for n, w in self.weights.items():
                w = torch.as_tensor(w, dtype=torch.float64)
                if not torch.isfinite(w).all() or (w < 0).any():
                    raise InputError(f"LIDConfig.weights[{n!r}] must be finite and >= 0")

    @property
    def final_method(self) -> BoundMethod:
        """The method that certifies the candidates (``certify_method``, else ``method``)."""
        return BoundMethod.parse(self.certify_method or self.method)

    def describe(self) -> dict:
        return {"method": BoundMethod.parse(self.method).value, "certify_method": self.final_method.value,
                "grow": self.grow, "iterations": self.iterations,
                "primal_lr": self.primal_lr, "dual_lr": self.dual_lr, "objective": self.objective,
                "batch_size": self.batch_size, "seed": self.seed, "time_limit": self.time_limit}


# ------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class Candidate:
    """One candidate domain (a detached snapshot along the growth path).

    ``hard_values`` holds, per specification, the hard certified value of the domain on the whole
    optimisation set (evaluated in ``LIDConfig.eval_dtype``); ``thresholds`` the τ it was grown for.
    ``scale`` < 1 means the snapshot was shrunk towards θ₀ to meet the thresholds, > 1 that it was
    enlarged (``LIDConfig.grow``); ``method`` is the bound method that certified it.
    """

    domain: Orthotope
    iteration: int
    hard_values: tuple[float, ...]
    thresholds: tuple[float, ...]
    spec_names: tuple[str, ...]
    method: str
    mean_width: float
    log_volume: float
    scale: float = 1.0
    label: str = ""

    @property
    def satisfied(self) -> bool:
        return all(v >= t for v, t in zip(self.hard_values, self.thresholds))

    def __repr__(self) -> str:
        vals = ", ".join(f"{n}={v:.3f}" for n, v in zip(self.spec_names, self.hard_values))
        return (f"Candidate(iter {self.iteration}, mean width {self.mean_width:.4g}, {vals}"
                f"{'' if self.scale == 1 else f', scaled x{self.scale:.3f}'})")


@dataclass
class LIDResult:
    """Output of :func:`compute_lid`: candidates (each meets every threshold on the optimisation
    set), snapshots that could not be made to (``rejected``), per-iteration ``history``."""

    candidates: list[Candidate]
    rejected: list[Candidate]
    history: dict[str, list]
    spec_names: list[str]
    thresholds: list[float]
    config: LIDConfig | list[LIDConfig]
    seconds: float
    runs: list[LIDResult] = field(default_factory=list)

    def largest(self) -> Candidate:
        """The candidate with the largest mean width."""
        return max(self.candidates, key=lambda c: c.mean_width)

    @property
    def domains(self) -> list[Orthotope]:
        return [c.domain for c in self.candidates]


def _eval_dtype(backend: BoundBackend, config: LIDConfig) -> torch.dtype | None:
    """float64 evaluation needs a backend that follows the inputs' dtype."""
    return config.eval_dtype if backend.follows_input_dtype else None


# ------------------------------------------------------------------------------- the problem
class _Batches:
    """Seeded minibatches of one reference set: shuffled epochs, or everything if it is small."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator):
        self.n, self.batch_size, self.generator = n, batch_size, generator
        self.order, self.pos = torch.empty(0, dtype=torch.long), 0

    def next(self) -> Tensor:
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
    shape; elements outside ``free`` are held at 0 by :meth:`project_`).
    """

    def __init__(self, backend: BoundBackend, specs: list[Specification], base: Orthotope,
                 config: LIDConfig, caps: tuple[ParamDict, ParamDict], weights: ParamDict):
        super().__init__()
        self.backend, self.specs, self.base, self.config = backend, specs, base, config
        self.method = BoundMethod.parse(config.method)
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
        for n in self.lower:
            self.lower[n].copy_(lower[n])
            self.upper[n].copy_(upper[n])

    def domain(self) -> Orthotope:
        """The current box (differentiable w.r.t. the offsets)."""
        return self.base.with_offsets(self.lower, self.upper)

    def snapshot(self) -> Orthotope:
        return self.base.with_offsets(*self.offsets())

    def size(self, domain: Orthotope) -> Tensor:
        """The objective: weighted mean width or mean log-width over the free elements."""
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


# ------------------------------------------------------------------------------- helpers
def _caps(base: Orthotope, config: LIDConfig, outer: Orthotope | None) -> tuple[ParamDict, ParamDict]:
    """Upper limits of the offsets: ``max_width``, 0 outside ``free``, and the outer box faces.

    Outer caps are computed in float64 and rounded towards zero, so that the float64 box
    ``[θ₀ − l, θ₀ + u]`` lies inside the outer one exactly.
    """
    cap_l, cap_u = {}, {}
    for n, ref in base.reference.items():
        cl = torch.full_like(ref, config.max_width, dtype=torch.float64)
        cu = cl.clone()
        if outer is not None:
            olo, ohi = (outer.reference[n].double() - outer.lower[n].detach().double(),
                        outer.reference[n].double() + outer.upper[n].detach().double())
            cl = torch.minimum(cl, (ref.double() - olo).clamp(min=0))
            cu = torch.minimum(cu, (ohi - ref.double()).clamp(min=0))
        zero = torch.zeros((), dtype=torch.float64)
        out = []
        for c in (cl, cu):
            c = torch.where(base.free[n], c, zero)
            out.append(round_directed(c, ref.dtype, 0))
        cap_l[n], cap_u[n] = out
    return cap_l, cap_u


def _weights(base: Orthotope, config: LIDConfig) -> ParamDict:
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


def _base_domain(model: nn.Module, params: Sequence[str] | None, free: Mapping[str, Tensor] | None,
                 outer: Orthotope | None) -> Orthotope:
    if free is not None:
        values = dict(model.named_parameters())
        unknown = sorted(set(free) - set(values if params is None else params))
        if unknown:
            raise DomainError(f"free masks given for parameter(s) {unknown} that are not in the domain")
    base = Orthotope.around(model, params, free=free)  # keeps a copy of θ₀ (training moves the model)
    if base.numel() == 0:
        raise DomainError("no free elements: every element of the domain is frozen")
    if outer is not None:
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
    return base


def _search_dtype(dtype: torch.dtype | None) -> torch.dtype | None:
    """Arithmetic of the factor searches of :func:`largest_scale` when candidates are checked in float64:
    float32 (convolutions in float64 have no fast CPU kernel); the factor found is bounded in float64."""
    return torch.float32 if dtype == torch.float64 else None


def _make_candidate(domain: Orthotope, iteration: int, values: tuple[float, ...],
                    specs: list[Specification], config: LIDConfig, scale: float, label: str) -> Candidate:
    logvol = float(domain.log_volume())
    return Candidate(domain=domain, iteration=iteration, hard_values=values,
                     thresholds=tuple(s.threshold for s in specs), spec_names=tuple(s.name for s in specs),
                     method=config.final_method.value, mean_width=float(domain.mean_width()),
                     log_volume=logvol, scale=scale, label=label)


def _evaluate_snapshots(backend, specs, snapshots, config, dtype, label,
                        limit: Orthotope) -> tuple[list[Candidate], list[Candidate]]:
    """Hard values of every snapshot on the whole optimisation set (bounded by ``config.final_method``);
    a snapshot below a threshold is rejected and replaced by its largest shrunk version that meets every
    threshold (if any); with ``config.grow`` > 1 one that meets them is enlarged (inside ``limit``, the
    largest box the LID may take) as far as they keep holding."""
    method = config.final_method
    candidates, rejected = [], []
    for iteration, dom in snapshots:
        margins = [margins_within(backend, s, dom, method, None, config.batch_size, dtype) for s in specs]
        vals = tuple(float(s.hard_value(m)) for s, m in zip(specs, margins))
        cand = _make_candidate(dom, iteration, vals, specs, config, 1.0, label)
        if cand.satisfied:
            if config.grow > 1 and float(dom.mean_width()) > 0:
                grown = largest_scale(backend, specs, dom, method, config.shrink_steps, config.grow,
                                      batch_size=config.batch_size, dtype=dtype, low=1.0, within=limit,
                                      search_dtype=_search_dtype(dtype))
                if grown is not None:
                    cand = _make_candidate(scaled_box(dom, grown[0], limit), iteration, grown[1], specs,
                                           config, grown[0], label)
            candidates.append(cand)
            continue
        rejected.append(cand)
        shrunk = largest_scale(backend, specs, dom, method, config.shrink_steps, known=margins,
                               batch_size=config.batch_size, dtype=dtype, search_dtype=_search_dtype(dtype))
        if shrunk is not None and shrunk[0] > 0:
            small = dom.scaled(shrunk[0])
            if float(small.mean_width()) > 0:
                candidates.append(_make_candidate(small, iteration, shrunk[1], specs, config, shrunk[0], label))
    return candidates, rejected


# ------------------------------------------------------------------------------- the loop's parts
HISTORY_KEYS = ("size", "mean_width", "soft", "hard", "multiplier", "penalty", "lr_multiplier", "rollbacks")


class _StepSizes:
    """The authors' adaptive learning rates: a shared multiplier m (primal lr ×m, dual lr ÷m) that
    shrinks by ``lr_factor`` while some hard defect exceeds ``lr_decrease_above`` and grows while
    every constraint holds, within ``lr_multiplier_range``."""

    def __init__(self, primal: torch.optim.Optimizer, dual: torch.optim.Optimizer, config: LIDConfig,
                 n_free: int):
        self.primal, self.dual, self.config = primal, dual, config
        self.primal_lr, self.multiplier = config.primal_lr / n_free, 1.0

    def shrink(self, factor: float) -> None:
        self.multiplier = max(self.config.lr_multiplier_range[0], self.multiplier / factor)
        self._apply()

    def update(self, defects: list[float]) -> None:
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


def _update_penalties(updater, problem: LIDProblem, state: cooper.CMPState, config: LIDConfig) -> None:
    """×growth while the (hard) violation exceeds the tolerance, reset once satisfied, capped."""
    updater.step(state.observed_constraints)
    for c in problem.constraints_by_spec:
        c.penalty_coefficient.value = c.penalty_coefficient.value.clamp(max=config.penalty_max)


def _progress(config: LIDConfig):
    if not config.progress:
        return None
    from tqdm import tqdm
    return tqdm(total=config.iterations, desc=f"LID ({BoundMethod.parse(config.method).value})", leave=False)


def _record(history: dict, problem: LIDProblem, state: cooper.CMPState, lr_multiplier: float,
            rollbacks: int, bar) -> None:
    with torch.no_grad():
        width = float(problem.domain().mean_width())
    history["size"].append(state.misc["size"])
    history["mean_width"].append(width)
    history["soft"].append(state.misc["soft"])
    history["hard"].append(state.misc["hard"])
    history["multiplier"].append([float(c.multiplier.weight.detach()) for c in problem.constraints_by_spec])
    history["penalty"].append([float(c.penalty_coefficient.value) for c in problem.constraints_by_spec])
    history["lr_multiplier"].append(lr_multiplier)
    history["rollbacks"].append(rollbacks)
    if bar is not None:
        bar.update(1)
        bar.set_postfix(width=f"{width:.3g}", soft=f"{min(state.misc['soft']):.3f}",
                        hard=f"{min(state.misc['hard']):.3f}")


# ------------------------------------------------------------------------------- entry points
def compute_lid(model: nn.Module, specs: Specification | Sequence[Specification],
                config: LIDConfig = LIDConfig(), backend: BoundBackend | str | None = None,
                outer: Orthotope | None = None, free: Mapping[str, Tensor] | None = None,
                params: Sequence[str] | None = None, label: str = "") -> LIDResult:
    """Grow a locally invariant domain around the model's current weights θ₀.

    Args:
        model: the network; its current weights are θ₀ (not modified).
        specs: one specification or a list (one constraint each, with its own threshold): certified
            accuracy, local robustness (:class:`CertifiedAccuracy` with ``epsilon``) or VNN-LIB
            properties (:class:`~lirpa_lid.specification.vnnlib.spec.VnnlibSpecification`), in any mix.
        config: hyperparameters.
        backend: a bound backend prepared for ``model``, or a backend name (default ``"native"``).
        outer: an earlier domain that must contain the new one (continual learning); θ₀ must be in it.
        free: boolean masks of the elements allowed to move (others keep width 0).
        params: names of the parameters the domain covers (default: all parameters).
        label: stored in every candidate (to tell pooled runs apart).

    Returns:
        an :class:`LIDResult` whose ``candidates`` all meet every threshold on the optimisation set.

    Raises:
        SpecificationError: if θ₀ itself (width 0) does not meet a threshold.
        DomainError: bad ``params``/``free``/``outer`` (e.g. θ₀ outside ``outer``).
    """
    started = time.perf_counter()
    specs = as_spec_list(specs)
    backend = resolve_backend(model, backend, list(params) if params is not None else None)
    base = _base_domain(model, params, free, outer)
    dtype = _eval_dtype(backend, config)
    values0 = hard_values(backend, specs, base, config.method, config.batch_size, dtype)
    for v, s in zip(values0, specs):
        if v < s.threshold:
            raise SpecificationError(
                f"specification {s.name!r} is not satisfied even at width 0 (the model's own weights): "
                f"certified value {v:.4f} < threshold {s.threshold:.4f}. Lower the threshold or improve "
                "the model first.")

    problem = LIDProblem(backend, specs, base, config, _caps(base, config, outer), _weights(base, config))
    primal = torch.optim.Adam(problem.primal_parameters(), lr=config.primal_lr / problem.n_free)
    dual = torch.optim.SGD(problem.dual_parameters(), lr=config.dual_lr, maximize=True)
    solver = cooper.optim.AlternatingDualPrimalOptimizer(cmp=problem, primal_optimizers=primal,
                                                         dual_optimizers=dual)
    updater = cooper.penalty_coefficients.MultiplicativePenaltyCoefficientUpdater(
        growth_factor=config.penalty_growth, violation_tolerance=config.penalty_tolerance,
        has_restart=config.penalty_restart)

    steps = _StepSizes(primal, dual, config, problem.n_free)
    history: dict[str, list] = {k: [] for k in HISTORY_KEYS}
    snapshots: list[tuple[int, Orthotope]] = []
    good: tuple[ParamDict, ParamDict] | None = None  # last offsets whose minibatch met every threshold
    rollbacks = 0
    bar = _progress(config)
    deadline = None if config.time_limit is None else started + config.time_limit
    for it in range(config.iterations):
        if deadline is not None and time.perf_counter() > deadline and it > 0:
            snapshots.append((it, problem.snapshot()))  # anytime: stop growing, keep what we have
            history["stopped_at"] = [it]
            break
        before = problem.offsets()
        state = solver.roll().cmp_state  # dual step, then primal step (Cooper)
        problem.project_()
        _update_penalties(updater, problem, state, config)
        defects = [s.threshold - h for s, h in zip(specs, state.misc["hard"])]
        if max(defects) <= 0:
            good = before
        elif config.rollback_defect is not None and good is not None and max(defects) > config.rollback_defect:
            # collapse: many items lost at once (the soft surrogate saturates, so no gradient brings
            # them back): return to the last feasible offsets with a smaller step
            problem.set_offsets(*good)
            primal.state.clear()
            steps.shrink(4.0)
            rollbacks += 1
        steps.update(defects)
        _record(history, problem, state, steps.multiplier, rollbacks, bar)
        if (it + 1) % config.snapshot_every == 0 or it + 1 == config.iterations:
            snapshots.append((it + 1, problem.snapshot()))
    if bar is not None:
        bar.close()

    limit = base.with_offsets(*problem.caps())
    candidates, rejected = _evaluate_snapshots(backend, specs, snapshots, config, dtype, label, limit)
    if not candidates:  # θ₀ itself always qualifies (checked above)
        values = values0 if config.final_method is BoundMethod.parse(config.method) else \
            hard_values(backend, specs, base, config.final_method, config.batch_size, dtype)
        candidates.append(_make_candidate(base.detach(), 0, values, specs, config, 0.0, label))
    return LIDResult(candidates=candidates, rejected=rejected, history=history,
                     spec_names=[s.name for s in specs], thresholds=[s.threshold for s in specs],
                     config=config, seconds=time.perf_counter() - started)


def compute_lid_pool(model: nn.Module, specs: Specification | Sequence[Specification],
                     configs: Sequence[LIDConfig], thresholds: Sequence[float | Sequence[float]] | None = None,
                     **kwargs) -> LIDResult:
    """Run :func:`compute_lid` once per configuration (optionally with other thresholds) and pool
    the candidates.

    ``thresholds[i]`` (a float for every spec, or one float per spec) replaces the specs' thresholds
    in run ``i``. Each candidate records its thresholds, method and ``label`` ("run i: …").
    Other keyword arguments go to every :func:`compute_lid` call.
    """
    specs = as_spec_list(specs)
    configs = list(configs)
    if not configs:
        raise InputError("compute_lid_pool needs at least one configuration")
    if thresholds is not None and len(thresholds) != len(configs):
        raise InputError(f"{len(thresholds)} threshold settings for {len(configs)} configurations")
    runs = []
    for i, cfg in enumerate(configs):
        run_specs = specs
        if thresholds is not None:
            t = thresholds[i]
            ts = [t] * len(specs) if isinstance(t, (int, float)) else list(t)
            if len(ts) != len(specs):
                raise InputError(f"thresholds[{i}] has {len(ts)} values for {len(specs)} specifications")
            run_specs = [s.with_threshold(v) for s, v in zip(specs, ts)]
        label = f"run {i}: {BoundMethod.parse(cfg.method).value}, tau=" + \
                "/".join(f"{s.threshold:.3g}" for s in run_specs)
        runs.append(compute_lid(model, run_specs, cfg, label=label, **kwargs))
    return LIDResult(candidates=[c for r in runs for c in r.candidates],
                     rejected=[c for r in runs for c in r.rejected],
                     history={"runs": [r.history for r in runs]}, spec_names=[s.name for s in specs],
                     thresholds=[min(c.thresholds[k] for r in runs for c in r.candidates)
                                 for k in range(len(specs))] if any(r.candidates for r in runs) else
                     [s.threshold for s in specs],
                     config=configs, seconds=sum(r.seconds for r in runs), runs=runs)


GROW = 4.0  # default growth factor of a "shape+certify" plan: one failing probe finds the range


def bound_plan(token: str, grow: float = GROW) -> dict:
    """:class:`LIDConfig` fields for a bound plan written ``"IBP"`` (shape and certify with one method) or
    ``"IBP+CROWN"`` (shape with the first, certify and grow up to ``grow`` with the second) — the form
    command lines and cached runs use."""
    parts = [t.strip() for t in str(token).split("+")]
    if len(parts) > 2 or not all(parts):
        raise InputError(f"bound plan {token!r}: write METHOD or SHAPE+CERTIFY (e.g. IBP+CROWN)")
    shaped = BoundMethod.parse(parts[0]).value
    if len(parts) == 1:
        return {"method": shaped}
    return {"method": shaped, "certify_method": BoundMethod.parse(parts[1]).value, "grow": float(grow)}


def bound_plans(text: str) -> list[str]:
    """A comma-separated list of bound plans (e.g. ``"IBP,IBP+CROWN"``), each checked by :func:`bound_plan`."""
    plans = [t.strip() for t in str(text).split(",") if t.strip()]
    for plan in plans:
        bound_plan(plan)
    return plans


def method_label(config: LIDConfig) -> str:
    """How a LID's boxes were bounded: ``"IBP"``, or ``"IBP → CROWN ×4"`` when a second method certifies
    (and grows, up to the factor shown) the snapshots."""
    shaped = BoundMethod.parse(config.method)
    if config.final_method is shaped and config.grow == 1:
        return shaped.value
    return f"{shaped.value} → {config.final_method.value}" + (f" ×{config.grow:g}" if config.grow > 1 else "")


def plan_label(token: str) -> str:
    """:func:`method_label` of a bound plan token (``"IBP+CROWN"`` → ``"IBP → CROWN ×4"``)."""
    return method_label(LIDConfig(**bound_plan(token)))


def with_config(config: LIDConfig, **changes) -> LIDConfig:
    """A copy of ``config`` with some fields changed (validated)."""
    return replace(config, **changes)
