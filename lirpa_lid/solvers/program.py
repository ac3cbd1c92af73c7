"""A solver-agnostic optimisation program: what an encoding builds and a solver backend reads.

    minimise    offset + c·x + ½ xᵀQx
    subject to  row_lower ≤ A x ≤ row_upper        (sparse rows; ±inf for a missing side)
                lower ≤ x ≤ upper                 (per variable; ±inf allowed)
                x_j integer for j with integer[j] (binaries are integers in [0, 1])
                lower_k ≤ a_k·x + ½ xᵀQ_k x ≤ upper_k  (optional quadratic rows, e.g. bilinear z = x·y;
                                                   Gurobi only)

Variables are created in named blocks of any shape; ``add_variables`` returns their indices in the
same shape, so an encoding of ``z = W h + b`` writes ``h = p.add_variables(3, lower=l, upper=u, name="h1")``,
``z = p.add_variables(4, name="z1")`` and ``p.add_rows(np.hstack([np.eye(4), -W]), lower=b, upper=b,
columns=np.r_[z, h], name="fc1")``. Every entry point validates what it is given (shapes,
NaN, inf coefficients, lower > upper, unknown columns) and raises ``InputError`` naming the block and
the element at fault. The program is always a minimisation: maximise ``f`` by minimising ``-f``.

Backends read the compiled float64 views (``lower``, ``upper``, ``integer``, ``matrix``, ``row_lower``,
``row_upper``, ``objective``, ``offset``, ``quadratic``, ``quadratic_rows``), rebuilt only after a change.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.linalg

from lirpa_lid.errors import InputError

#: quadratic parts with at most this many variables are checked for convexity by a dense eigenvalue
#: decomposition; larger non-diagonal ones by a sparse smallest-eigenvalue solve
_DENSE_CONVEXITY_LIMIT = 2000


@dataclass(frozen=True)
class _Block:
    """A named block of variables or rows: ``shape`` elements starting at flat index ``start``."""

    name: str
    start: int
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def element(self, flat: int) -> str:
        """``name[i, j]`` for the element at flat index ``flat`` of the whole program."""
        index = np.unravel_index(flat - self.start, self.shape) if self.shape else ()
        return f"{self.name}[{', '.join(str(int(i)) for i in index)}]"


def _shape(shape: int | tuple[int, ...], what: str) -> tuple[int, ...]:
    dims = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if not all(isinstance(d, (int, np.integer)) and d >= 0 for d in dims):
        raise InputError(f"{what}: shape must be a non-negative int or a tuple of them, got {shape!r}")
    return tuple(int(d) for d in dims)


def _values(value, shape: tuple[int, ...], what: str) -> np.ndarray:
    """``value`` as float64 broadcast to ``shape`` (a copy), ``InputError`` if it cannot be."""
    try:
        array = np.asarray(value, dtype=np.float64)
        return np.array(np.broadcast_to(array, shape), dtype=np.float64)
    except (TypeError, ValueError) as err:
        given = np.shape(value) if not isinstance(value, str) else "a string"
        raise InputError(f"{what}: expected numbers broadcastable to shape {shape}, got {given}") from err


def _check_bounds(lower: np.ndarray, upper: np.ndarray, block: _Block, kind: str) -> None:
    """NaN, an empty interval (lower > upper) or a bound that excludes every number (lower = +inf or
    upper = -inf) raise ``InputError`` naming the first element at fault."""
    flat_lower, flat_upper = lower.reshape(-1), upper.reshape(-1)
    for label, side in (("lower", flat_lower), ("upper", flat_upper)):
        bad = np.flatnonzero(np.isnan(side))
        if bad.size:
            raise InputError(f"{kind} {block.element(block.start + bad[0])}: {label} bound is NaN "
                             f"({bad.size} NaN {label} bound(s) in block {block.name!r})")
    bad = np.flatnonzero((flat_lower > flat_upper) | (flat_lower == np.inf) | (flat_upper == -np.inf))
    if bad.size:
        i = bad[0]
        raise InputError(f"{kind} {block.element(block.start + i)}: lower bound {flat_lower[i]} > upper bound "
                         f"{flat_upper[i]} or infinite on the wrong side ({bad.size} such element(s) in "
                         f"block {block.name!r})")


def _columns(columns, count: int, num_variables: int, what: str) -> np.ndarray:
    """Flat int64 variable indices, ``InputError`` unless there are ``count`` of them, all existing."""
    if columns is None:
        if count != num_variables:
            raise InputError(f"{what}: {count} coefficient columns but the program has {num_variables} "
                             f"variables; pass columns=<variable indices> to address a subset")
        return np.arange(num_variables, dtype=np.int64)
    cols = np.asarray(columns)
    if cols.dtype.kind not in "iu":
        raise InputError(f"{what}: columns must be integer variable indices, got dtype {cols.dtype}")
    cols = cols.reshape(-1).astype(np.int64)
    if cols.size != count:
        raise InputError(f"{what}: {count} coefficient columns but {cols.size} variable indices in columns")
    outside = cols[(cols < 0) | (cols >= num_variables)]
    if outside.size:
        raise InputError(f"{what}: column index {int(outside[0])} is not a variable "
                         f"(the program has {num_variables})")
    return cols


def _matrix(coefficients, what: str) -> sp.coo_matrix:
    """Dense (1-D = one row, or 2-D) or scipy-sparse coefficients as a float64 COO matrix."""
    if sp.issparse(coefficients):
        matrix = sp.coo_matrix(coefficients, dtype=np.float64)
    else:
        try:
            dense = np.asarray(coefficients, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise InputError(f"{what}: coefficients must be numbers (a 1-D or 2-D array or a scipy sparse "
                             f"matrix)") from err
        if dense.ndim not in (1, 2):
            raise InputError(f"{what}: coefficients must be 1-D (one row) or 2-D, got shape {dense.shape}")
        matrix = sp.coo_matrix(np.atleast_2d(dense))
    if not np.isfinite(matrix.data).all():
        bad = np.flatnonzero(~np.isfinite(matrix.data))[0]
        raise InputError(f"{what}: coefficient at ({matrix.row[bad]}, {matrix.col[bad]}) is "
                         f"{matrix.data[bad]}; coefficients must be finite")
    return matrix


def _symmetrised(q: sp.coo_matrix, columns: np.ndarray) -> sp.coo_matrix:
    """``(Q + Qᵀ)/2`` of ``q`` (local ``[k, k]``) with its indices mapped to the variables ``columns``."""
    row, col = columns[q.row], columns[q.col]
    return sp.coo_matrix((np.r_[q.data, q.data] / 2, (np.r_[row, col], np.r_[col, row])))


def _is_positive_semidefinite(q: sp.csr_matrix, tolerance: float) -> bool:
    """Smallest eigenvalue of symmetric ``q`` ≥ −tolerance·max(1, max|q|) (on the rows/columns it uses)."""
    support = np.unique(q.tocoo().row)
    if support.size == 0:
        return True
    q = q[support][:, support]
    scale = tolerance * max(1.0, float(abs(q).max()))
    if q.nnz == np.count_nonzero(q.diagonal()):  # diagonal
        return bool(q.diagonal().min() >= -scale)
    if support.size <= _DENSE_CONVEXITY_LIMIT:
        return bool(scipy.linalg.eigvalsh(q.toarray(), subset_by_index=[0, 0])[0] >= -scale)
    smallest = scipy.sparse.linalg.eigsh(q.tocsc(), k=1, which="SA", return_eigenvectors=False)[0]
    return bool(smallest >= -scale)


@dataclass(frozen=True)
class QuadraticRow:
    """One row ``lower ≤ linear·x + ½ xᵀ quadratic x ≤ upper`` (``linear`` CSR ``[1, n]``, ``quadratic``
    symmetric CSR ``[n, n]``)."""

    name: str
    linear: sp.csr_matrix
    quadratic: sp.csr_matrix
    lower: float
    upper: float

    def value(self, x: np.ndarray) -> float:
        """``linear·x + ½ xᵀ quadratic x`` at ``x`` (float64 ``[n]``)."""
        return float((self.linear @ x)[0]) + 0.5 * float(x @ (self.quadratic @ x))

    def is_convex(self, tolerance: float = 1e-9) -> bool:
        """Whether the set it defines is convex: ``quadratic`` PSD where ``upper`` is finite, negative
        semidefinite where ``lower`` is."""
        return ((not np.isfinite(self.upper) or _is_positive_semidefinite(self.quadratic, tolerance))
                and (not np.isfinite(self.lower) or _is_positive_semidefinite(-self.quadratic, tolerance)))


class Program:
    """A linear, mixed-integer linear or convex quadratic program to minimise (see the module docstring).

    Build it with ``add_variables`` / ``add_binaries``, ``add_rows`` (``add_quadratic_row``) and
    ``set_objective``; hand it to
    ``lirpa_lid.solvers.solve``. Indices returned by the builders are int64 arrays of flat variable
    (or row) indices, stable for the life of the program.
    """

    def __init__(self) -> None:
        self._variable_blocks: list[_Block] = []
        self._row_blocks: list[_Block] = []
        self._lower: list[np.ndarray] = []
        self._upper: list[np.ndarray] = []
        self._integer: list[np.ndarray] = []
        self._rows: list[sp.coo_matrix] = []  # each with global column indices
        self._row_lower: list[np.ndarray] = []
        self._row_upper: list[np.ndarray] = []
        self._num_variables = 0
        self._num_rows = 0
        self._linear = (np.zeros(0, np.int64), np.zeros(0))  # (columns, coefficients)
        self._quadratic: sp.coo_matrix | None = None  # symmetric, global indices, shape set when compiled
        self._quadratic_rows: list[tuple[str, np.ndarray, np.ndarray, sp.coo_matrix, float, float]] = []
        self._offset = 0.0
        self._compiled: dict[str, object] | None = None

    # ------------------------------------------------------------------------------------- building
    def add_variables(self, shape: int | tuple[int, ...], *, lower=-np.inf, upper=np.inf, integer: bool = False,
                      name: str = "x") -> np.ndarray:
        """Add a block of variables of ``shape``; ``lower``/``upper`` broadcast to it (±inf allowed;
        default free). Returns their flat indices as an int64 array of ``shape``."""
        shape = _shape(shape, f"variable block {name!r}")
        block = _Block(name, self._num_variables, shape)
        lower = _values(lower, shape, f"lower bounds of variable block {name!r}")
        upper = _values(upper, shape, f"upper bounds of variable block {name!r}")
        _check_bounds(lower, upper, block, "variable")
        self._variable_blocks.append(block)
        self._lower.append(lower.reshape(-1))
        self._upper.append(upper.reshape(-1))
        self._integer.append(np.full(block.size, bool(integer)))
        self._num_variables += block.size
        self._compiled = None
        return np.arange(block.start, block.start + block.size, dtype=np.int64).reshape(shape)

    def add_binaries(self, shape: int | tuple[int, ...], *, name: str = "b") -> np.ndarray:
        """Add a block of 0/1 variables of ``shape``; returns their indices (int64, ``shape``)."""
        return self.add_variables(shape, lower=0.0, upper=1.0, integer=True, name=name)

    def add_rows(self, coefficients, *, lower=-np.inf, upper=np.inf, columns=None, name: str = "row") -> np.ndarray:
        """Add rows ``lower ≤ coefficients @ x[columns] ≤ upper``.

        ``coefficients``: ``[m, k]`` dense or scipy-sparse (a 1-D array is one row); ``columns``: the
        ``k`` variable indices its columns refer to (any shape, flattened; repeated indices add up),
        or ``None`` for all variables in order. ``lower``/``upper`` broadcast to ``[m]`` (±inf for a
        one-sided row; equal for an equality). Returns the new rows' indices, int64 ``[m]``.
        """
        what = f"row block {name!r}"
        local = _matrix(coefficients, what)
        cols = _columns(columns, local.shape[1], self._num_variables, what)
        block = _Block(name, self._num_rows, (local.shape[0],))
        row_lower = _values(lower, block.shape, f"lower bounds of {what}")
        row_upper = _values(upper, block.shape, f"upper bounds of {what}")
        _check_bounds(row_lower, row_upper, block, "row")
        # explicit shape: a block without non-zeros (rows of constants only) has no indices to infer it from
        self._rows.append(sp.coo_matrix((local.data, (local.row + block.start, cols[local.col])),
                                        shape=(block.start + block.size, self._num_variables)))
        self._row_blocks.append(block)
        self._row_lower.append(row_lower)
        self._row_upper.append(row_upper)
        self._num_rows += block.size
        self._compiled = None
        return np.arange(block.start, block.start + block.size, dtype=np.int64)

    def set_objective(self, linear=None, *, offset: float = 0.0, quadratic=None, columns=None) -> None:
        """Set the objective ``offset + linear·x[columns] + ½ x[columns]ᵀ quadratic x[columns]`` (to minimise),
        replacing any earlier one.

        ``linear``: ``[k]`` (``None``: zero); ``quadratic``: ``[k, k]`` dense or scipy-sparse, symmetrised
        as ``(Q + Qᵀ)/2`` (``None``: a linear objective); ``columns``: the ``k`` variable indices both refer
        to, ``None`` for all variables. Variables added later have objective coefficient 0. A
        non-convex ``quadratic`` is accepted here; only Gurobi with ``non_convex=True`` solves it.
        """
        if not (isinstance(offset, (int, float, np.floating, np.integer)) and math.isfinite(offset)):
            raise InputError(f"objective offset must be a finite number, got {offset!r}")
        k = None if linear is None else np.size(linear)
        if quadratic is not None:
            q = _matrix(quadratic, "quadratic objective")
            if q.shape[0] != q.shape[1] or (k is not None and q.shape[0] != k):
                raise InputError(f"quadratic objective has shape {q.shape}; it must be square [k, k] with k the "
                                 f"length of the linear part ({k})")
            k = q.shape[0]
        if k is None:
            k = self._num_variables if columns is None else np.size(columns)
        cols = _columns(columns, k, self._num_variables, "objective")
        c = np.zeros(k) if linear is None else _values(linear, np.shape(linear), "linear objective").reshape(-1)
        if not np.isfinite(c).all():
            raise InputError(f"linear objective coefficient of variable {self.variable_name(cols[~np.isfinite(c)][0])} "
                             f"is {c[~np.isfinite(c)][0]}; coefficients must be finite")
        self._linear = (cols, c)
        self._offset = float(offset)
        self._quadratic = None
        if quadratic is not None:
            self._quadratic = _symmetrised(q, cols)
        self._compiled = None

    def add_quadratic_row(self, quadratic, linear=None, *, lower: float = -np.inf, upper: float = np.inf,
                          columns=None, name: str = "quadratic") -> int:
        """Add one row ``lower ≤ linear·x[columns] + ½ x[columns]ᵀ quadratic x[columns] ≤ upper``; returns its
        index among the quadratic rows.

        ``quadratic``: ``[k, k]`` dense or scipy-sparse, symmetrised as ``(Q + Qᵀ)/2``; a bilinear product
        ``x[i]·x[j]`` is ``Q[i, j] = Q[j, i] = 1``. ``linear``: ``[k]`` or ``None``; ``columns``: the ``k``
        variable indices, ``None`` for all. Only Gurobi solves programs with quadratic rows (with
        ``non_convex=True`` unless every row is convex).
        """
        what = f"quadratic row {name!r}"
        q = _matrix(quadratic, what)
        if q.shape[0] != q.shape[1]:
            raise InputError(f"{what}: quadratic coefficients have shape {q.shape}; they must be square")
        cols = _columns(columns, q.shape[0], self._num_variables, what)
        c = np.zeros(q.shape[0]) if linear is None else _values(linear, (q.shape[0],), f"linear part of {what}")
        if not np.isfinite(c).all():
            raise InputError(f"{what}: linear coefficients must be finite")
        lower, upper = _values(lower, (1,), f"lower bound of {what}"), _values(upper, (1,), f"upper bound of {what}")
        _check_bounds(lower, upper, _Block(name, 0, (1,)), "quadratic row")
        self._quadratic_rows.append((name, cols, c, _symmetrised(q, cols), float(lower[0]), float(upper[0])))
        self._compiled = None
        return len(self._quadratic_rows) - 1

    # ------------------------------------------------------------------------------------- reading
    @property
    def num_variables(self) -> int:
        """Number of variables."""
        return self._num_variables

    @property
    def num_rows(self) -> int:
        """Number of linear rows."""
        return self._num_rows

    @property
    def num_integer(self) -> int:
        """Number of integer (including binary) variables."""
        return int(self.integer.sum())

    @property
    def is_mip(self) -> bool:
        """Whether any variable is integer."""
        return self.num_integer > 0

    @property
    def has_quadratic(self) -> bool:
        """Whether the objective has a non-zero quadratic part."""
        return self.quadratic is not None

    @property
    def num_quadratic_rows(self) -> int:
        """Number of quadratic rows."""
        return len(self._quadratic_rows)

    def _compile(self) -> dict[str, object]:
        if self._compiled is None:
            n, m = self._num_variables, self._num_rows
            data = np.concatenate([np.zeros(0), *(r.data for r in self._rows)])
            row = np.concatenate([np.zeros(0, np.int64), *(r.row for r in self._rows)])
            col = np.concatenate([np.zeros(0, np.int64), *(r.col for r in self._rows)])
            matrix = sp.csr_matrix((data, (row, col)), shape=(m, n))  # duplicates summed
            objective = np.zeros(n)
            np.add.at(objective, *self._linear)
            quadratic = None
            if self._quadratic is not None:
                q = self._quadratic
                quadratic = sp.csr_matrix((q.data, (q.row, q.col)), shape=(n, n))  # duplicates summed
                quadratic.eliminate_zeros()
                quadratic = quadratic if quadratic.nnz else None
            quadratic_rows = tuple(
                QuadraticRow(name, sp.csr_matrix((c, (np.zeros_like(cols), cols)), shape=(1, n)),
                             sp.csr_matrix((q.data, (q.row, q.col)), shape=(n, n)), lower, upper)
                for name, cols, c, q, lower, upper in self._quadratic_rows)
            self._compiled = {
                "quadratic_rows": quadratic_rows,
                "lower": np.concatenate([np.zeros(0), *self._lower]),
                "upper": np.concatenate([np.zeros(0), *self._upper]),
                "integer": np.concatenate([np.zeros(0, bool), *self._integer]),
                "matrix": matrix,
                "row_lower": np.concatenate([np.zeros(0), *self._row_lower]),
                "row_upper": np.concatenate([np.zeros(0), *self._row_upper]),
                "objective": objective,
                "quadratic": quadratic,
            }
            for value in self._compiled.values():
                if isinstance(value, np.ndarray):
                    value.flags.writeable = False
        return self._compiled

    @property
    def lower(self) -> np.ndarray:
        """Variable lower bounds, float64 ``[n]`` (read-only; may be -inf)."""
        return self._compile()["lower"]

    @property
    def upper(self) -> np.ndarray:
        """Variable upper bounds, float64 ``[n]`` (read-only; may be +inf)."""
        return self._compile()["upper"]

    @property
    def integer(self) -> np.ndarray:
        """Integrality, bool ``[n]`` (read-only)."""
        return self._compile()["integer"]

    @property
    def matrix(self) -> sp.csr_matrix:
        """Row coefficients ``A``, CSR ``[m, n]`` float64, duplicates summed."""
        return self._compile()["matrix"]

    @property
    def row_lower(self) -> np.ndarray:
        """Row lower bounds, float64 ``[m]`` (read-only; may be -inf)."""
        return self._compile()["row_lower"]

    @property
    def row_upper(self) -> np.ndarray:
        """Row upper bounds, float64 ``[m]`` (read-only; may be +inf)."""
        return self._compile()["row_upper"]

    @property
    def objective(self) -> np.ndarray:
        """Linear objective coefficients ``c``, float64 ``[n]`` (read-only)."""
        return self._compile()["objective"]

    @property
    def offset(self) -> float:
        """Constant term of the objective."""
        return self._offset

    @property
    def quadratic(self) -> sp.csr_matrix | None:
        """Symmetric ``Q`` of the objective's ``½ xᵀQx``, CSR ``[n, n]``, or ``None`` when it is zero."""
        return self._compile()["quadratic"]

    @property
    def quadratic_rows(self) -> tuple[QuadraticRow, ...]:
        """The quadratic rows, in the order they were added."""
        return self._compile()["quadratic_rows"]

    def variable_name(self, index: int) -> str:
        """``block[i, j]`` for variable ``index``."""
        return self._element(self._variable_blocks, int(index), self._num_variables, "variable")

    def row_name(self, index: int) -> str:
        """``block[i]`` for row ``index``."""
        return self._element(self._row_blocks, int(index), self._num_rows, "row")

    @staticmethod
    def _element(blocks: list[_Block], index: int, count: int, kind: str) -> str:
        if not 0 <= index < count:
            raise InputError(f"{kind} index {index} out of range (the program has {count})")
        starts = [b.start for b in blocks]
        return blocks[int(np.searchsorted(starts, index, side="right")) - 1].element(index)

    def is_convex(self, tolerance: float = 1e-9) -> bool:
        """Whether the objective's quadratic part is positive semidefinite (smallest eigenvalue ≥
        −tolerance·max|Q|) and every quadratic row is convex; True for an LP/MILP."""
        objective = self.quadratic is None or _is_positive_semidefinite(self.quadratic, tolerance)
        return objective and all(row.is_convex(tolerance) for row in self.quadratic_rows)

    # --------------------------------------------------------------------------------- evaluation
    def objective_value(self, x) -> float:
        """The objective at ``x`` (float64 ``[n]``), computed here in float64 (not by a solver)."""
        x = self._point(x)
        value = self._offset + float(self.objective @ x)
        if self.quadratic is not None:
            value += 0.5 * float(x @ (self.quadratic @ x))
        return value

    def max_violation(self, x) -> float:
        """Largest violation at ``x`` of any variable bound, row bound (linear or quadratic) or integrality
        (0 when feasible)."""
        x = self._point(x)
        ax = self.matrix @ x
        quadratic = np.array([row.value(x) for row in self.quadratic_rows])
        parts = [self.lower - x, x - self.upper, self.row_lower - ax, ax - self.row_upper,
                 np.abs(x - np.round(x))[self.integer],
                 np.array([r.lower for r in self.quadratic_rows]) - quadratic,
                 quadratic - np.array([r.upper for r in self.quadratic_rows])]
        return float(max([0.0, *(float(p.max()) for p in parts if p.size)]))

    def _point(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if x.size != self._num_variables:
            raise InputError(f"a point of this program has {self._num_variables} entries, got {x.size}")
        return x

    def __repr__(self) -> str:
        kind = "QP" if self.has_quadratic else "LP"
        kind = f"MI{kind}" if self.is_mip else kind
        return (f"Program({kind}: {self._num_variables} variables ({self.num_integer} integer), "
                f"{self._num_rows} rows, {self.matrix.nnz} nonzeros"
                + (f", {self.num_quadratic_rows} quadratic rows)" if self._quadratic_rows else ")"))
