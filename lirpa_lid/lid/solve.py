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

Where each part lives: :mod:`~lirpa_lid.lid.config` (:class:`LIDConfig`), :mod:`~lirpa_lid.lid.problem`
(the Cooper problem, offset caps, step sizes), :mod:`~lirpa_lid.lid.candidates` (evaluating snapshots),
:mod:`~lirpa_lid.lid.search` (shrinking and growing them), :mod:`~lirpa_lid.lid.plans` (bound plans); this
module runs the loop (:func:`compute_lid`, :func:`compute_lid_pool`).
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import cooper
import torch
from torch import Tensor, nn

from lirpa_lid.bounds.core import BoundBackend
from lirpa_lid.bounds.resolve import resolve_backend
from lirpa_lid.domains.orthotope import Orthotope
from lirpa_lid.errors import InputError, SpecificationError
from lirpa_lid.lid.candidates import Candidate, LIDResult, evaluate_snapshots, evaluation_dtype, make_candidate
from lirpa_lid.lid.config import OBJECTIVES, LIDConfig
from lirpa_lid.lid.plans import GROW, bound_plan, bound_plans, method_label, plan_label, with_config
from lirpa_lid.lid.problem import LIDProblem, ParamDict, StepSizes, base_domain, offset_caps, width_weights
from lirpa_lid.margin import hard_values
from lirpa_lid.progress import progress_bar
from lirpa_lid.specification.base import Specification, as_spec_list

__all__ = [
    # defined here
    "HISTORY_KEYS", "compute_lid", "compute_lid_pool",
    # defined in the sibling modules; importable from here as before the split
    "GROW", "OBJECTIVES", "Candidate", "LIDConfig", "LIDProblem", "LIDResult", "ParamDict", "bound_plan",
    "bound_plans", "method_label", "plan_label", "with_config",
]

#: what ``LIDResult.history`` records per iteration: objective, mean width, per-spec soft and hard values
#: of the minibatch, per-spec multipliers and penalty coefficients, the step multiplier, rollbacks so far
HISTORY_KEYS = ("size", "mean_width", "soft", "hard", "multiplier", "penalty", "lr_multiplier", "rollbacks")


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
        free: boolean masks of the elements allowed to move (others keep width 0), each of its
            parameter's shape.
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
    base = base_domain(model, params, free, outer)
    dtype = evaluation_dtype(backend, config)
    values0 = _values_at_theta0(backend, specs, base, config, dtype)
    problem = LIDProblem(backend, specs, base, config, offset_caps(base, config, outer), width_weights(base, config))
    growth = _Growth(problem, config)
    snapshots = growth.run(None if config.time_limit is None else started + config.time_limit)
    limit = base.with_offsets(*problem.caps())
    candidates, rejected = evaluate_snapshots(backend, specs, snapshots, config, dtype, label, limit)
    if not candidates:  # θ₀ itself always qualifies (checked above)
        candidates.append(_theta0_candidate(backend, specs, base, config, dtype, values0, label))
    return LIDResult(candidates=candidates, rejected=rejected, history=growth.history,
                     spec_names=[s.name for s in specs], thresholds=[s.threshold for s in specs],
                     config=config, seconds=time.perf_counter() - started)


def compute_lid_pool(model: nn.Module, specs: Specification | Sequence[Specification],
                     configs: Sequence[LIDConfig], thresholds: Sequence[float | Sequence[float]] | None = None,
                     **kwargs) -> LIDResult:
    """Run :func:`compute_lid` once per configuration (optionally with other thresholds) and pool
    the candidates.

    ``thresholds[i]`` (a float for every spec, or one float per spec) replaces the specs' thresholds
    in run ``i``. Each candidate records its thresholds, method and ``label`` ("run i: …").
    Other keyword arguments go to every :func:`compute_lid` call. The pooled result's ``thresholds``
    are, per spec, the lowest any candidate was grown for; its ``runs`` hold each run's result.
    """
    specs = as_spec_list(specs)
    configs = list(configs)
    if not configs:
        raise InputError("compute_lid_pool needs at least one configuration")
    if thresholds is not None and len(thresholds) != len(configs):
        raise InputError(f"{len(thresholds)} threshold settings for {len(configs)} configurations")
    runs = []
    for i, cfg in enumerate(configs):
        run_specs = specs if thresholds is None else _with_thresholds(specs, thresholds[i], i)
        label = f"run {i}: {cfg.method.value}, tau=" + "/".join(f"{s.threshold:.3g}" for s in run_specs)
        runs.append(compute_lid(model, run_specs, cfg, label=label, **kwargs))
    return _pooled(runs, specs, configs)


# ------------------------------------------------------------------------------- the loop
class _Growth:
    """The primal-dual loop over a :class:`LIDProblem` (see the module docstring).

    Cooper's ``AlternatingDualPrimalOptimizer`` takes the dual step (SGD ascent on the multipliers), then
    the primal one (Adam on the offsets); after it come the projection, the penalty update, the collapse
    rollback and the adaptive step sizes, each one named step of :meth:`step`.
    """

    def __init__(self, problem: LIDProblem, config: LIDConfig):
        self.problem, self.config = problem, config
        self.primal = torch.optim.Adam(problem.primal_parameters(), lr=config.primal_lr / problem.n_free)
        self.dual = torch.optim.SGD(problem.dual_parameters(), lr=config.dual_lr, maximize=True)
        self.solver = cooper.optim.AlternatingDualPrimalOptimizer(cmp=problem, primal_optimizers=self.primal,
                                                                  dual_optimizers=self.dual)
        self.penalties = cooper.penalty_coefficients.MultiplicativePenaltyCoefficientUpdater(
            growth_factor=config.penalty_growth, violation_tolerance=config.penalty_tolerance,
            has_restart=config.penalty_restart)
        self.steps = StepSizes(self.primal, self.dual, config, problem.n_free)
        self.history: dict[str, list] = {k: [] for k in HISTORY_KEYS}
        self.good: tuple[ParamDict, ParamDict] | None = None  # last offsets whose minibatch met every threshold
        self.rollbacks = 0

    def run(self, deadline: float | None) -> list[tuple[int, Orthotope]]:
        """``config.iterations`` steps (fewer past ``deadline``, a ``time.perf_counter()`` value); the
        ``(iteration, box)`` snapshots taken every ``snapshot_every`` steps, after the last one, and where
        the deadline stopped the loop (anytime: stop growing, keep what we have)."""
        config, snapshots = self.config, []
        with progress_bar(total=config.iterations, desc=f"LID ({config.method.value})", leave=False,
                          enabled=config.progress) as bar:
            for it in range(config.iterations):
                if deadline is not None and time.perf_counter() > deadline and it > 0:
                    snapshots.append((it, self.problem.snapshot()))
                    self.history["stopped_at"] = [it]
                    break
                state = self.step()
                _show(bar, self.history, state)
                if (it + 1) % config.snapshot_every == 0 or it + 1 == config.iterations:
                    snapshots.append((it + 1, self.problem.snapshot()))
        return snapshots

    def step(self) -> cooper.CMPState:
        """One iteration; returns the problem's report on the minibatch it used."""
        before = self.problem.offsets()
        state = self.solver.roll().cmp_state  # dual step, then primal step (Cooper)
        self.problem.project_()
        self._update_penalties(state)
        defects = self.problem.defects(state)
        self._keep_or_roll_back(before, defects)
        self.steps.update(defects)
        self._record(state)
        return state

    def _update_penalties(self, state: cooper.CMPState) -> None:
        """×growth while the (hard) violation exceeds the tolerance, reset once satisfied, capped."""
        self.penalties.step(state.observed_constraints)
        for c in self.problem.constraints_by_spec:
            c.penalty_coefficient.value = c.penalty_coefficient.value.clamp(max=self.config.penalty_max)

    def _keep_or_roll_back(self, before: tuple[ParamDict, ParamDict], defects: list[float]) -> None:
        """Remember offsets whose minibatch met every threshold; on a collapse (a defect above
        ``rollback_defect``: many items lost at once, and the saturated soft surrogate gives no gradient
        to bring them back) return to them with a fresh Adam state and a step 4 times smaller."""
        if max(defects) <= 0:
            self.good = before
        elif (self.config.rollback_defect is not None and self.good is not None
              and max(defects) > self.config.rollback_defect):
            self.problem.set_offsets(*self.good)
            self.primal.state.clear()
            self.steps.shrink(4.0)
            self.rollbacks += 1

    def _record(self, state: cooper.CMPState) -> None:
        problem, history = self.problem, self.history
        with torch.no_grad():
            width = float(problem.domain().mean_width())
        history["size"].append(state.misc["size"])
        history["mean_width"].append(width)
        history["soft"].append(state.misc["soft"])
        history["hard"].append(state.misc["hard"])
        history["multiplier"].append([float(c.multiplier.weight.detach()) for c in problem.constraints_by_spec])
        history["penalty"].append([float(c.penalty_coefficient.value) for c in problem.constraints_by_spec])
        history["lr_multiplier"].append(self.steps.multiplier)
        history["rollbacks"].append(self.rollbacks)


def _show(bar, history: dict[str, list], state: cooper.CMPState) -> None:
    bar.update(1)
    bar.set_postfix(width=f"{history['mean_width'][-1]:.3g}", soft=f"{min(state.misc['soft']):.3f}",
                    hard=f"{min(state.misc['hard']):.3f}")


# ------------------------------------------------------------------------------- before and after the loop
def _values_at_theta0(backend: BoundBackend, specs: list[Specification], base: Orthotope, config: LIDConfig,
                      dtype: torch.dtype | None) -> tuple[float, ...]:
    """Hard values of θ₀ itself (width 0) by ``config.method``; each must meet its threshold."""
    values0 = hard_values(backend, specs, base, config.method, config.batch_size, dtype)
    for v, s in zip(values0, specs):
        if v < s.threshold:
            raise SpecificationError(
                f"specification {s.name!r} is not satisfied even at width 0 (the model's own weights): "
                f"certified value {v:.4f} < threshold {s.threshold:.4f}. Lower the threshold or improve "
                "the model first.")
    return values0


def _theta0_candidate(backend: BoundBackend, specs: list[Specification], base: Orthotope, config: LIDConfig,
                      dtype: torch.dtype | None, values0: tuple[float, ...], label: str) -> Candidate:
    """θ₀ itself as the one candidate (no snapshot qualified), certified by ``config.final_method``."""
    values = values0 if config.final_method is config.method else \
        hard_values(backend, specs, base, config.final_method, config.batch_size, dtype)
    return make_candidate(base.detach(), 0, values, specs, config, 0.0, label)


def _with_thresholds(specs: list[Specification], t: float | Sequence[float], i: int) -> list[Specification]:
    """The specs with run ``i``'s thresholds (one float for all, or one per spec)."""
    ts = [t] * len(specs) if isinstance(t, (int, float)) else list(t)
    if len(ts) != len(specs):
        raise InputError(f"thresholds[{i}] has {len(ts)} values for {len(specs)} specifications")
    return [s.with_threshold(v) for s, v in zip(specs, ts)]


def _pooled(runs: list[LIDResult], specs: list[Specification], configs: list[LIDConfig]) -> LIDResult:
    """One result holding every run's candidates (and the runs themselves)."""
    found = any(r.candidates for r in runs)
    thresholds = [min(c.thresholds[k] for r in runs for c in r.candidates) for k in range(len(specs))] \
        if found else [s.threshold for s in specs]
    return LIDResult(candidates=[c for r in runs for c in r.candidates],
                     rejected=[c for r in runs for c in r.rejected],
                     history={"runs": [r.history for r in runs]}, spec_names=[s.name for s in specs],
                     thresholds=thresholds, config=configs, seconds=sum(r.seconds for r in runs), runs=runs)
