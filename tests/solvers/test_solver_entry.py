"""The one entry point ``solve`` and the result contract: names and options are validated, the bound of
a result comes only from what the solver proved (``make_result``), HiGHS and Gurobi agree on random
LPs and MILPs, and importing the solvers prints nothing."""
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from lirpa_lid.errors import InputError
from lirpa_lid.solvers import (
    Program,
    SolveOptions,
    SolveStatus,
    available_solvers,
    highs,
    make_result,
    relative_gap,
    solve,
    solver_version,
)


def _tiny():
    p = Program()
    p.add_variables(1, lower=0.0, upper=1.0)
    p.set_objective([1.0])
    return p


def test_solver_names_are_validated():
    assert available_solvers()[0] == "highs" and solver_version("HiGHS")
    with pytest.raises(InputError, match=r"unknown solver 'cplex'; choose one of \['gurobi', 'highs'\]"):
        solve(_tiny(), "cplex")
    with pytest.raises(InputError, match="unknown fallback solver 'scip'"):
        solve(_tiny(), "highs", fallback="scip")
    with pytest.raises(InputError, match="takes a lirpa_lid.solvers.Program"):
        solve({"c": [1.0]})


@pytest.mark.parametrize("options, message", [
    ({"time_limit": 0}, "time_limit must be a positive number"),
    ({"time_limit": math.inf}, "time_limit must be a positive number"),
    ({"node_limit": -1}, "node_limit must be an integer >= 0"),
    ({"node_limit": 2.5}, "node_limit must be an integer >= 0"),
    ({"threads": 0}, "threads must be an integer >= 1"),
    ({"mip_rel_gap": -1e-3}, "mip_rel_gap must be a finite number >= 0"),
    ({"non_convex": "yes"}, "non_convex and verbose must be True or False"),
])
def test_options_are_validated(options, message):
    with pytest.raises(InputError, match=message):
        SolveOptions(**options)
    with pytest.raises(InputError, match=message):
        solve(_tiny(), **options)


def test_bound_comes_only_from_what_the_solver_proved():
    common = {"seconds": 0.1, "nodes": 3, "solver": "x", "solver_version": "0"}
    stopped = make_result(SolveStatus.TIME_LIMIT, primal=[1.0], objective=5.0, solver_bound=None, **common)
    assert stopped.bound == -math.inf and not stopped.proves_at_least(-1e300)  # incumbent 5 proves nothing
    assert stopped.gap == math.inf and stopped.objective == 5.0 and not stopped.primal.flags.writeable
    stopped = make_result(SolveStatus.NODE_LIMIT, primal=[1.0], objective=5.0, solver_bound=2.0, **common)
    assert stopped.bound == 2.0 and stopped.proves_at_least(1.9) and not stopped.proves_at_least(2.0)
    assert stopped.gap == pytest.approx(0.6)
    mip = make_result(SolveStatus.OPTIMAL, primal=[1.0], objective=5.0, solver_bound=5.0 + 1e-12, **common)
    assert mip.bound == 5.0  # capped by the incumbent
    lp = make_result(SolveStatus.OPTIMAL, primal=[1.0], objective=5.0, solver_bound=None, **common)
    assert lp.bound == 5.0 and lp.gap == 0.0
    error = make_result(SolveStatus.ERROR, primal=None, objective=None, solver_bound=4.0, **common)
    assert error.bound == -math.inf
    empty = make_result(SolveStatus.OPTIMAL, primal=None, objective=None, solver_bound=None, **common)
    assert empty.status is SolveStatus.ERROR and empty.bound == -math.inf
    nan = make_result(SolveStatus.TIME_LIMIT, primal=None, objective=None, solver_bound=math.nan, **common)
    assert nan.bound == -math.inf
    assert relative_gap(None, 1.0) == math.inf and relative_gap(-2.0, -3.0) == 0.5


def _random_program(rng, n, m, integer):
    """A feasible, bounded random program: rows are built around a point inside the box."""
    p = Program()
    lower = rng.uniform(-3, 0, n).round()
    upper = lower + rng.integers(1, 4, n)
    x = p.add_variables(n, lower=lower, upper=upper, integer=integer)
    point = rng.integers(lower, upper + 1).astype(float)
    a = rng.normal(size=(m, n)) * (rng.random((m, n)) < 0.6)
    slack = rng.uniform(0.0, 2.0, (2, m))
    kind = rng.integers(0, 3, m)  # ≤, ≥, ranged
    row_lower = np.where(kind == 0, -np.inf, a @ point - slack[0])
    row_upper = np.where(kind == 1, np.inf, a @ point + slack[1])
    p.add_rows(a, lower=row_lower, upper=row_upper, columns=x)
    p.set_objective(rng.normal(size=n), offset=float(rng.normal()))
    return p


@pytest.mark.skipif("gurobi" not in available_solvers(), reason="gurobipy is not installed (extra [gurobi])")
@pytest.mark.parametrize("integer", [False, True])
def test_highs_and_gurobi_agree_on_random_programs(integer):
    rng = np.random.default_rng(7 + integer)
    for _ in range(15):
        p = _random_program(rng, n=int(rng.integers(3, 9)), m=int(rng.integers(1, 7)), integer=integer)
        h = solve(p, "highs", mip_rel_gap=0.0, mip_abs_gap=0.0)
        g = solve(p, "gurobi", mip_rel_gap=0.0, mip_abs_gap=0.0)
        assert h.status is g.status is SolveStatus.OPTIMAL
        assert h.objective == pytest.approx(g.objective, abs=1e-6)
        assert h.bound == pytest.approx(g.bound, abs=1e-6)
        for r in (h, g):
            assert p.max_violation(r.primal) < 1e-6
            assert p.objective_value(r.primal) == pytest.approx(r.objective, abs=1e-6)


def test_the_highs_banner_is_swallowed(capfd, monkeypatch):
    # HiGHS writes its banner straight to file descriptor 1 when the first instance is created
    monkeypatch.setattr(highs.highspy, "Highs", lambda: os.write(1, b"Running HiGHS (banner)\n"))
    print("before", flush=True)
    highs._create_first_instance_silently()
    print("after", flush=True)
    assert capfd.readouterr().out == "before\nafter\n"


@pytest.mark.slow
def test_importing_and_solving_prints_nothing():
    code = ("import numpy as np\nfrom lirpa_lid.solvers import Program, available_solvers, solve\n"
            "p = Program(); x = p.add_variables(2, lower=0, upper=1, integer=True); p.set_objective([1.0, -1.0])\n"
            "for name in available_solvers(): solve(p, name)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""
