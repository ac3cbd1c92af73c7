"""Each backend (HiGHS always, Gurobi when gurobipy is importable) against known answers: an LP optimum,
a MILP checked by enumerating every assignment, infeasible and unbounded programs, node- and
time-limited MILPs whose bound is proved (≤ the true optimum, never the incumbent), and convex QP
projections with closed-form answers."""
import math

import numpy as np
import pytest

from lirpa_lid.errors import BackendError
from lirpa_lid.solvers import Program, SolveStatus, available_solvers, solve

SOLVERS = [pytest.param("highs"),
           pytest.param("gurobi", marks=pytest.mark.skipif("gurobi" not in available_solvers(),
                                                           reason="gurobipy is not installed (extra [gurobi])"))]


@pytest.fixture(params=SOLVERS)
def solver(request):
    return request.param


def _all_binary(n):
    """Every 0/1 vector of length ``n``, ``[2**n, n]``."""
    return ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1).astype(np.int64)


def market_split(m, n, seed):
    """Cornuéjols–Dawande market split: ``min Σ|a x − d|`` over binary x; its LP bound is 0, its optimum
    is not, and branch and bound needs many nodes to close the gap. Returns the program and its exact
    optimum (by enumeration)."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 100, (m, n))
    d = a.sum(1) // 2
    p = Program()
    x = p.add_binaries(n, name="x")
    slack = p.add_variables((2, m), lower=0.0, name="slack")
    p.add_rows(np.hstack([a, np.eye(m), -np.eye(m)]), lower=d, upper=d, columns=np.r_[x, slack.ravel()])
    p.set_objective(np.ones(2 * m), columns=slack)
    return p, int(np.abs(_all_binary(n) @ a.T - d).sum(1).min())


def test_lp_with_known_optimum(solver):
    # max 3x + 2y s.t. x + y ≤ 4, x + 3y ≤ 6, x ≤ 3, x, y ≥ 0: optimum at (3, 1), value 11
    p = Program()
    x = p.add_variables(2, lower=0.0, upper=[3.0, np.inf])
    p.add_rows([[1.0, 1.0], [1.0, 3.0]], upper=[4.0, 6.0], columns=x)
    p.set_objective([-3.0, -2.0], offset=1.0)
    r = solve(p, solver)
    assert r.status is SolveStatus.OPTIMAL and r.finished and r.solver == solver and r.solver_version
    assert r.objective == pytest.approx(-10.0) and r.bound == r.objective and r.gap == 0.0
    np.testing.assert_allclose(r.primal, [3.0, 1.0], atol=1e-9)
    assert not r.primal.flags.writeable and r.nodes == 0
    assert r.proves_at_least(-10.5) and not r.proves_at_least(-10.0 + 1e-6)


def test_milp_equals_enumeration(solver):
    rng = np.random.default_rng(3)
    n = 12
    a, c = rng.normal(size=(4, n)), rng.normal(size=n)
    b = np.abs(rng.normal(size=4)) + 0.2
    p = Program()
    x = p.add_binaries(n)
    p.add_rows(a, upper=b, columns=x)
    p.set_objective(c, offset=0.5)
    every = _all_binary(n)
    feasible = (every @ a.T <= b).all(1)
    exact = 0.5 + (every[feasible] @ c).min()
    r = solve(p, solver, mip_rel_gap=0.0, mip_abs_gap=0.0)
    assert r.status is SolveStatus.OPTIMAL
    assert r.objective == pytest.approx(exact, abs=1e-7) and r.bound == pytest.approx(exact, abs=1e-7)
    assert r.bound <= r.objective
    assert p.max_violation(r.primal) < 1e-6 and p.objective_value(r.primal) == pytest.approx(exact, abs=1e-7)


def test_general_integers_and_ranged_rows(solver):
    # min -x - y, 1 ≤ x + 2y ≤ 7.5 (ranged), x, y ∈ {0..3} integers: x = 3, y = 2 → -5
    p = Program()
    v = p.add_variables(2, lower=0, upper=3, integer=True)
    p.add_rows([1.0, 2.0], lower=1.0, upper=7.5, columns=v)
    p.set_objective([-1.0, -1.0])
    r = solve(p, solver, mip_rel_gap=0.0)
    assert r.status is SolveStatus.OPTIMAL and r.objective == pytest.approx(-5.0)
    np.testing.assert_allclose(r.primal, [3.0, 2.0], atol=1e-6)


@pytest.mark.parametrize("integer", [False, True])
def test_infeasible_program_proves_every_threshold(solver, integer):
    p = Program()
    x = p.add_variables(2, lower=0.0, upper=1.0, integer=integer)
    p.add_rows([1.0, 1.0], lower=2.5, columns=x)
    p.set_objective([1.0, 1.0])
    r = solve(p, solver)
    assert r.status is SolveStatus.INFEASIBLE and r.finished
    assert r.bound == math.inf and r.primal is None and r.objective is None
    assert r.proves_at_least(1e300)


@pytest.mark.parametrize("integer", [False, True])
def test_unbounded_program_proves_nothing(solver, integer):
    p = Program()
    x = p.add_variables(2, lower=0.0, integer=integer)
    p.add_rows([1.0, -1.0], lower=0.0, columns=x)  # x0 ≥ x1 ≥ 0, minimise -x0
    p.set_objective([-1.0, 0.0])
    r = solve(p, solver)
    assert r.status is SolveStatus.UNBOUNDED and r.finished
    assert r.bound == -math.inf and r.objective == -math.inf and r.primal is None
    assert not r.proves_at_least(-1e300)


def test_node_limit_keeps_the_proved_bound_apart_from_the_incumbent(solver):
    p, optimum = market_split(3, 16, seed=0)  # optimum 5, LP bound 0
    r = solve(p, solver, node_limit=1, mip_rel_gap=0.0)
    assert r.status is SolveStatus.NODE_LIMIT and r.status.stopped and not r.finished
    assert r.bound <= optimum
    assert r.objective is None or r.objective >= optimum - 1e-6
    assert r.objective is None or p.max_violation(r.primal) < 1e-6
    threshold = r.bound + 0.5  # below the optimum (so true), below the incumbent, above the proved bound
    assert threshold < optimum and not r.proves_at_least(threshold)
    assert 1 <= r.nodes <= 2
    full = solve(p, solver, mip_rel_gap=0.0)
    assert full.status is SolveStatus.OPTIMAL and full.objective == pytest.approx(optimum, abs=1e-6)
    assert full.proves_at_least(threshold)


def test_time_limit_keeps_the_proved_bound(solver):
    p, optimum = market_split(3, 18, seed=1)  # optimum 3; a full solve takes ~0.5 s
    r = solve(p, solver, time_limit=0.05, mip_rel_gap=0.0)
    assert r.status is SolveStatus.TIME_LIMIT and r.status.stopped
    assert r.bound <= optimum and r.seconds < 2.0
    assert not r.proves_at_least(optimum)
    assert r.objective is None or (r.objective >= optimum - 1e-6 and r.gap > 0)


def test_qp_projection_onto_a_box(solver):
    # argmin ½‖x − y‖² over lower ≤ x ≤ upper is clip(y); value ½‖clip(y) − y‖²
    rng = np.random.default_rng(0)
    y = rng.normal(size=6) * 2
    lower, upper = -np.ones(6), np.ones(6)
    p = Program()
    p.add_variables(6, lower=lower, upper=upper)
    p.set_objective(-y, quadratic=np.eye(6), offset=0.5 * y @ y)
    r = solve(p, solver)
    expected = np.clip(y, lower, upper)
    assert r.status is SolveStatus.OPTIMAL
    np.testing.assert_allclose(r.primal, expected, atol=1e-5)
    assert r.objective == pytest.approx(0.5 * np.sum((expected - y) ** 2), abs=1e-6)
    assert r.bound == r.objective


def test_qp_projection_onto_a_hyperplane(solver):
    # argmin ½‖x − y‖² s.t. a·x = b is y − (a·y − b) a / ‖a‖² (free variables, sparse diagonal Q)
    a, y, b = np.array([1.0, -2.0, 0.5]), np.array([3.0, 1.0, -1.0]), 2.0
    p = Program()
    x = p.add_variables(3)
    p.add_rows(a, lower=b, upper=b, columns=x)
    p.set_objective(-y, quadratic=np.eye(3), offset=0.5 * y @ y)
    r = solve(p, solver)
    expected = y - (a @ y - b) * a / (a @ a)
    np.testing.assert_allclose(r.primal, expected, atol=1e-5)
    assert r.objective == pytest.approx(0.5 * (a @ y - b) ** 2 / (a @ a), abs=1e-6)


def test_thread_counts_can_change_between_solves(solver):
    # HiGHS sizes one process-wide scheduler; a different count later needs it reset first
    p, optimum = market_split(2, 8, seed=0)
    for threads in (1, 2, None, 1):
        r = solve(p, solver, threads=threads, seed=1, mip_rel_gap=0.0)
        assert r.status is SolveStatus.OPTIMAL and r.objective == pytest.approx(optimum, abs=1e-6)


def test_program_without_variables(solver):
    p = Program()
    p.set_objective(offset=2.0)
    r = solve(p, solver)
    assert r.status is SolveStatus.OPTIMAL and r.objective == 2.0 and r.bound == 2.0


def test_highs_refuses_what_it_cannot_solve():
    p = Program()
    x = p.add_variables(2, lower=-1.0, upper=1.0)
    p.set_objective(quadratic=[[0.0, 1.0], [1.0, 0.0]], columns=x)  # x0·x1: not convex
    with pytest.raises(BackendError, match="not convex.*solver='gurobi' with non_convex=True"):
        solve(p, "highs", non_convex=True)
    p.add_binaries(1)
    p.set_objective(quadratic=np.eye(3))
    with pytest.raises(BackendError, match="quadratic objective with integer variables"):
        solve(p, "highs")
