"""Solvers: a solver-agnostic LP / MILP / convex QP ``Program`` (quadratic rows for Gurobi) and one file
per backend.

    p = Program()
    x = p.add_variables(3, lower=0.0, upper=1.0, name="x")
    b = p.add_binaries(3, name="on")
    p.add_rows(np.hstack([np.eye(3), -np.eye(3)]), upper=0.0, columns=np.r_[x, b])  # x ≤ on
    p.add_rows(np.ones(3), upper=2.0, columns=b)  # at most two on
    p.set_objective(-np.ones(3), columns=x)
    result = solve(p, "gurobi", fallback="highs", time_limit=10)
    result.proves_at_least(-2.5)  # True: the proved bound is -2 (never read from the incumbent)

``solve`` is the one entry point; HiGHS (``highspy``) is the default and always installed, Gurobi
(``gurobipy``, extra ``[gurobi]``) is used when asked for. Only this package imports either.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from lirpa_lid.errors import InputError
from lirpa_lid.solvers import gurobi, highs
from lirpa_lid.solvers.base import (
    SolveOptions,
    SolveResult,
    SolverLicenseError,
    SolveStatus,
    make_result,
    relative_gap,
)
from lirpa_lid.solvers.program import Program, QuadraticRow

__all__ = ["Program", "QuadraticRow", "SolveOptions", "SolveResult", "SolveStatus", "SolverLicenseError",
           "available_solvers", "make_result", "relative_gap", "solve", "solver_version"]

Backend = Callable[[Program, SolveOptions], SolveResult]
_BACKENDS: dict[str, Backend] = {highs.NAME: highs.solve_highs, gurobi.NAME: gurobi.solve_gurobi}
_MODULES = {highs.NAME: highs, gurobi.NAME: gurobi}  # each has NAME, VERSION, AVAILABLE


def _solver_name(name: str, what: str) -> str:
    key = str(name).strip().lower()
    if key not in _BACKENDS:
        raise InputError(f"unknown {what} {name!r}; choose one of {sorted(_BACKENDS)}")
    return key


def available_solvers() -> tuple[str, ...]:
    """Names of the solvers whose Python package is installed (``"highs"`` always). A listed Gurobi may
    still lack a licence large enough for a given program."""
    return tuple(name for name, module in _MODULES.items() if module.AVAILABLE)


def solver_version(name: str) -> str:
    """Version of solver ``name`` (``""`` when it is not installed)."""
    return _MODULES[_solver_name(name, "solver")].VERSION


def solve(program: Program, solver: str = "highs", *, fallback: str | None = None,
          time_limit: float | None = None, node_limit: int | None = None, threads: int | None = 1,
          mip_rel_gap: float | None = None, mip_abs_gap: float | None = None, non_convex: bool = False,
          seed: int | None = None, verbose: bool = False) -> SolveResult:
    """Minimise ``program`` with ``solver`` (``"highs"`` or ``"gurobi"``); options as in ``SolveOptions``.

    ``fallback``: another solver to run when ``solver``'s licence does not cover the program (Gurobi's
    size-limited pip licence, or none found); the result then names the solver that ran and says why in
    ``note``. Without a fallback that case raises ``SolverLicenseError``. A missing solver package
    raises ``BackendError`` naming the extra to install, with or without a fallback.

    The result's ``bound`` is a *proved* lower bound on the minimum (``SolveResult``); a solve stopped by
    a limit keeps its best proved bound and its incumbent separate.
    """
    if not isinstance(program, Program):
        raise InputError(f"solve() takes a lirpa_lid.solvers.Program, got {type(program).__name__}")
    name = _solver_name(solver, "solver")
    backup = None if fallback is None else _solver_name(fallback, "fallback solver")
    options = SolveOptions(time_limit=time_limit, node_limit=node_limit, threads=threads, mip_rel_gap=mip_rel_gap,
                           mip_abs_gap=mip_abs_gap, non_convex=non_convex, seed=seed, verbose=verbose)
    start = time.perf_counter()
    try:
        return _BACKENDS[name](program, options)
    except SolverLicenseError as err:
        if backup is None or backup == name:
            raise
        spent = time.perf_counter() - start
        if options.time_limit is not None:  # the fallback gets what is left of the time limit
            options = replace(options, time_limit=max(options.time_limit - spent, 1e-3))
        result = _BACKENDS[backup](program, options)
        return replace(result, seconds=result.seconds + spent,
                       note=f"{name} could not solve it ({err}); solved with {backup} instead")
