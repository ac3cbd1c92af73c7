"""The contract between a ``Program`` and a solver backend: options in, a result with a *proved* bound out.

A backend is a function ``solve_<name>(program, options) -> SolveResult``. It translates
``SolveOptions`` into its solver's parameters in one place, maps its solver's statuses onto
``SolveStatus`` and builds the result with ``make_result``, which applies the one rule about bounds:

    status                   bound (proved lower bound on the minimum)
    OPTIMAL, continuous      the optimal value (LP/QP solved to the solver's tolerances)
    OPTIMAL, integer         the solver's best bound (≤ the incumbent; equal when the gap closed)
    TIME/NODE/OTHER_LIMIT    the solver's best bound reached so far, or -inf when it reports none;
                             never the incumbent
    INFEASIBLE               +inf (the minimum over an empty set)
    UNBOUNDED, ERROR,
    INFEASIBLE_OR_UNBOUNDED  -inf (nothing proved)

Licence problems (Gurobi's size-limited pip licence) raise ``SolverLicenseError``; a caller may
catch it and solve with another backend (``solve(..., fallback="highs")`` does).
"""
from __future__ import annotations

import enum
import math
import time
from dataclasses import dataclass, field

import numpy as np

from lirpa_lid.errors import BackendError, InputError


class SolveStatus(str, enum.Enum):
    """How a solve ended (the backend's status, mapped faithfully)."""

    OPTIMAL = "optimal"
    INFEASIBLE = "infeasible"
    UNBOUNDED = "unbounded"
    INFEASIBLE_OR_UNBOUNDED = "infeasible-or-unbounded"
    TIME_LIMIT = "time-limit"
    NODE_LIMIT = "node-limit"
    OTHER_LIMIT = "other-limit"  # iteration, solution, memory limits; interrupts
    ERROR = "error"  # numerical trouble, solver failure: nothing proved

    @property
    def finished(self) -> bool:
        """Whether the solver decided the program (optimal, infeasible or unbounded)."""
        return self in (SolveStatus.OPTIMAL, SolveStatus.INFEASIBLE, SolveStatus.UNBOUNDED)

    @property
    def stopped(self) -> bool:
        """Whether a limit stopped the solver before it decided the program."""
        return self in (SolveStatus.TIME_LIMIT, SolveStatus.NODE_LIMIT, SolveStatus.OTHER_LIMIT)


class SolverLicenseError(BackendError):
    """The solver's licence does not cover this program (Gurobi's pip licence: at most 2,000 variables
    and 2,000 linear constraints), or no licence was found. ``solve(..., fallback="highs")`` catches it."""

    def __init__(self, message: str, *, solver: str, code: int | None = None):
        super().__init__(message)
        self.solver = solver
        self.code = code


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise InputError(message)


@dataclass(frozen=True)
class SolveOptions:
    """What a solve may spend and how precise it must be; each backend translates these in one place.

    Attributes:
        time_limit: wall-clock seconds for the solver (``None``: no limit); a solve that hits it ends
            with ``TIME_LIMIT`` and its best proved bound so far.
        node_limit: branch-and-bound nodes for a MIP (``None``: no limit); ends with ``NODE_LIMIT``.
        threads: solver threads (``None``: the solver's default). Default 1: deterministic, and several
            items are solved in parallel processes rather than one solve on many threads.
        mip_rel_gap, mip_abs_gap: a MIP stops as OPTIMAL once incumbent − bound is within these
            (``None``: the solver's defaults, 1e-4 relative for both). The proved bound is reported either
            way; a caller that needs the exact optimum sets 0.
        non_convex: allow a non-convex quadratic objective (Gurobi only: ``NonConvex=2``, a spatial
            branch and bound whose bound is still proved); HiGHS refuses such programs.
        seed: the solver's random seed (``None``: its default).
        verbose: let the solver print its log.
    """

    time_limit: float | None = None
    node_limit: int | None = None
    threads: int | None = 1
    mip_rel_gap: float | None = None
    mip_abs_gap: float | None = None
    non_convex: bool = False
    seed: int | None = None
    verbose: bool = False

    def __post_init__(self) -> None:
        number = (int, float, np.integer, np.floating)
        _check(self.time_limit is None or (isinstance(self.time_limit, number) and self.time_limit > 0
                                           and math.isfinite(self.time_limit)),
               f"time_limit must be a positive number of seconds or None, got {self.time_limit!r}")
        for name in ("node_limit", "threads", "seed"):
            value = getattr(self, name)
            low = 1 if name == "threads" else 0
            _check(value is None or (isinstance(value, (int, np.integer)) and not isinstance(value, bool)
                                     and value >= low),
                   f"{name} must be an integer >= {low} or None, got {value!r}")
        for name in ("mip_rel_gap", "mip_abs_gap"):
            value = getattr(self, name)
            _check(value is None or (isinstance(value, number) and 0 <= value < math.inf),
                   f"{name} must be a finite number >= 0 or None, got {value!r}")
        _check(isinstance(self.non_convex, bool) and isinstance(self.verbose, bool),
               "non_convex and verbose must be True or False")


def time_left(options: SolveOptions, start: float) -> float | None:
    """Seconds left of ``options.time_limit`` for a solve that began at ``time.perf_counter()`` = ``start``
    (``None`` without a limit, 0.0 when it is spent)."""
    if options.time_limit is None:
        return None
    return max(0.0, options.time_limit - (time.perf_counter() - start))


def relative_gap(objective: float | None, bound: float) -> float:
    """``|objective − bound| / |objective|`` (Gurobi's definition): 0 when they are equal, inf when
    either is missing or infinite."""
    if objective is None or not (math.isfinite(objective) and math.isfinite(bound)):
        return math.inf
    if objective == bound:
        return 0.0
    return abs(objective - bound) / max(abs(objective), 1e-10)


@dataclass(frozen=True)
class SolveResult:
    """The outcome of one solve of a ``Program`` (minimisation).

    Attributes:
        status: how the solve ended.
        primal: the incumbent, float64 ``[n]`` read-only, or ``None`` when the solver has none.
        objective: the incumbent's objective value as the solver reports it (an upper bound on the
            minimum), -inf when the program is unbounded, or ``None``.
        bound: a lower bound on the minimum that the solver *proved* (table in the module docstring):
            never the incumbent of a solve that did not finish.
        seconds: wall-clock seconds of the whole call (building the solver's model included).
        nodes: branch-and-bound nodes explored (0 for LP/QP).
        solver, solver_version: which backend ran (``"highs"`` / ``"gurobi"``) and its version.
        note: why something unusual happened (a fallback, a solver message), else ``""``.
    """

    status: SolveStatus
    primal: np.ndarray | None = field(compare=False, repr=False)
    objective: float | None
    bound: float
    seconds: float
    nodes: int
    solver: str
    solver_version: str
    note: str = ""

    @property
    def gap(self) -> float:
        """Relative gap between incumbent and proved bound (``relative_gap``); inf without an incumbent."""
        return relative_gap(self.objective, self.bound)

    @property
    def finished(self) -> bool:
        """Whether the solver decided the program (``SolveStatus.finished``)."""
        return self.status.finished

    def proves_at_least(self, threshold: float) -> bool:
        """Whether the proved bound shows the minimum is > ``threshold`` (an infeasible program proves any
        threshold). Only ``bound`` is read: an incumbent above the threshold proves nothing."""
        return bool(self.bound > threshold)


def make_result(status: SolveStatus, *, primal, objective: float | None, solver_bound: float | None,
                seconds: float, nodes: int, solver: str, solver_version: str, note: str = "") -> SolveResult:
    """A ``SolveResult`` whose ``bound`` follows the module table.

    ``solver_bound`` is the backend's own proved bound (MIP best bound / dual bound) or ``None`` when it
    has none (a continuous program); NaN counts as none. The bound of a finished MIP is capped by the
    incumbent (a solver may report a bound a rounding error above it).
    """
    if solver_bound is not None and math.isnan(solver_bound):
        solver_bound = None
    if objective is not None and math.isnan(objective):
        objective, primal = None, None
    if status is SolveStatus.INFEASIBLE:
        bound, objective, primal = math.inf, None, None
    elif status is SolveStatus.UNBOUNDED:
        bound, objective, primal = -math.inf, -math.inf, None
    elif status is SolveStatus.OPTIMAL and objective is not None:
        bound = objective if solver_bound is None else min(solver_bound, objective)
    elif status.stopped and solver_bound is not None:
        bound = solver_bound if objective is None else min(solver_bound, objective)
    else:
        bound = -math.inf
    if status is SolveStatus.OPTIMAL and objective is None:  # an optimum without a solution: nothing proved
        status, note = SolveStatus.ERROR, note or "solver reported optimal without a solution"
    if primal is not None:
        primal = np.array(primal, dtype=np.float64)
        primal.flags.writeable = False
    return SolveResult(status=status, primal=primal, objective=None if objective is None else float(objective),
                       bound=float(bound), seconds=float(seconds), nodes=int(max(nodes, 0)), solver=solver,
                       solver_version=solver_version, note=note)
