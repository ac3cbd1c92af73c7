"""Gurobi-only paths: the size-limited pip licence gives one dedicated error (and a HiGHS result with
``fallback="highs"``), a missing gurobipy names the extra to install, non-convex objectives need
``non_convex=True``, and a mixed-integer QP (which HiGHS refuses) is solved."""
import numpy as np
import pytest

from lirpa_lid.errors import BackendError, LirpaLidError
from lirpa_lid.solvers import Program, SolverLicenseError, SolveStatus, available_solvers, gurobi, solve

needs_gurobi = pytest.mark.skipif("gurobi" not in available_solvers(),
                                  reason="gurobipy is not installed (extra [gurobi])")


def _too_large(n=2001):
    p = Program()
    x = p.add_variables(n, lower=0.0, upper=1.0, name="x")
    p.add_rows(np.ones(n), lower=1.5, columns=x)
    p.set_objective(np.arange(n) % 7 + 1.0)
    return p


def _licence_error_or_skip(p):
    try:
        solve(p, "gurobi")
    except SolverLicenseError as err:
        return err
    pytest.skip("this Gurobi licence is not size-limited")


@needs_gurobi
def test_size_limited_licence_raises_the_dedicated_error():
    err = _licence_error_or_skip(_too_large())
    assert isinstance(err, BackendError) and isinstance(err, LirpaLidError)
    assert err.code == 10010 and err.solver == "gurobi"
    assert "2001 variables, 1 linear constraints" in str(err) and "2,000" in str(err)
    assert "fallback='highs'" in str(err)


@needs_gurobi
def test_fallback_solves_with_highs_and_says_so():
    p = _too_large()
    _licence_error_or_skip(p)
    r = solve(p, "gurobi", fallback="highs", time_limit=30)
    assert r.solver == "highs" and r.status is SolveStatus.OPTIMAL
    assert "gurobi could not solve it" in r.note and "solved with highs" in r.note
    assert r.objective == pytest.approx(1.5)  # variables of cost 1 (x0, x7, ...) take the 1.5
    assert r.objective == pytest.approx(solve(p, "highs").objective)


@needs_gurobi
def test_a_program_within_the_licence_runs_on_gurobi_even_with_a_fallback():
    r = solve(_too_large(1500), "gurobi", fallback="highs")
    assert r.solver == "gurobi" and r.note == "" and r.objective == pytest.approx(1.5)


def test_missing_gurobipy_names_the_extra(monkeypatch):
    monkeypatch.setattr(gurobi, "AVAILABLE", False)
    assert available_solvers() == ("highs",)
    p = _too_large(3)
    for fallback in (None, "highs"):  # a missing package is a setup error: no silent fallback
        with pytest.raises(BackendError, match=r"pip install 'lirpa-lid\[gurobi\]'"):
            solve(p, "gurobi", fallback=fallback)


@needs_gurobi
def test_non_convex_objective_needs_the_option():
    p = Program()
    x = p.add_variables(2, lower=-1.0, upper=[1.0, 2.0])
    p.set_objective([0.0, 0.5], quadratic=[[0.0, 1.0], [1.0, 0.0]], columns=x)  # x0·x1 + y/2
    with pytest.raises(BackendError, match="non_convex=True"):
        solve(p, "gurobi")
    r = solve(p, "gurobi", non_convex=True)
    # min over the box: at (1, -1) → -1.5, at (-1, 2) → -1; a bilinear minimum sits at a vertex
    vertices = [(a, b) for a in (-1.0, 1.0) for b in (-1.0, 2.0)]
    exact = min(a * b + 0.5 * b for a, b in vertices)
    assert r.status is SolveStatus.OPTIMAL and r.objective == pytest.approx(exact, abs=1e-6)
    assert r.bound <= r.objective + 1e-9 and r.bound == pytest.approx(exact, abs=1e-4)


@needs_gurobi
def test_quadratic_licence_limit_is_200_variables_and_falls_back():
    p = Program()
    x = p.add_variables(201, lower=0.0, upper=1.0)
    p.set_objective(-np.ones(201), quadratic=np.eye(201), columns=x)  # ½‖x‖² − Σx: x = 1, value −100.5
    err = _licence_error_or_skip(p)
    assert "quadratic terms" in str(err) and "200 variables" in str(err)
    r = solve(p, "gurobi", fallback="highs")
    assert r.solver == "highs" and r.objective == pytest.approx(-100.5, abs=1e-6)


@needs_gurobi
def test_bilinear_rows_are_solved_exactly_with_non_convex():
    # z = x·y over x ∈ [-1, 1], y ∈ [-1, 2]; min z + y/2 is attained at a vertex of the box: -1.5 at (1, -1)
    p = Program()
    x, y = p.add_variables(2, lower=-1.0, upper=[1.0, 2.0], name="xy")
    z = p.add_variables(1, name="z")[0]
    product = -np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])  # ½·(−2xy) = −x·y
    assert p.add_quadratic_row(product, [0.0, 0.0, 1.0], lower=0.0, upper=0.0, columns=[x, y, z], name="z=xy") == 0
    p.set_objective([1.0, 0.5], columns=[z, y])
    assert not p.is_convex()
    with pytest.raises(BackendError, match="non_convex=True"):
        solve(p, "gurobi")
    with pytest.raises(BackendError, match="HiGHS cannot solve quadratic rows"):
        solve(p, "highs")
    r = solve(p, "gurobi", non_convex=True, mip_rel_gap=0.0)
    assert r.status is SolveStatus.OPTIMAL and r.objective == pytest.approx(-1.5, abs=1e-6)
    assert r.bound <= r.objective and r.bound == pytest.approx(-1.5, abs=1e-4)
    assert p.max_violation(r.primal) < 1e-6 and r.primal[z] == pytest.approx(r.primal[x] * r.primal[y], abs=1e-6)


@needs_gurobi
def test_mixed_integer_qp():
    # min (x − 0.3)² + (k − 2.6)² with k integer in [0, 5], x ≥ 1: x = 1, k = 3
    p = Program()
    v = p.add_variables(1, lower=1.0, upper=4.0)
    k = p.add_variables(1, lower=0, upper=5, integer=True)
    p.set_objective([-0.6, -5.2], quadratic=2 * np.eye(2), offset=0.09 + 6.76, columns=np.r_[v, k])
    r = solve(p, "gurobi", mip_rel_gap=0.0)
    assert r.status is SolveStatus.OPTIMAL
    np.testing.assert_allclose(r.primal, [1.0, 3.0], atol=1e-6)
    assert r.objective == pytest.approx(0.49 + 0.16, abs=1e-6) and r.bound <= r.objective
