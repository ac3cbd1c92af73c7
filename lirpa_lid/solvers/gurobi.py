"""Gurobi backend (``gurobipy``, optional extra ``pip install 'lirpa-lid[gurobi]'``): LP, MILP, convex
(MI)QP, quadratic rows and, with ``non_convex=True``, non-convex quadratic objectives and rows such as
bilinear products ``z = x·y`` (``NonConvex=2``: spatial branch and bound, whose bound is still proved).

Gurobi's statuses map onto ``SolveStatus`` as ``_STATUS`` lists; ``INF_OR_UNBD`` is solved again with
``DualReductions=0``, which tells infeasible from unbounded. The proved bound of a MIP (or of a
non-convex QP, which Gurobi solves by branch and bound) is ``ObjBoundC``: the best bound *without*
Gurobi's rounding up for an integral objective, which would lean on integrality tolerances. Ranged rows
(both sides finite and different) become two Gurobi constraints.

The pip package comes with a size-limited licence (2,000 variables and 2,000 linear constraints; 200
variables once anything is quadratic); a larger program, or a missing licence, raises
``SolverLicenseError`` (catch it, or pass ``fallback="highs"`` to ``solve``). Without gurobipy, asking
for Gurobi raises one ``BackendError`` naming the extra to install.
"""
from __future__ import annotations

import math
import time

import numpy as np
import scipy.sparse as sp

from lirpa_lid.errors import BackendError
from lirpa_lid.solvers.base import (
    SolveOptions,
    SolveResult,
    SolverLicenseError,
    SolveStatus,
    make_result,
    time_left,
)
from lirpa_lid.solvers.program import Program, QuadraticRow

try:
    import gurobipy
    from gurobipy import GRB
except ImportError:  # the optional extra is not installed: solve_gurobi says how to install it
    gurobipy = None

NAME = "gurobi"
AVAILABLE = gurobipy is not None
VERSION = ".".join(str(v) for v in gurobipy.gurobi.version()) if AVAILABLE else ""
INSTALL_HINT = "pip install 'lirpa-lid[gurobi]'"
#: GurobiError codes of licence problems: no licence found, model too large for a size-limited licence
_LICENCE_ERRORS = (10009, 10010)
_SIZE_LIMIT_ERROR = 10010


def _status_map() -> dict[int, SolveStatus]:
    if not AVAILABLE:
        return {}
    names = {"OPTIMAL": SolveStatus.OPTIMAL, "INFEASIBLE": SolveStatus.INFEASIBLE,
             "INF_OR_UNBD": SolveStatus.INFEASIBLE_OR_UNBOUNDED, "UNBOUNDED": SolveStatus.UNBOUNDED,
             "TIME_LIMIT": SolveStatus.TIME_LIMIT, "NODE_LIMIT": SolveStatus.NODE_LIMIT,
             "ITERATION_LIMIT": SolveStatus.OTHER_LIMIT, "SOLUTION_LIMIT": SolveStatus.OTHER_LIMIT,
             "INTERRUPTED": SolveStatus.OTHER_LIMIT, "CUTOFF": SolveStatus.OTHER_LIMIT,
             "USER_OBJ_LIMIT": SolveStatus.OTHER_LIMIT, "WORK_LIMIT": SolveStatus.OTHER_LIMIT,
             "MEM_LIMIT": SolveStatus.OTHER_LIMIT}
    # anything else (NUMERIC, SUBOPTIMAL, LOCALLY_OPTIMAL, LOCALLY_INFEASIBLE, ...) proves nothing: ERROR
    return {getattr(GRB.Status, name): status for name, status in names.items() if hasattr(GRB.Status, name)}


_STATUS = _status_map()


def solve_gurobi(program: Program, options: SolveOptions) -> SolveResult:
    """Solve ``program`` with Gurobi under ``options``; the result's bound is proved (see ``base``).

    Raises ``BackendError`` when gurobipy is missing or the objective is non-convex without
    ``options.non_convex``, and ``SolverLicenseError`` when the licence does not cover the program.
    """
    if not AVAILABLE:
        raise BackendError(f"solver 'gurobi' needs gurobipy, which is not installed: {INSTALL_HINT} "
                           f"(or use solver='highs')")
    if not options.non_convex and not program.is_convex():
        raise BackendError("the quadratic objective or a quadratic row is not convex; pass non_convex=True "
                           "to let Gurobi solve it by spatial branch and bound")
    start = time.perf_counter()
    try:
        with _environment(options) as env, gurobipy.Model(env=env) as model:
            x = _build(model, program)
            _apply_options(model, options)
            model.optimize()
            status = _status(model)
            if status is SolveStatus.INFEASIBLE_OR_UNBOUNDED and time_left(options, start) != 0.0:
                status = _resolve_without_dual_reductions(model, options, start)
            return _result(model, x, status, start)
    except gurobipy.GurobiError as err:
        if err.errno in _LICENCE_ERRORS:
            raise _licence_error(err, program) from None
        return make_result(SolveStatus.ERROR, primal=None, objective=None, solver_bound=None,
                           seconds=time.perf_counter() - start, nodes=0, solver=NAME, solver_version=VERSION,
                           note=f"Gurobi error {err.errno}: {err}")


def _environment(options: SolveOptions):
    """A started, silent (unless verbose) Gurobi environment; the licence is checked here."""
    env = gurobipy.Env(empty=True)
    try:
        env.setParam("OutputFlag", int(options.verbose))
        env.start()
    except gurobipy.GurobiError:
        env.dispose()
        raise
    return env


def _row_senses(program: Program) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(sense, row mask, right-hand side)`` for the equality, ``≥`` and ``≤`` Gurobi constraints of
    ``program``'s rows (a ranged row is in both of the last two; a free row in none)."""
    low, high = program.row_lower, program.row_upper
    equal = np.isfinite(low) & (low == high)
    return [(GRB.EQUAL, equal, low), (GRB.GREATER_EQUAL, np.isfinite(low) & ~equal, low),
            (GRB.LESS_EQUAL, np.isfinite(high) & ~equal, high)]


def _build(model, program: Program):
    """Variables ``x`` ``[n]`` (returned), the linear rows and the objective of ``program`` in ``model``."""
    kinds = np.where(program.integer, GRB.INTEGER, GRB.CONTINUOUS)
    x = model.addMVar(program.num_variables, lb=program.lower, ub=program.upper, vtype=kinds)
    for sense, rows, rhs in _row_senses(program):
        if rows.any():
            model.addMConstr(program.matrix[rows], x, sense, rhs[rows])
    for row in program.quadratic_rows:
        _add_quadratic_row(model, x, row)
    quadratic = None if program.quadratic is None else sp.csr_matrix(program.quadratic * 0.5)
    model.setMObjective(quadratic, program.objective, program.offset, x if quadratic is not None else None,
                        x if quadratic is not None else None, x, GRB.MINIMIZE)
    return x


def _add_quadratic_row(model, x, row: QuadraticRow) -> None:
    """``row`` as one (equality) or up to two Gurobi quadratic constraints over the variables it uses
    (Gurobi's ``xᵀQx`` has no ½)."""
    used = np.union1d(row.quadratic.tocoo().row, row.linear.indices)
    quadratic = sp.csr_matrix(row.quadratic[used][:, used] * 0.5)
    linear = row.linear[:, used].toarray().ravel()
    if row.lower == row.upper:
        sides = [(GRB.EQUAL, row.lower)]
    else:
        sides = [(sense, rhs) for sense, rhs in ((GRB.GREATER_EQUAL, row.lower), (GRB.LESS_EQUAL, row.upper))
                 if math.isfinite(rhs)]
    for sense, rhs in sides:
        model.addMQConstr(quadratic, linear, sense, rhs, x[used], x[used], x[used], name=row.name)


def _apply_options(model, options: SolveOptions) -> None:
    """``SolveOptions`` → Gurobi parameters (the one place they are translated)."""
    settings = {"TimeLimit": options.time_limit, "NodeLimit": options.node_limit, "Threads": options.threads,
                "MIPGap": options.mip_rel_gap, "MIPGapAbs": options.mip_abs_gap, "Seed": options.seed,
                "NonConvex": 2 if options.non_convex else None}
    for key, value in settings.items():
        if value is not None:
            model.setParam(key, value)


def _status(model) -> SolveStatus:
    status = _STATUS.get(model.Status, SolveStatus.ERROR)
    if status is SolveStatus.OPTIMAL and model.SolCount and not math.isfinite(model.ObjVal):
        status = SolveStatus.UNBOUNDED  # with DualReductions=0 Gurobi reports an unbounded MIP this way
    return status


def _resolve_without_dual_reductions(model, options: SolveOptions, start: float) -> SolveStatus:
    """Presolve found the program infeasible or unbounded without saying which: ``DualReductions=0``
    decides (within what is left of the time limit)."""
    model.reset()
    model.setParam("DualReductions", 0)
    left = time_left(options, start)
    if left is not None:
        model.setParam("TimeLimit", left)
    model.optimize()
    return _status(model)


def _result(model, x, status: SolveStatus, start: float) -> SolveResult:
    has_primal = model.SolCount > 0 and status is not SolveStatus.UNBOUNDED
    solver_bound = model.ObjBoundC if model.IsMIP and status in (SolveStatus.OPTIMAL, SolveStatus.TIME_LIMIT,
                                                                  SolveStatus.NODE_LIMIT,
                                                                  SolveStatus.OTHER_LIMIT) else None
    note = f"Gurobi ended with status {model.Status}" if status is SolveStatus.ERROR else ""
    return make_result(status, primal=np.asarray(x.X) if has_primal else None,
                       objective=model.ObjVal if has_primal else None, solver_bound=solver_bound,
                       seconds=time.perf_counter() - start, nodes=int(model.NodeCount) if model.IsMIP else 0,
                       solver=NAME, solver_version=VERSION, note=note)


def _licence_error(err, program: Program) -> SolverLicenseError:
    if err.errno == _SIZE_LIMIT_ERROR:
        constraints = sum(int(rows.sum()) for _, rows, _ in _row_senses(program))
        size = f"{program.num_variables} variables, {constraints} linear constraints"
        if program.has_quadratic or program.num_quadratic_rows:
            size += ", quadratic terms"
        message = (f"Gurobi's licence is too small for this program ({size}; the size-limited pip licence "
                   f"allows 2,000 variables and 2,000 linear constraints, 200 variables with quadratic terms): "
                   f"use solver='highs', fallback='highs', or a full Gurobi licence")
    else:
        message = (f"no Gurobi licence found ({err}); set GRB_LICENSE_FILE, or use solver='highs' "
                   f"or fallback='highs'")
    return SolverLicenseError(message, solver=NAME, code=err.errno)
