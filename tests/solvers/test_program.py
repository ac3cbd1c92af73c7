"""The solver-agnostic Program: builder indices, compiled views, float64 evaluation, and one clear
``InputError`` for each kind of bad input (NaN, lower > upper, wrong shapes, unknown columns)."""
import numpy as np
import pytest
import scipy.sparse as sp

from lirpa_lid.errors import InputError
from lirpa_lid.solvers import Program, SolveStatus, solve


def _small():
    p = Program()
    x = p.add_variables((2, 2), lower=-1.0, upper=[1.0, 2.0], name="w")
    b = p.add_binaries(3, name="on")
    p.add_rows([[1.0, -1.0, 0.0, 0.0]], lower=0.0, upper=0.0, columns=x, name="eq")
    p.add_rows(sp.eye(3), upper=[1.0, 1.0, 0.0], columns=b, name="caps")
    p.set_objective([1.0, 2.0], columns=b[:2], offset=3.0)
    return p, x, b


def test_builders_return_indices_in_the_requested_shape():
    p, x, b = _small()
    assert x.shape == (2, 2) and x.dtype == np.int64 and x.ravel().tolist() == [0, 1, 2, 3]
    assert b.tolist() == [4, 5, 6]
    assert p.num_variables == 7 and p.num_rows == 4 and p.num_integer == 3 and p.is_mip
    assert p.add_rows(np.ones(7), lower=-5.0).tolist() == [4]  # a 1-D row over all variables


def test_compiled_views_are_float64_and_read_only():
    p, x, b = _small()
    assert p.lower.tolist() == [-1, -1, -1, -1, 0, 0, 0]
    assert p.upper.tolist() == [1, 2, 1, 2, 1, 1, 1]
    assert p.integer.tolist() == [False] * 4 + [True] * 3
    assert p.matrix.shape == (4, 7) and p.matrix.toarray()[0].tolist() == [1, -1, 0, 0, 0, 0, 0]
    assert p.row_lower.tolist() == [0, -np.inf, -np.inf, -np.inf]
    assert p.objective.tolist() == [0, 0, 0, 0, 1, 2, 0] and p.offset == 3.0
    assert p.quadratic is None and p.is_convex()
    with pytest.raises(ValueError):
        p.lower[0] = 5.0
    p.add_variables(1, name="late")  # a later block: views are rebuilt, objective padded with 0
    assert p.objective.shape == (8,) and p.matrix.shape == (4, 8)


def test_repeated_columns_add_up_and_quadratic_is_symmetrised():
    p = Program()
    x = p.add_variables(2)
    p.add_rows([[1.0, 2.0, 3.0]], upper=1.0, columns=[x[0], x[1], x[0]])
    assert p.matrix.toarray().tolist() == [[4.0, 2.0]]
    p.set_objective(quadratic=[[2.0, 2.0], [0.0, 2.0]])
    assert p.quadratic.toarray().tolist() == [[2.0, 1.0], [1.0, 2.0]]
    assert p.objective_value([1.0, 1.0]) == pytest.approx(0.5 * 6.0)


def test_objective_value_and_violation_in_float64():
    p, x, b = _small()
    point = np.array([0.5, 0.5, 0.0, 0.0, 1.0, 0.0, 0.0])
    assert p.objective_value(point) == 4.0
    assert p.max_violation(point) == 0.0
    point[6] = 0.25  # fractional binary above its row's upper bound 0
    assert p.max_violation(point) == 0.25
    with pytest.raises(InputError, match="has 7 entries, got 3"):
        p.objective_value([1, 2, 3])


def test_convexity_check():
    p = Program()
    p.add_variables(3)
    p.set_objective(quadratic=np.diag([1.0, 0.0, 2.0]))
    assert p.is_convex()
    p.set_objective(quadratic=[[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])  # x0·x1: indefinite
    assert not p.is_convex()
    p.set_objective(quadratic=np.diag([1.0, -1e-3, 0.0]))
    assert not p.is_convex()


def test_quadratic_rows():
    p = Program()
    x = p.add_variables(2, lower=-2.0, upper=2.0)
    disc = p.add_quadratic_row(2 * np.eye(2), upper=1.0, columns=x, name="disc")  # x0² + x1² ≤ 1: convex
    assert disc == 0 and p.num_quadratic_rows == 1 and p.is_convex()
    row = p.quadratic_rows[0]
    assert row.name == "disc" and row.quadratic.shape == (2, 2) and row.value(np.array([1.0, 1.0])) == 2.0
    assert p.max_violation([1.0, 1.0]) == 1.0 and p.max_violation([0.6, 0.6]) == 0.0
    p.add_quadratic_row(2 * np.eye(2), lower=0.25, columns=x, name="outside")  # x0² + x1² ≥ ¼: not convex
    assert not p.is_convex() and "2 quadratic rows" in repr(p)
    assert p.max_violation([0.1, 0.1]) == pytest.approx(0.25 - 0.02)
    with pytest.raises(InputError, match="quadratic row 'bad': quadratic coefficients have shape"):
        p.add_quadratic_row(np.ones((2, 3)), columns=x, name="bad")
    with pytest.raises(InputError, match=r"quadratic row bad\[0\]: lower bound 1.0 > upper bound 0.0"):
        p.add_quadratic_row(np.eye(2), lower=1.0, upper=0.0, columns=x, name="bad")
    with pytest.raises(InputError, match="linear coefficients must be finite"):
        p.add_quadratic_row(np.eye(2), [np.nan, 0.0], upper=1.0, columns=x, name="bad")
    assert p.num_quadratic_rows == 2


def test_names_point_at_block_elements():
    p, x, b = _small()
    assert p.variable_name(3) == "w[1, 1]" and p.variable_name(5) == "on[1]"
    assert p.row_name(2) == "caps[1]"
    with pytest.raises(InputError, match="variable index 9 out of range"):
        p.variable_name(9)
    assert "MILP: 7 variables (3 integer), 4 rows" in repr(p)


@pytest.mark.parametrize("call, message", [
    (lambda p: p.add_variables(3, lower=[0.0, np.nan, 0.0], name="h1"), r"variable h1\[1\]: lower bound is NaN"),
    (lambda p: p.add_variables((2, 2), lower=[[0, 0], [0, 2]], upper=1.0, name="h1"),
     r"variable h1\[1, 1\]: lower bound 2.0 > upper bound 1.0"),
    (lambda p: p.add_variables(2, lower=np.inf, name="h1"), r"variable h1\[0\]: lower bound inf"),
    (lambda p: p.add_variables(3, lower=[0.0, 1.0], name="h1"), r"lower bounds of variable block 'h1'.*\(3,\)"),
    (lambda p: p.add_variables(-1, name="h1"), "shape must be a non-negative int"),
    (lambda p: p.add_rows([[1.0, np.nan]], upper=1.0, columns=[0, 1], name="relu"),
     r"row block 'relu': coefficient at \(0, 1\) is nan"),
    (lambda p: p.add_rows([[1.0, np.inf]], upper=1.0, columns=[0, 1], name="relu"), "must be finite"),
    (lambda p: p.add_rows([[1.0, 1.0]], lower=2.0, upper=1.0, columns=[0, 1], name="relu"),
     r"row relu\[0\]: lower bound 2.0 > upper bound 1.0"),
    (lambda p: p.add_rows([[1.0, 1.0]], upper=np.nan, columns=[0, 1], name="relu"), r"row relu\[0\]: upper bound is NaN"),
    (lambda p: p.add_rows([[1.0, 1.0]], upper=1.0, columns=[0, 5], name="relu"), "column index 5 is not a variable"),
    (lambda p: p.add_rows([[1.0, 1.0]], upper=1.0, columns=[0], name="relu"), "2 coefficient columns but 1"),
    (lambda p: p.add_rows([[1.0, 1.0]], upper=1.0, name="relu"), "the program has 3 variables"),
    (lambda p: p.add_rows([[1.0, 1.0]], upper=[1.0, 2.0], columns=[0, 1], name="relu"), "broadcastable to shape"),
    (lambda p: p.add_rows(np.ones((1, 1, 1)), name="relu"), "1-D \\(one row\\) or 2-D"),
    (lambda p: p.add_rows([[1.0]], columns=[0.5], name="relu"), "integer variable indices"),
    (lambda p: p.set_objective([1.0, np.nan, 0.0]), r"variable x\[1\] is nan"),
    (lambda p: p.set_objective([1.0, 0.0]), "2 coefficient columns but the program has 3"),
    (lambda p: p.set_objective([1.0, 0.0, 0.0], offset=np.inf), "offset must be a finite number"),
    (lambda p: p.set_objective([1.0, 0.0, 0.0], quadratic=np.eye(2)), "must be square"),
])
def test_bad_input_gives_one_clear_error(call, message):
    p = Program()
    p.add_variables(3, lower=0.0, upper=1.0, name="x")
    with pytest.raises(InputError, match=message):
        call(p)
    assert p.num_variables == 3 and p.num_rows == 0  # nothing half-added


def test_rows_without_non_zeros_are_constants():
    """A block of all-zero rows (an encoding whose coefficients all vanish) is accepted: ``lo ≤ 0 ≤ hi``
    holds or makes the program infeasible."""
    p = Program()
    p.add_variables(3, lower=0, upper=1)
    p.add_rows(np.zeros((2, 3)), lower=-1, upper=1)
    p.add_rows(sp.csr_matrix((1, 3)), lower=0, upper=0)
    p.add_rows(np.ones((1, 3)), lower=1)
    p.set_objective(np.ones(3))
    assert p.num_rows == 4 and solve(p).bound == pytest.approx(1.0)
    q = Program()
    q.add_variables(2)
    q.add_rows(np.zeros((1, 2)), lower=1, upper=2)
    assert solve(q).status is SolveStatus.INFEASIBLE
