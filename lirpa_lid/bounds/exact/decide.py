"""Exact margins: decide, for one item and one specification row ``c``, whether ``min c·f(x; θ) > 0`` over
every θ of a weight box (and every x of an input box) — by one MILP per (item, row).

    results = exact_margins(model, x, box, C, options=ExactOptions(time_limit=30))   # [B][S]
    results[0][1].status          # ExactStatus.CERTIFIED / COUNTEREXAMPLE / UNDECIDED
    results[0][1].bound           # the solver's proved lower bound of the margin

The outcome of each (item, row):

* ``CERTIFIED``: the solve finished and its *proved* bound exceeds the tolerance of
  :func:`certification_tolerance`: ``OPTIMAL`` with ``SolveResult.bound`` (never the incumbent) above it,
  or — with ``ExactOptions.cutoff``, the default — ``INFEASIBLE`` once the row ``c·f ≤ 2·tolerance`` is
  added, which proves ``min c·f > 2·tolerance`` (the bound recorded is that cutoff). Sound whether or not the
  encoding is exact (McCormick envelopes relax, they never cut off a real (θ, x)).
* ``COUNTEREXAMPLE``: a concrete θ in the domain (clamped into ``domain.inner_bounds(float64)``, so
  ``domain.contains`` holds exactly) and x in the input box whose margin, recomputed by a float64 forward
  pass of the model itself (``torch.func.functional_call``), is < 0. Candidates: the solver's incumbent
  (even of a solve stopped by a limit, or of a relaxation), then θ₀ with the given input.
* ``UNDECIDED``: anything else — a limit stopped the solver, the McCormick relaxation was not tight
  enough, the solver failed or its licence did not cover the program, or the bound is ≤ the tolerance
  and no candidate violates in float64. ``reason`` says which.
"""
from __future__ import annotations

import copy
import enum
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from lirpa_lid.bounds.core import BoundMethod, InputBox, spec_matrix
from lirpa_lid.bounds.exact.chain import ExactChain, on_cpu, prepare_chain
from lirpa_lid.bounds.exact.encoding import MarginEncoding, encode_item
from lirpa_lid.domains.base import WeightDomain
from lirpa_lid.errors import InputError
from lirpa_lid.solvers import Program, SolveOptions, SolveResult, SolverLicenseError, SolveStatus, solve, solver_version

#: relative part of the certification tolerance (see ``certification_tolerance``)
RELATIVE_TOLERANCE = 1e-7
_BILINEAR = ("mccormick", "exact")


class ExactStatus(str, enum.Enum):
    """How one (item, row) was decided."""

    CERTIFIED = "certified"
    COUNTEREXAMPLE = "counterexample"
    UNDECIDED = "undecided"


@dataclass(frozen=True)
class ExactOptions:
    """Settings of exact margins, validated here and translated into solver options in ``_solve``.

    Attributes:
        solver, fallback: as in ``lirpa_lid.solvers.solve`` (``fallback``: another solver when ``solver``'s
            licence does not cover a program; without one such an item is UNDECIDED).
        time_limit, node_limit: per (item, row) solve; a solve stopped by one is never CERTIFIED.
        threads, mip_rel_gap, mip_abs_gap, seed: passed to the solver (gaps ``None``: its defaults; the
            proved bound is what decides, so a gap never makes a result unsound).
        intermediate: the bound method whose intermediate bounds give the big-M constants and variable
            bounds (``"IBP"``, ``"CROWN"``, ...; tighter bounds, smaller M).
        bilinear: ``"mccormick"`` (every solver; sound, not exact where a boxed layer's input moves) or
            ``"exact"`` (Gurobi ``NonConvex=2``: each product also as a quadratic equality row).
        feasibility_tolerance: the solver's optimality / feasibility tolerance ε used by
            ``certification_tolerance`` (1e-6: Gurobi's defaults, and HiGHS's MIP feasibility tolerance,
            which is above its dual feasibility tolerance 1e-7).
        cutoff: decide rather than optimise: add the row ``c·f ≤ 2·tolerance`` (``MarginEncoding.cut_off_above_``)
            so that the solver prunes every branch already certified and ends INFEASIBLE as soon as no point
            can violate (orders of magnitude faster on certifiable items); the result's ``bound`` is then the
            cutoff, not the minimum. ``False``: minimise to the optimum (``bound`` is the solver's best bound).
    """

    solver: str = "highs"
    fallback: str | None = None
    time_limit: float | None = 60.0
    node_limit: int | None = None
    threads: int | None = 1
    mip_rel_gap: float | None = None
    mip_abs_gap: float | None = None
    seed: int | None = 0
    intermediate: BoundMethod | str = BoundMethod.CROWN
    bilinear: str = "mccormick"
    feasibility_tolerance: float = 1e-6
    cutoff: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "intermediate", BoundMethod.parse(self.intermediate))
        solver_version(self.solver)  # InputError naming the valid solvers
        if self.fallback is not None:
            solver_version(self.fallback)
        self.solve_options()  # InputError for a bad limit, gap or thread count
        if self.bilinear not in _BILINEAR:
            raise InputError(f"unknown bilinear encoding {self.bilinear!r}; choose one of {list(_BILINEAR)}")
        if self.bilinear == "exact" and self.solver.strip().lower() != "gurobi":
            raise InputError("bilinear='exact' needs solver='gurobi' (HiGHS solves no quadratic rows); use "
                             "bilinear='mccormick' with HiGHS")
        if not (isinstance(self.feasibility_tolerance, (int, float)) and 0 <= self.feasibility_tolerance < math.inf):
            raise InputError(f"feasibility_tolerance must be a finite number >= 0, got {self.feasibility_tolerance!r}")

    def solve_options(self) -> SolveOptions:
        """The solver options these settings mean (``non_convex`` for exact bilinear rows)."""
        return SolveOptions(time_limit=self.time_limit, node_limit=self.node_limit, threads=self.threads,
                            mip_rel_gap=self.mip_rel_gap, mip_abs_gap=self.mip_abs_gap,
                            non_convex=self.bilinear == "exact", seed=self.seed)


@dataclass(frozen=True)
class ExactResult:
    """The decision for one (item, specification row); margin > 0 means the row is satisfied.

    Attributes:
        status: CERTIFIED, COUNTEREXAMPLE or UNDECIDED (module docstring).
        bound: the solver's proved lower bound of ``min c·f`` over the encoding's feasible set (``-inf``
            when nothing was proved); a lower bound of the true minimum up to ``tolerance``. With
            ``ExactOptions.cutoff``, a solve that proved no point below the cutoff reports the cutoff.
        tolerance: what ``bound`` must exceed to certify (``certification_tolerance``).
        incumbent: the objective of the solver's best point (an upper bound of the program's minimum;
            of the true minimum only when ``exact``), or ``None``.
        margin: the float64 margin at ``weights``/``input`` (the counterexample), else ``None``.
        weights: the counterexample's boxed parameters, float64 tensors by name (inside the domain).
        input: the counterexample's input, float64 ``[*input_shape]`` (inside the input box).
        exact: the encoding's minimum is the true minimum (no McCormick relaxation).
        solve_status: how the solve ended (``None`` when the licence refused the program).
        solver, solver_version, seconds, nodes: of the solve (``seconds``: the solver call).
        binaries, products: unstable ReLUs and McCormick product variables of the encoding.
        reason: why, in words (the empty string for CERTIFIED).
    """

    status: ExactStatus
    bound: float
    tolerance: float
    incumbent: float | None
    exact: bool
    solve_status: SolveStatus | None
    solver: str
    solver_version: str
    seconds: float
    nodes: int
    binaries: int
    products: int
    margin: float | None = None
    weights: dict[str, Tensor] | None = field(default=None, repr=False)
    input: Tensor | None = field(default=None, repr=False)
    reason: str = ""

    @property
    def certified(self) -> bool:
        """Whether the row holds for every θ of the domain (and x of the input box)."""
        return self.status is ExactStatus.CERTIFIED

    @property
    def decided(self) -> bool:
        """Certified or refuted by a counterexample."""
        return self.status is not ExactStatus.UNDECIDED

    def record(self) -> dict:
        """Plain values (no tensors) describing how the row was decided, for certificates and reports."""
        return {"status": self.status.value, "bound": self.bound, "tolerance": self.tolerance,
                "incumbent": self.incumbent, "margin": self.margin, "exact": self.exact,
                "solve_status": None if self.solve_status is None else self.solve_status.value,
                "solver": self.solver, "solver_version": self.solver_version, "seconds": self.seconds,
                "nodes": self.nodes, "binaries": self.binaries, "products": self.products, "reason": self.reason}


def certification_tolerance(bound: float, program: Program, feasibility_tolerance: float = 1e-6) -> float:
    """What a proved bound must exceed to certify: ``1e-7·(1 + |bound|) + ε·Σ_j (u_j − l_j)``.

    Why: the solver's bound is the least objective of LP relaxations (node LPs of branch and bound) solved
    to tolerances. A basic LP solution whose reduced costs ``d`` meet the dual feasibility conditions only
    to ``ε`` proves its value up to ``Σ_j |d_j − d*_j|·(u_j − l_j) ≤ ε·Σ_j (u_j − l_j)`` (weak duality
    with every variable boxed, as in Neumaier & Shcherbina's safe LP bounds, 2004); likewise an
    infeasibility proof (a Farkas ray, what a solve with the cutoff row ends with) holds up to the same
    term. Every variable of these programs has finite bounds (intermediate bounds, the weight and input
    boxes, binaries: width 1) and every node LP lives inside the root box, so the root widths bound them
    all; the sum is a bound on the coefficient sizes the objective can pick up. The relative term covers
    float64 rounding of the network's own arithmetic and the solver's (round-off is ~1e-16 relative).
    Assumed, as every MIP-based verifier does: the solver's cuts and presolve reductions are valid. ε is
    ``ExactOptions.feasibility_tolerance`` (1e-6).
    """
    widths = float(np.sum(program.upper - program.lower)) if program.num_variables else 0.0
    return RELATIVE_TOLERANCE * (1.0 + abs(bound)) + feasibility_tolerance * widths


class _Checker:
    """Float64 forward passes of the model at candidate (θ, x) clamped into the domain and the input box."""

    def __init__(self, model: nn.Module, domain: WeightDomain | None, x: Tensor,
                 input_box: InputBox | None):
        self.model = copy.deepcopy(model).to(torch.float64).eval()
        self.inner = domain.inner_bounds(torch.float64) if domain is not None else {}
        self.reference = {n: t.detach().to(torch.float64) for n, t in (domain.reference.items() if domain is not None else ())}
        self.x = x.detach().to(torch.float64)
        self.box = input_box
        self.input_shape = tuple(x.shape[1:])

    def margin(self, item: int, c: np.ndarray, weights: dict[str, np.ndarray] | None,
               x: np.ndarray | None) -> tuple[float, dict[str, Tensor], Tensor]:
        """``(c·f(x; θ), θ, x)`` in float64 with θ clamped into the domain and x into the box (``None``:
        θ₀ and the item's own input)."""
        theta = {}
        for name, (lo, hi) in self.inner.items():
            value = self.reference[name] if weights is None else torch.from_numpy(weights[name]).reshape(lo.shape)
            theta[name] = torch.minimum(torch.maximum(value, lo), hi)
        point = self.x[item] if x is None else torch.from_numpy(x).reshape(self.input_shape)
        if self.box is not None:
            lo, hi = self.box.lower[item].to(torch.float64), self.box.upper[item].to(torch.float64)
            point = torch.minimum(torch.maximum(point, lo), hi)
        with torch.no_grad():
            out = functional_call(self.model, theta, (point.unsqueeze(0),)).reshape(-1)
        return float(torch.from_numpy(c) @ out), theta, point


def exact_margins(model: nn.Module, x: Tensor, domain: WeightDomain | None, C: Tensor,
                  input_box: InputBox | None = None, options: ExactOptions = ExactOptions()) -> list[list[ExactResult]]:
    """Decide ``min c_s·f(x_b; θ) > 0`` over θ in ``domain`` (and x in ``input_box``) for every item ``b`` and
    specification row ``s`` (module docstring).

    ``model``: a chain of Linear / ReLU / constant element-wise affine layers / reshapes (others raise
    ``ModelError`` naming the layer); ``x`` ``[B, *input_shape]``; ``domain``: a box (``Orthotope``) or
    ``None`` (the model's own weights); ``C`` ``[S, n_out]`` or ``[B, S, n_out]``; ``input_box``
    ``[B, *input_shape]`` or ``None`` (x fixed). Returns ``[B][S]`` results. Each item's program is built
    once per row from intermediate bounds computed once per batch. Runs on the CPU (a model elsewhere is
    copied there); the counterexamples' tensors are CPU float64.
    """
    model, x, domain, input_box = on_cpu(model, x, domain, input_box)
    chain = prepare_chain(model, x, domain, input_box, options.intermediate)
    rows = spec_matrix(torch.as_tensor(C).cpu(), chain.batch, chain.num_outputs, x.to(torch.float64)).detach().numpy()
    box64 = None if input_box is None else InputBox(input_box.lower.to(torch.float64), input_box.upper.to(torch.float64))
    checker = _Checker(model, domain, x, box64)
    return [[_decide_row(chain, item, c, checker, options) for c in rows[item]] for item in range(chain.batch)]


def exact_margin(model: nn.Module, x: Tensor, domain: WeightDomain | None, c: Tensor,
                 input_box: InputBox | None = None, options: ExactOptions = ExactOptions()) -> ExactResult:
    """:func:`exact_margins` for one item ``x`` ``[1, *input_shape]`` and one row ``c`` ``[n_out]``."""
    if not isinstance(x, Tensor) or x.dim() < 1 or x.shape[0] != 1:
        raise InputError(f"exact_margin takes one item as a batch of one, [1, *input_shape]; got "
                         f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__} (use exact_margins)")
    c = torch.as_tensor(c)
    if c.dim() != 1:
        raise InputError(f"exact_margin takes one specification row c of shape [n_out]; got {tuple(c.shape)}")
    return exact_margins(model, x, domain, c.unsqueeze(0), input_box, options)[0][0]


def _encode(chain: ExactChain, item: int, c: np.ndarray, options: ExactOptions,
            bilinear_exact: bool) -> tuple[MarginEncoding, float | None]:
    """The program of one (item, row) and its cutoff (``None`` without ``options.cutoff``)."""
    encoding = encode_item(chain, item, c, bilinear_exact)
    if not options.cutoff:
        return encoding, None
    cutoff = 2 * certification_tolerance(0.0, encoding.program, options.feasibility_tolerance)
    encoding.cut_off_above_(cutoff)
    return encoding, cutoff


def _solve(chain: ExactChain, item: int, c: np.ndarray,
           options: ExactOptions) -> tuple[MarginEncoding, float | None, SolveResult | None, str]:
    """Encode and solve one (item, row): ``(encoding, cutoff, result, note)``. A licence that does not cover
    the program falls back to ``options.fallback`` (with McCormick rows only, for a solver without quadratic
    rows) or gives ``result=None``."""
    encoding, cutoff = _encode(chain, item, c, options, bilinear_exact=options.bilinear == "exact")
    settings = options.solve_options()
    kwargs = dict(time_limit=settings.time_limit, node_limit=settings.node_limit, threads=settings.threads,
                  mip_rel_gap=settings.mip_rel_gap, mip_abs_gap=settings.mip_abs_gap, seed=settings.seed)
    try:
        return encoding, cutoff, solve(encoding.program, options.solver, non_convex=settings.non_convex, **kwargs), ""
    except SolverLicenseError as err:
        if options.fallback is None:
            return encoding, cutoff, None, f"{err}; no fallback solver was given, so the item is left undecided"
        note = f"{options.solver} could not solve it ({err}); solved with {options.fallback} instead"
        if encoding.program.num_quadratic_rows:
            encoding, cutoff = _encode(chain, item, c, options, bilinear_exact=False)
        return encoding, cutoff, solve(encoding.program, options.fallback, **kwargs), note


def _decide_row(chain: ExactChain, item: int, c: np.ndarray, checker: _Checker, options: ExactOptions) -> ExactResult:
    """Solve one row and turn the solve into an ``ExactResult`` (the rules of the module docstring)."""
    encoding, cutoff, result, note = _solve(chain, item, c, options)
    above_cutoff = result is not None and cutoff is not None and result.status is SolveStatus.INFEASIBLE
    bound = -math.inf if result is None else cutoff if above_cutoff else result.bound
    tolerance = certification_tolerance(bound, encoding.program, options.feasibility_tolerance)
    common = dict(bound=bound, tolerance=tolerance, incumbent=None if result is None else result.objective,
                  exact=encoding.exact, solve_status=None if result is None else result.status,
                  solver=options.solver if result is None else result.solver,
                  solver_version=solver_version(options.solver) if result is None else result.solver_version,
                  seconds=0.0 if result is None else result.seconds, nodes=0 if result is None else result.nodes,
                  binaries=encoding.binaries, products=encoding.products)
    candidates = [(None, None)]
    if result is not None and result.primal is not None:
        candidates.insert(0, (encoding.parameters_at(result.primal), encoding.input_at(result.primal)))
    checked = []
    for weights, point in candidates:
        margin, theta, x = checker.margin(item, c, weights, point)
        checked.append(margin)
        if margin < 0:
            return ExactResult(ExactStatus.COUNTEREXAMPLE, margin=margin, weights=theta, input=x,
                               reason=_join(note, f"float64 margin {margin:.6g} < 0 at a point of the domain"),
                               **common)
    finished = result is not None and (result.status is SolveStatus.OPTIMAL or above_cutoff)
    if finished and bound - tolerance > 0:
        how = f"no point has margin <= the cutoff {cutoff:.3g} (infeasible)" if above_cutoff else ""
        return ExactResult(ExactStatus.CERTIFIED, reason=_join(note, how), **common)
    return ExactResult(ExactStatus.UNDECIDED, reason=_join(note, _why_undecided(result, encoding, tolerance, checked)),
                       **common)


def _why_undecided(result: SolveResult | None, encoding: MarginEncoding, tolerance: float,
                   checked: list[float]) -> str:
    if result is None:
        return "not solved"
    margins = ", ".join(f"{m:.6g}" for m in checked)
    if result.status.stopped:
        return (f"the solver stopped at its {result.status.value} before deciding (proved bound {result.bound:.6g}, "
                f"tolerance {tolerance:.3g}); float64 margins of the candidates: {margins}")
    if result.status is SolveStatus.INFEASIBLE:
        return ("the encoding is infeasible, which no network is: numerical trouble in the intermediate "
                "bounds or the solver; nothing concluded")
    if result.status is not SolveStatus.OPTIMAL:
        return f"the solver ended with status {result.status.value} ({result.note or 'no message'}); nothing proved"
    if not encoding.exact:
        return (f"the McCormick relaxation is not tight enough: proved bound {result.bound:.6g} ≤ tolerance "
                f"{tolerance:.3g}, and its solution is no counterexample (float64 margins {margins})")
    return (f"proved bound {result.bound:.6g} ≤ tolerance {tolerance:.3g} but no candidate violates in float64 "
            f"(margins {margins}): the margin's minimum is within the tolerance of 0")


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)
