"""``edit``: the smallest change of a network's last Linear layer that makes properties provably hold.

Steps (each a named function below):

1. validate the model (finite, a chain ending in Linear), the properties (``properties.py``), the edited
   parameters and the LID ``within``;
2. check the properties at θ (``check.py``): all certified → ``ALREADY_HOLDS``, no change;
3. the editing LP (``lp.py``) over the relaxation of every property on its sub-boxes (``relaxation.py``);
   when it is infeasible, halve every sub-box and solve again, up to ``max_splits`` sub-boxes per
   property; still infeasible → ``INFEASIBLE`` (the reason says whether the LP on the sub-box centres alone,
   where the relaxation is exact, is infeasible too: then no edit of the layer can satisfy the properties);
4. write ``W + ΔW``, ``b + Δb`` into a deep copy (in the model's dtype; inside ``within`` the LP's bounds
   are the LID box rounded inwards to that dtype, so rounding keeps the edit inside it) and check every
   property again, independently, at the written weights: all certified → ``EDITED``, else
   ``NOT_CERTIFIED`` with the reason. The change norms are measured on the written weights (float64).
"""
from __future__ import annotations

import copy
import enum
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lirpa_lid.bounds.core import check_model_finite
from lirpa_lid.domains.base import WeightDomain
from lirpa_lid.editing.check import CheckOptions, PropertyCheck, check_properties
from lirpa_lid.editing.lp import OBJECTIVES, Constraints, LPSolution, solve_edit
from lirpa_lid.editing.properties import EditProperty, as_edit_properties
from lirpa_lid.editing.relaxation import LastLayer, bisect, hidden_boxes, last_linear_layer
from lirpa_lid.errors import DomainError, InputError, ModelError
from lirpa_lid.solvers import SolveStatus, available_solvers


class EditStatus(str, enum.Enum):
    """How an edit ended."""

    EDITED = "edited"                  # edited and every property certified at the new weights
    ALREADY_HOLDS = "already-holds"    # every property certified before any edit: no change
    INFEASIBLE = "infeasible"          # no edit of the layer satisfies the relaxation within the budget
    NOT_CERTIFIED = "not-certified"    # the LP's edit could not be certified independently


@dataclass(frozen=True)
class EditResult:
    """The outcome of :func:`edit`.

    Attributes:
        status: how it ended; ``reason`` says why when it is not ``EDITED`` / ``ALREADY_HOLDS``.
        model: the edited copy (``EDITED``, ``NOT_CERTIFIED``: the LP's edit, for inspection), a copy of
            the original (``ALREADY_HOLDS``), or ``None`` (``INFEASIBLE``).
        params: the names of the edited parameters.
        linf, mean_abs: ``‖θ′ − θ‖∞`` and ``mean |θ′ − θ|`` over the edited parameters, float64, measured on
            the written weights (NaN without an edit).
        seconds: wall-clock time of the whole call.
        sub_boxes: sub-boxes of the last LP, over all properties.
        lp_solves: LP solves made (each ``"linf"`` round solves twice).
        solver, solver_version: the LP solver.
        checks: per property, the independent check of the returned model (before the edit for
            ``ALREADY_HOLDS`` / ``INFEASIBLE``).
    """

    status: EditStatus
    model: nn.Module | None
    params: tuple[str, ...]
    linf: float
    mean_abs: float
    seconds: float
    sub_boxes: int
    lp_solves: int
    solver: str
    solver_version: str
    checks: tuple[PropertyCheck, ...]
    reason: str = ""

    @property
    def edited(self) -> bool:
        """Whether the returned model is certified on every property (``EDITED`` or ``ALREADY_HOLDS``)."""
        return self.status in (EditStatus.EDITED, EditStatus.ALREADY_HOLDS)

    def describe(self) -> dict:
        """A JSON record (without the model)."""
        return {"status": self.status.value, "reason": self.reason, "params": list(self.params), "linf": self.linf,
                "mean_abs": self.mean_abs, "seconds": round(self.seconds, 3), "sub_boxes": self.sub_boxes,
                "lp_solves": self.lp_solves, "solver": self.solver, "solver_version": self.solver_version,
                "properties": [c.describe() for c in self.checks]}


@dataclass(frozen=True)
class _Plan:
    """The validated problem: the layer, the properties, the bounds of the change ``(weight, bias)``."""

    layer: LastLayer
    properties: list[EditProperty]
    input_shape: tuple[int, ...]
    params: tuple[str, ...]
    delta_lower: tuple[np.ndarray, np.ndarray]
    delta_upper: tuple[np.ndarray, np.ndarray]


def edit(model: nn.Module, properties, params: Sequence[str] | None = None, within: WeightDomain | None = None, *,
         input_shape: Sequence[int] | None = None, objective: str = "linf", margin: float = 1e-5,
         solver: str = "highs", max_splits: int = 64, tighten: int = 0, time_limit: float | None = 60.0,
         method: str = "CROWN", check: CheckOptions = CheckOptions()) -> EditResult:
    """Edit the last Linear layer of ``model`` so that every property provably holds (module docstring).

    Args:
        model: a chain of Linear / ReLU / constant element-wise affine / reshape layers ending in Linear;
            not modified.
        properties: ``EditProperty``, ``VnnlibProperty`` (unions of single half-spaces as unsafe set) or
            ``(lower [n_in], upper [n_in], C [k, n_out], d [k])`` meaning ``C·f(x) − d > 0`` on the box; or a
            sequence of them.
        params: the parameters to edit: the last Linear layer's weight and/or bias (default: both).
        within: a box weight domain (an ``Orthotope``, e.g. a certificate's LID) the edited model must stay
            in; it must contain the model and cover every edited parameter.
        input_shape: the model's input shape without the batch dimension (default ``[n_in]``).
        objective: ``"linf"`` (``‖Δ‖∞``, ties broken by ``mean |Δ|``) or ``"l1"`` (``mean |Δ|``).
        margin: every row must hold with ``C·f − d ≥ margin`` in the LP (absolute, output units), so that
            rounding the weights to the model's dtype keeps it > 0.
        solver: LP solver name (``lirpa_lid.solvers``).
        max_splits: most sub-boxes per property of the LP (≥ 1; a power of two is reached exactly).
        tighten: after the first feasible LP, halve every sub-box up to this many more times (within
            ``max_splits``) and keep the smallest edit: finer sub-boxes give a tighter relaxation, hence a
            smaller change.
        time_limit: seconds per LP solve (None: no limit).
        method: bound method of the relaxation's layer-input boxes.
        check: budgets of the independent checks (``CheckOptions``).

    Raises:
        ModelError, SpecificationError, DomainError, InputError: bad model, property, LID or option.
    """
    start = time.perf_counter()
    _check_options(objective, margin, solver, max_splits)
    if not (isinstance(tighten, int) and tighten >= 0):
        raise InputError(f"tighten must be an integer >= 0, got {tighten!r}")
    plan = _plan(model, properties, params, within, input_shape)
    before = check_properties(model, plan.properties, plan.input_shape, check)
    if all(c.certified for c in before):
        return EditResult(EditStatus.ALREADY_HOLDS, copy.deepcopy(model), plan.params, 0.0, 0.0,
                          time.perf_counter() - start, 0, 0, solver, "", before)
    solution, boxes, solves, reason = _solve_with_splits(model, plan, objective, margin, solver, max_splits,
                                                         tighten, time_limit, method)
    if solution.delta_weight is None:
        return EditResult(EditStatus.INFEASIBLE, None, plan.params, math.nan, math.nan, time.perf_counter() - start,
                          boxes, solves, solution.solver, solution.solver_version, before, reason)
    edited = _apply(model, plan.layer, solution)
    linf, mean_abs = _change(model, edited, plan.params)
    after = check_properties(edited, plan.properties, plan.input_shape, check)
    problems = _problems(after, edited, within)
    status = EditStatus.NOT_CERTIFIED if problems else EditStatus.EDITED
    return EditResult(status, edited, plan.params, linf, mean_abs, time.perf_counter() - start, boxes, solves,
                      solution.solver, solution.solver_version, after, "; ".join(problems))


# ------------------------------------------------------------------------------- step 1: validation
def _check_options(objective: str, margin: float, solver: str, max_splits: int) -> None:
    if objective not in OBJECTIVES:
        raise InputError(f"unknown edit objective {objective!r}; choose one of {list(OBJECTIVES)}")
    if not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin >= 0):
        raise InputError(f"margin must be a finite number >= 0, got {margin!r}")
    if str(solver).lower() not in available_solvers():
        raise InputError(f"solver {solver!r} is not available; available: {list(available_solvers())}")
    if not (isinstance(max_splits, int) and max_splits >= 1):
        raise InputError(f"max_splits must be an integer >= 1, got {max_splits!r}")


def _plan(model: nn.Module, properties, params: Sequence[str] | None, within: WeightDomain | None,
          input_shape: Sequence[int] | None) -> _Plan:
    if not isinstance(model, nn.Module):
        raise ModelError(f"edit() takes a torch.nn.Module, got {type(model).__name__}")
    check_model_finite(model)
    shape = tuple(input_shape) if input_shape is not None else (_first_linear(model).in_features,)
    layer = last_linear_layer(model, shape)
    props = as_edit_properties(properties, math.prod(shape), layer.n_outputs)
    editable = tuple(n for n in (layer.weight_name, layer.bias_name) if n is not None)
    chosen = editable if params is None else tuple(params)
    unknown = [n for n in chosen if n not in editable]
    if unknown or not chosen:
        raise InputError(f"cannot edit {unknown or 'no parameters'}: editing changes the last Linear layer only "
                         f"(parameters {list(editable)}); several layers are not supported yet")
    lower, upper = _delta_bounds(model, layer, chosen, within)
    return _Plan(layer, props, shape, chosen, lower, upper)


def _first_linear(model: nn.Module) -> nn.Linear:
    for module in model.modules():
        if isinstance(module, nn.Linear):
            return module
    raise ModelError("the model has no Linear layer; pass input_shape")


def _delta_bounds(model: nn.Module, layer: LastLayer, chosen: tuple[str, ...], within: WeightDomain | None
                  ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Bounds of ``(ΔW, Δb)``: 0 for a frozen parameter, free, or the LID box rounded inwards minus θ."""
    values = {layer.weight_name: layer.weight, layer.bias_name: layer.bias}
    lower, upper = {}, {}
    for name, value in values.items():
        free = name is not None and name in chosen
        lower[name] = np.full(value.shape, -np.inf if free else 0.0)
        upper[name] = np.full(value.shape, np.inf if free else 0.0)
    if within is not None:
        if not callable(getattr(within, "inner_bounds", None)) or not callable(getattr(within, "violations", None)):
            raise DomainError(f"'within' must be a box weight domain (an Orthotope), got {type(within).__name__}")
        outside = [n for n in chosen if n not in within.names]
        if outside:
            raise DomainError(f"edited parameter(s) {outside} are not in the LID 'within' (its parameters: "
                              f"{within.names}); an edit outside it would invalidate its certificates")
        reasons = within.violations(model)
        if reasons:
            raise DomainError("the model is not inside the LID 'within': " + "; ".join(reasons))
        dtype = dict(model.named_parameters())[layer.weight_name].dtype
        for name, (lo, hi) in within.inner_bounds(dtype, list(chosen)).items():
            lower[name] = np.maximum(lower[name], lo.detach().double().cpu().numpy() - values[name])
            upper[name] = np.minimum(upper[name], hi.detach().double().cpu().numpy() - values[name])
            lower[name], upper[name] = np.minimum(lower[name], 0.0), np.maximum(upper[name], 0.0)
    return (lower[layer.weight_name], lower[layer.bias_name]), (upper[layer.weight_name], upper[layer.bias_name])


# ------------------------------------------------------------------------------- step 3: the LP with splitting
def _constraints(model: nn.Module, plan: _Plan, lower: np.ndarray, upper: np.ndarray, owner: np.ndarray,
                 method: str) -> Constraints:
    """Every row of every property on each of its sub-boxes ``[S, n_in]`` (``owner[s]``: its property)."""
    hl, hu = hidden_boxes(model, plan.layer, lower, upper, plan.input_shape, method)
    C, d, low, up = [], [], [], []
    for s, p in enumerate(owner):
        prop = plan.properties[p]
        C.append(prop.C)
        d.append(prop.d)
        low.append(np.repeat(hl[s:s + 1], prop.n_rows, axis=0))
        up.append(np.repeat(hu[s:s + 1], prop.n_rows, axis=0))
    return Constraints(np.concatenate(C), np.concatenate(d), np.concatenate(low), np.concatenate(up))


def _solve_with_splits(model: nn.Module, plan: _Plan, objective: str, margin: float, solver: str, max_splits: int,
                       tighten: int, time_limit: float | None, method: str) -> tuple[LPSolution, int, int, str]:
    """The LP over ever finer sub-boxes until it is feasible (then ``tighten`` more rounds, keeping the
    smallest edit) or ``max_splits`` is reached; returns the chosen solution, its sub-box count, the number
    of solves and, when infeasible, the reason."""
    lower = np.stack([p.lower for p in plan.properties])
    upper = np.stack([p.upper for p in plan.properties])
    owner = np.arange(len(plan.properties))
    scale = upper - lower
    solves, best, extra = 0, None, 0
    while True:
        cons = _constraints(model, plan, lower, upper, owner, method)
        solution = solve_edit(plan.layer.weight, plan.layer.bias, cons, plan.delta_lower, plan.delta_upper,
                              margin=margin, objective=objective, solver=solver, time_limit=time_limit)
        solves += 2 if objective == "linf" and solution.status is SolveStatus.OPTIMAL else 1
        per_property = lower.shape[0] // len(plan.properties)
        if solution.status is SolveStatus.OPTIMAL:
            if best is None or _size(solution, objective) < _size(best[0], objective):
                best = (solution, lower.shape[0])
            if extra >= tighten or 2 * per_property > max_splits:
                return best[0], best[1], solves, ""
            extra += 1
        elif best is not None:  # a finer split is never less feasible; a stopped solve keeps the best so far
            return best[0], best[1], solves, ""
        elif solution.status is not SolveStatus.INFEASIBLE:
            return solution, lower.shape[0], solves, f"the LP solver stopped: {solution.status.value} {solution.note}"
        elif 2 * per_property > max_splits:
            reason = _infeasible_reason(model, plan, lower, upper, owner, margin, solver, time_limit, per_property)
            return solution, lower.shape[0], solves + 1, reason
        lower, upper = bisect(lower, upper, scale)
        owner, scale = np.concatenate([owner, owner]), np.concatenate([scale, scale])


def _size(solution: LPSolution, objective: str) -> float:
    """The objective's value of a solution (``‖Δ‖∞`` or ``mean |Δ|``)."""
    return solution.linf if objective == "linf" else solution.mean_abs


def _infeasible_reason(model: nn.Module, plan: _Plan, lower: np.ndarray, upper: np.ndarray, owner: np.ndarray,
                       margin: float, solver: str, time_limit: float | None, per_property: int) -> str:
    """Why the LP is infeasible: at the sub-box centres the relaxation is exact, so an infeasible LP there
    proves that no edit of the layer (within the LID) makes the properties hold."""
    centre = (lower + upper) / 2
    cons = _constraints(model, plan, centre, centre, owner, "IBP")
    points = solve_edit(plan.layer.weight, plan.layer.bias, cons, plan.delta_lower, plan.delta_upper,
                        margin=margin, objective="l1", solver=solver, time_limit=time_limit)
    where = "" if not np.isfinite(plan.delta_lower[0]).all() else " inside the LID"
    if points.status is SolveStatus.INFEASIBLE:
        return (f"no edit of {list(plan.params)}{where} satisfies the properties even at the {centre.shape[0]} "
                f"sub-box centres (proved by the LP there, where the relaxation is exact)")
    return (f"the relaxation over {per_property} sub-box(es) per property is infeasible{where}; more sub-boxes "
            f"(max_splits) may make it feasible (the LP at the sub-box centres alone is feasible)")


# ------------------------------------------------------------------------------- step 4: apply and check
def _apply(model: nn.Module, layer: LastLayer, solution: LPSolution) -> nn.Module:
    """A deep copy of ``model`` with ``W + ΔW``, ``b + Δb`` written in its parameters' dtype."""
    edited = copy.deepcopy(model)
    named = dict(edited.named_parameters())
    with torch.no_grad():
        for name, base, delta in ((layer.weight_name, layer.weight, solution.delta_weight),
                                  (layer.bias_name, layer.bias, solution.delta_bias)):
            if name is not None and np.any(delta != 0):
                p = named[name]
                p.copy_(torch.from_numpy(base + delta).to(p.dtype))
    return edited


def _change(model: nn.Module, edited: nn.Module, names: tuple[str, ...]) -> tuple[float, float]:
    """``‖θ′ − θ‖∞`` and ``mean |θ′ − θ|`` over ``names``, float64."""
    old, new = dict(model.named_parameters()), dict(edited.named_parameters())
    diff = torch.cat([(new[n].detach().double() - old[n].detach().double()).reshape(-1) for n in names]).abs()
    return float(diff.max()), float(diff.mean())


def _problems(checks: tuple[PropertyCheck, ...], edited: nn.Module, within: WeightDomain | None) -> list[str]:
    """Why the edited model is not certified (empty: it is)."""
    problems = [f"property {c.name!r}: proof {c.proof} after {c.sub_boxes} sub-box(es)"
                + ("" if c.counterexample is None else f", counterexample at x = {list(c.counterexample)}")
                for c in checks if not c.certified]
    if within is not None:
        problems += [f"outside the LID: {r}" for r in within.violations(edited)]
    return problems
