"""HiGHS backend (``highspy``, always installed): LP, MILP and convex QP, no size limit.

HiGHS's model statuses map onto ``SolveStatus`` as follows (``_STATUS``): ``kOptimal`` → OPTIMAL,
``kInfeasible`` → INFEASIBLE, ``kUnbounded`` → UNBOUNDED, ``kTimeLimit`` → TIME_LIMIT,
``kSolutionLimit`` → NODE_LIMIT when a node limit was set (HiGHS reports ``mip_max_nodes`` that way),
iteration/memory limits and interrupts → OTHER_LIMIT, load/presolve/solve errors → ERROR.
``kUnboundedOrInfeasible`` (presolve cannot tell which) is solved again without presolve, which tells.
The proved bound of a MIP is ``getInfo().mip_dual_bound``; of an LP/QP the optimal value. HiGHS does
not solve quadratic objectives with integer variables, non-convex ones, or quadratic rows: ``BackendError``.
"""
from __future__ import annotations

import os
import sys
import time

import highspy
import numpy as np
import scipy.sparse as sp

from lirpa_lid.errors import BackendError
from lirpa_lid.solvers.base import SolveOptions, SolveResult, SolveStatus, make_result, time_left
from lirpa_lid.solvers.program import Program

NAME = "highs"
AVAILABLE = True  # highspy is a dependency
VERSION = f"{highspy.HIGHS_VERSION_MAJOR}.{highspy.HIGHS_VERSION_MINOR}.{highspy.HIGHS_VERSION_PATCH}"

_MS = highspy.HighsModelStatus
_STATUS = {
    _MS.kOptimal: SolveStatus.OPTIMAL,
    _MS.kInfeasible: SolveStatus.INFEASIBLE,
    _MS.kUnbounded: SolveStatus.UNBOUNDED,
    _MS.kUnboundedOrInfeasible: SolveStatus.INFEASIBLE_OR_UNBOUNDED,
    _MS.kTimeLimit: SolveStatus.TIME_LIMIT,
    _MS.kSolutionLimit: SolveStatus.OTHER_LIMIT,  # NODE_LIMIT when a node limit was set (see _status)
    _MS.kIterationLimit: SolveStatus.OTHER_LIMIT,
    _MS.kMemoryLimit: SolveStatus.OTHER_LIMIT,
    _MS.kInterrupt: SolveStatus.OTHER_LIMIT,
    _MS.kHighsInterrupt: SolveStatus.OTHER_LIMIT,
    _MS.kObjectiveBound: SolveStatus.OTHER_LIMIT,
    _MS.kObjectiveTarget: SolveStatus.OTHER_LIMIT,
}  # anything else (kNotset, kLoadError, kModelError, k*Error, kUnknown) is ERROR


def _create_first_instance_silently() -> None:
    """HiGHS prints a banner to the process's stdout when the first ``Highs`` is created, before an option
    can silence it: create that first instance with file descriptor 1 pointed at /dev/null."""
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError):  # no usable stdout: nothing to protect
        highspy.Highs()
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)


_create_first_instance_silently()


def solve_highs(program: Program, options: SolveOptions) -> SolveResult:
    """Solve ``program`` with HiGHS under ``options``; the result's bound is proved (see ``base``)."""
    start = time.perf_counter()
    _check_supported(program)
    if program.num_variables == 0:
        return _solve_empty(program, start)
    highs = _build(program)
    _apply_options(highs, options)
    run_status = highs.run()
    status = _status(highs, options)
    if status is SolveStatus.INFEASIBLE_OR_UNBOUNDED and time_left(options, start) != 0.0:
        status = _resolve_without_presolve(highs, options, start)
    return _result(highs, program, status, run_status, start)


def _check_supported(program: Program) -> None:
    if program.num_quadratic_rows:
        raise BackendError("HiGHS cannot solve quadratic rows (e.g. bilinear products); use solver='gurobi'")
    if program.has_quadratic and program.is_mip:
        raise BackendError("HiGHS cannot solve a quadratic objective with integer variables; "
                           "use solver='gurobi' for a mixed-integer QP")
    if not program.is_convex():
        raise BackendError("the quadratic objective is not convex (not positive semidefinite); HiGHS solves "
                           "convex QPs only: use solver='gurobi' with non_convex=True")


def _build(program: Program) -> highspy.Highs:
    """A silent ``Highs`` holding ``program`` (column-wise matrix, lower-triangular Hessian)."""
    highs = highspy.Highs()
    highs.setOptionValue("output_flag", False)
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = program.num_variables, program.num_rows
    lp.col_cost_, lp.offset_ = program.objective, program.offset
    lp.col_lower_, lp.col_upper_ = program.lower, program.upper
    lp.row_lower_, lp.row_upper_ = program.row_lower, program.row_upper
    matrix = program.matrix.tocsc()
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = matrix.indptr, matrix.indices, matrix.data
    if program.is_mip:
        kinds = (highspy.HighsVarType.kContinuous, highspy.HighsVarType.kInteger)
        lp.integrality_ = [kinds[flag] for flag in program.integer.tolist()]
    _check_call(highs.passModel(lp), "passModel")
    if program.quadratic is not None:
        lower = sp.tril(program.quadratic, format="csc")  # Q is symmetric: HiGHS takes its lower triangle
        lower.sort_indices()
        hessian = highspy.HighsHessian()
        hessian.dim_, hessian.format_ = program.num_variables, highspy.HessianFormat.kTriangular
        hessian.start_, hessian.index_, hessian.value_ = lower.indptr, lower.indices, lower.data
        _check_call(highs.passHessian(hessian), "passHessian")
    return highs


#: thread count of HiGHS's process-wide scheduler as this module last set it (``None``: not set yet)
_scheduler_threads: int | None = None


def _size_scheduler(threads: int | None) -> None:
    """HiGHS runs every solve of a process on one thread scheduler, sized when first used; a solve asking
    for another count fails unless the scheduler is reset first (which must not happen while another
    thread of this process is solving with HiGHS)."""
    global _scheduler_threads
    if threads is not None and threads != _scheduler_threads:
        highspy.Highs.resetGlobalScheduler(True)
        _scheduler_threads = threads


def _apply_options(highs: highspy.Highs, options: SolveOptions) -> None:
    """``SolveOptions`` → HiGHS options (the one place they are translated)."""
    _size_scheduler(options.threads)
    settings = {"output_flag": options.verbose, "time_limit": options.time_limit,
                "mip_max_nodes": options.node_limit, "threads": options.threads,
                "mip_rel_gap": options.mip_rel_gap, "mip_abs_gap": options.mip_abs_gap,
                "random_seed": options.seed}
    for key, value in settings.items():
        if value is not None:
            _check_call(highs.setOptionValue(key, value), f"setOptionValue({key!r}, {value!r})")


def _check_call(status: highspy.HighsStatus, what: str) -> None:
    if status == highspy.HighsStatus.kError:
        raise BackendError(f"HiGHS refused {what}")


def _status(highs: highspy.Highs, options: SolveOptions) -> SolveStatus:
    model_status = highs.getModelStatus()
    status = _STATUS.get(model_status, SolveStatus.ERROR)
    if model_status == _MS.kSolutionLimit and options.node_limit is not None:
        status = SolveStatus.NODE_LIMIT
    return status


def _resolve_without_presolve(highs: highspy.Highs, options: SolveOptions, start: float) -> SolveStatus:
    """Presolve found the program infeasible or unbounded without saying which: solve it again without
    presolve, which decides (within what is left of the time limit)."""
    highs.clearSolver()
    highs.setOptionValue("presolve", "off")
    left = time_left(options, start)
    if left is not None:
        highs.setOptionValue("time_limit", left)
    highs.run()
    return _status(highs, options)


def _result(highs: highspy.Highs, program: Program, status: SolveStatus, run_status: highspy.HighsStatus,
            start: float) -> SolveResult:
    info = highs.getInfo()
    has_primal = info.primal_solution_status == highspy.SolutionStatus.kSolutionStatusFeasible
    primal = np.asarray(highs.getSolution().col_value, dtype=np.float64) if has_primal else None
    note = ""
    if status is SolveStatus.ERROR:
        note = (f"HiGHS ended with model status {highs.modelStatusToString(highs.getModelStatus())!r} "
                f"(run status {run_status.name})")
    return make_result(status, primal=primal, objective=info.objective_function_value if has_primal else None,
                       solver_bound=float(info.mip_dual_bound) if program.is_mip else None,
                       seconds=time.perf_counter() - start, nodes=max(int(info.mip_node_count), 0),
                       solver=NAME, solver_version=VERSION, note=note)


def _solve_empty(program: Program, start: float) -> SolveResult:
    """A program without variables (HiGHS reports such a model as empty without checking its rows)."""
    feasible = program.max_violation(np.zeros(0)) == 0.0
    return make_result(SolveStatus.OPTIMAL if feasible else SolveStatus.INFEASIBLE, primal=np.zeros(0),
                       objective=program.offset, solver_bound=None, seconds=time.perf_counter() - start,
                       nodes=0, solver=NAME, solver_version=VERSION)
