"""The program of one item: every (θ, x) of the weight box and the input box, pushed through the network,
as the feasible set of a mixed-integer linear program; the margin ``c·f`` is its objective.

Each node is a vector whose elements are either constants (fixed values, dead ReLUs) or program
variables. Per operator (input ``h``, output ``z``):

* ``Linear`` ``z = W h + b``: one equality row per output. A product ``W_ij h_j`` is linear (exact) when
  ``h_j`` is a constant (a fixed input: the first boxed layer, or any layer after which nothing is boxed)
  or ``W_ij`` does not move; otherwise it is a product variable ``p_ij`` with the four McCormick rows
  over ``[w_lo, w_hi] × [h_lo, h_hi]`` (sound, not exact) and, with ``bilinear_exact`` (Gurobi
  ``NonConvex=2``), the quadratic row ``p_ij = W_ij h_j`` (exact). A boxed bias is a variable.
* ``ReLU`` ``y = max(h, 0)`` with bounds ``l ≤ h ≤ u``: ``u ≤ 0`` the constant 0; ``l ≥ 0`` the same
  variable; otherwise ``y ∈ [0, u]``, a binary ``δ`` and ``y ≥ h``, ``y ≤ h − l(1 − δ)``, ``y ≤ u δ``
  (exact).
* constant element-wise affine maps ``y = s·h + t``: an equality row per variable element; reshapes:
  the same elements in the same (row-major) order.

Variable bounds are the widened intermediate bounds of ``chain.ExactChain``; McCormick rows use them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from lirpa_lid.bounds.exact.chain import ExactChain, ParamInterval
from lirpa_lid.bounds.native.activation import ReluOp
from lirpa_lid.bounds.native.affine import AffineOp
from lirpa_lid.bounds.native.linear import LinearOp
from lirpa_lid.bounds.native.reshape import ReshapeOp
from lirpa_lid.errors import InputError
from lirpa_lid.solvers import Program


@dataclass(frozen=True)
class NodeTerms:
    """A node of one item: element ``k`` is variable ``var[k]``, or the constant ``value[k]`` where
    ``var[k] < 0``; ``lower``/``upper`` bound it (equal to ``value`` for constants). All ``[n]``."""

    var: np.ndarray
    value: np.ndarray
    lower: np.ndarray
    upper: np.ndarray

    @classmethod
    def constant(cls, value: np.ndarray) -> NodeTerms:
        """A node of constants."""
        value = np.asarray(value, dtype=np.float64)
        return cls(np.full(value.shape, -1, dtype=np.int64), value, value, value)

    @property
    def is_constant(self) -> np.ndarray:
        """Elements that are constants, bool ``[n]``."""
        return self.var < 0


@dataclass(frozen=True)
class MarginEncoding:
    """The program of one item (see the module docstring) whose objective is the margin ``c·f`` of one
    specification row ``c``.

    Attributes:
        program: the MILP (or MIQCP with ``bilinear_exact``); minimising it minimises the margin.
        margin: the specification row ``c``, float64 ``[n_out]``.
        params: ``name -> variable indices`` (int64, the parameter's shape) of every boxed parameter.
        input: the network input, ``NodeTerms`` ``[n_in]`` (constants when the input is fixed).
        output: the network output, ``NodeTerms`` ``[n_out]``.
        exact: no McCormick relaxation was needed (or every product has its exact quadratic row): the
            program's minimum is the minimum of the margin.
        binaries: one per unstable ReLU; products: product variables (McCormick envelopes).
    """

    program: Program
    margin: np.ndarray
    params: dict[str, np.ndarray]
    input: NodeTerms
    output: NodeTerms
    exact: bool
    binaries: int
    products: int

    def cut_off_above_(self, threshold: float) -> None:
        """Add the row ``c·f ≤ threshold``: every branch whose margin provably exceeds ``threshold`` becomes
        infeasible, so a solver stops as soon as the whole box is decided (Gurobi's ``BestBdStop`` as a row);
        an infeasible program then proves ``min c·f > threshold``. A constant margin needs no row."""
        variable = ~self.output.is_constant
        if not variable.any():
            return
        offset = float(self.margin[~variable] @ self.output.value[~variable])
        self.program.add_rows(self.margin[variable], upper=threshold - offset, columns=self.output.var[variable],
                              name="cutoff")

    def parameters_at(self, primal: np.ndarray) -> dict[str, np.ndarray]:
        """The boxed parameters at a point of the program, float64 arrays by name."""
        return {name: np.asarray(primal)[index] for name, index in self.params.items()}

    def input_at(self, primal: np.ndarray) -> np.ndarray:
        """The network input at a point of the program, float64 ``[n_in]``."""
        point = self.input.value.copy()
        variable = ~self.input.is_constant
        point[variable] = np.asarray(primal)[self.input.var[variable]]
        return point


def encode_item(chain: ExactChain, item: int, c, bilinear_exact: bool = False) -> MarginEncoding:
    """The program of item ``item`` of ``chain`` minimising the margin ``c·f``, ``c`` ``[n_out]``."""
    c = np.asarray(c, dtype=np.float64).reshape(-1)
    if c.size != chain.num_outputs:
        raise InputError(f"specification row has {c.size} entries, the network has {chain.num_outputs} outputs")
    return _Encoder(chain, item, bilinear_exact).run(c)


def _coo(rows: list[np.ndarray], cols: list[np.ndarray], data: list[np.ndarray], m: int, n: int) -> sp.coo_matrix:
    return sp.coo_matrix((np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))), shape=(m, n))


class _Encoder:
    """Builds the program of one item, operator by operator (one method per kind)."""

    def __init__(self, chain: ExactChain, item: int, bilinear_exact: bool):
        self.chain, self.item, self.bilinear_exact = chain, item, bilinear_exact
        self.program = Program()
        self.params: dict[str, np.ndarray] = {}
        self.binaries = 0
        self.products = 0

    def run(self, c: np.ndarray) -> MarginEncoding:
        chain, b = self.chain, self.item
        for interval in (p for layer in chain.params for p in layer.values() if p.boxed):
            self._param_vars(interval)
        node = self._input()
        first = node
        for i, op in enumerate(chain.ops):
            if chain.values[i + 1] is not None:
                node = NodeTerms.constant(chain.values[i + 1][b])
            elif isinstance(op, LinearOp):
                node = self._linear(op, node, chain.params[i], chain.lower[i + 1][b], chain.upper[i + 1][b])
            elif isinstance(op, ReluOp):
                node = self._relu(op, node)
            elif isinstance(op, AffineOp):
                node = self._affine(op, node, chain.shapes[i], chain.lower[i + 1][b], chain.upper[i + 1][b])
            elif isinstance(op, ReshapeOp):
                pass  # row-major flattening: the same elements in the same order
            else:  # exact_chain_ops refused it already
                raise TypeError(f"no exact encoding for {op!r}")
        variable = ~node.is_constant
        self.program.set_objective(c[variable], offset=float(c[~variable] @ node.value[~variable]),
                                   columns=node.var[variable])
        exact = self.products == 0 or self.bilinear_exact
        return MarginEncoding(self.program, c, self.params, first, node, exact, self.binaries, self.products)

    # ------------------------------------------------------------------ variables
    def _param_vars(self, interval: ParamInterval) -> np.ndarray:
        """Variables of a boxed parameter (created once; a parameter used twice shares them)."""
        if interval.name not in self.params:
            self.params[interval.name] = self.program.add_variables(
                interval.lower.shape, lower=interval.lower, upper=interval.upper, name=interval.name)
        return self.params[interval.name]

    def _input(self) -> NodeTerms:
        chain, b = self.chain, self.item
        if chain.values[0] is not None:
            return NodeTerms.constant(chain.values[0][b])
        lower, upper = chain.lower[0][b], chain.upper[0][b]
        point = lower == upper
        var = np.full(lower.shape, -1, dtype=np.int64)
        var[~point] = self.program.add_variables(int((~point).sum()), lower=lower[~point], upper=upper[~point],
                                                 name="input")
        return NodeTerms(var, np.where(point, lower, 0.0), lower, upper)

    def _new_node(self, count: int, lower: np.ndarray, upper: np.ndarray, name: str) -> NodeTerms:
        var = self.program.add_variables(count, lower=lower, upper=upper, name=name)
        return NodeTerms(var, np.zeros(count), lower, upper)

    # ------------------------------------------------------------------ operators
    def _linear(self, op: LinearOp, h: NodeTerms, params: dict[str, ParamInterval], lower: np.ndarray,
                upper: np.ndarray) -> NodeTerms:
        """``z = W h + b`` as one equality row per output: ``z − (variable terms) = (constant terms)``."""
        w, bias = params["weight"], params.get("bias")
        out, n_in = w.lower.shape
        z = self._new_node(out, lower, upper, f"{op.name}.out")
        rows, cols, data = [np.arange(out)], [z.var], [np.ones(out)]
        rhs = np.zeros(out)
        const = np.flatnonzero(h.is_constant)
        if const.size:  # products with a constant input: linear in W (exact)
            v = h.value[const]
            if w.boxed:
                wvar = self.params[w.name][:, const]
                i, j = np.nonzero(np.broadcast_to(v != 0, wvar.shape))
                rows.append(i), cols.append(wvar[i, j]), data.append(-v[j])
            else:
                rhs += w.lower[:, const] @ v
        var = np.flatnonzero(~h.is_constant)
        if var.size:
            w_lo, w_hi = w.lower[:, var], w.upper[:, var]
            moving = w_hi > w_lo
            i, j = np.nonzero(~moving & (w_lo != 0))  # a fixed weight: linear in h
            rows.append(i), cols.append(h.var[var][j]), data.append(-w_lo[i, j])
            i, j = np.nonzero(moving)  # both move: a product variable
            if i.size:
                p = self._products(self.params[w.name][:, var][i, j], w_lo[i, j], w_hi[i, j], h.var[var][j],
                                   h.lower[var][j], h.upper[var][j], op.name)
                rows.append(i), cols.append(p), data.append(-np.ones(i.size))
        if bias is not None:
            if bias.boxed:
                rows.append(np.arange(out)), cols.append(self.params[bias.name]), data.append(-np.ones(out))
            else:
                rhs += bias.lower
        matrix = _coo(rows, cols, data, out, self.program.num_variables)
        self.program.add_rows(matrix, lower=rhs, upper=rhs, name=op.name)
        return z

    def _products(self, w: np.ndarray, w_lo: np.ndarray, w_hi: np.ndarray, h: np.ndarray, h_lo: np.ndarray,
                  h_hi: np.ndarray, name: str) -> np.ndarray:
        """Variables ``p = w·h`` bounded by McCormick's four planes (and, with ``bilinear_exact``, equal to
        the product by a quadratic row); ``[k]`` each."""
        corners = np.stack([w_lo * h_lo, w_lo * h_hi, w_hi * h_lo, w_hi * h_hi])
        k = w.size
        p = self.program.add_variables(k, lower=corners.min(0), upper=corners.max(0), name=f"{name}.products")
        n = self.program.num_variables
        ones, idx = np.ones(k), np.arange(k)
        # p ≥ w_lo h + h_lo w − w_lo h_lo,  p ≥ w_hi h + h_hi w − w_hi h_hi   (rows: p − (·)h − (·)w ≥ rhs)
        # p ≤ w_hi h + h_lo w − w_hi h_lo,  p ≤ w_lo h + h_hi w − w_lo h_hi
        planes = [(w_lo, h_lo, "lower"), (w_hi, h_hi, "lower"), (w_hi, h_lo, "upper"), (w_lo, h_hi, "upper")]
        for a, c, side in planes:
            matrix = _coo([idx, idx, idx], [p, h, w], [ones, -a, -c], k, n)
            rhs = -a * c
            self.program.add_rows(matrix, lower=rhs if side == "lower" else -np.inf,
                                  upper=rhs if side == "upper" else np.inf, name=f"{name}.mccormick")
        if self.bilinear_exact:
            bilinear = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])  # ½·2·w·h = w·h
            for t in range(k):
                self.program.add_quadratic_row(bilinear, np.array([-1.0, 0.0, 0.0]), lower=0.0, upper=0.0,
                                               columns=np.array([p[t], w[t], h[t]]), name=f"{name}.product")
        self.products += k
        return p

    def _relu(self, op: ReluOp, h: NodeTerms) -> NodeTerms:
        """Constants and dead neurons → constants, active → the same variable, unstable → big-M."""
        const = h.is_constant
        dead = ~const & (h.upper <= 0)
        unstable = ~const & (h.lower < 0) & (h.upper > 0)
        var = np.where(const | dead, -1, h.var)
        value = np.where(const, np.maximum(h.value, 0.0), 0.0)
        lower, upper = np.maximum(h.lower, 0.0), np.maximum(h.upper, 0.0)
        lower[const | dead], upper[const | dead] = value[const | dead], value[const | dead]
        k = int(unstable.sum())
        if k:
            x, l, u = h.var[unstable], h.lower[unstable], h.upper[unstable]
            y = self.program.add_variables(k, lower=0.0, upper=u, name=f"{op.name}.out")
            d = self.program.add_binaries(k, name=f"{op.name}.active")
            n, idx, ones = self.program.num_variables, np.arange(k), np.ones(k)
            self.program.add_rows(_coo([idx, idx], [y, x], [ones, -ones], k, n), lower=0.0, name=f"{op.name}.above")
            self.program.add_rows(_coo([idx, idx, idx], [y, x, d], [ones, -ones, -l], k, n), upper=-l,
                                  name=f"{op.name}.below_input")
            self.program.add_rows(_coo([idx, idx], [y, d], [ones, -u], k, n), upper=0.0, name=f"{op.name}.below_u")
            var[unstable] = y
            self.binaries += k
        return NodeTerms(var, value, lower, upper)

    def _affine(self, op: AffineOp, h: NodeTerms, shape: tuple[int, ...], lower: np.ndarray,
                upper: np.ndarray) -> NodeTerms:
        """Constants through the model's own arithmetic; variables by ``y − s·h = t``."""
        const = h.is_constant
        with torch.no_grad():
            mapped = op.forward(torch.from_numpy(np.where(const, h.value, 0.0)).reshape(1, *shape), {})
        value = np.where(const, mapped.reshape(-1).numpy().astype(np.float64), 0.0)
        var = np.full(const.shape, -1, dtype=np.int64)
        k = int((~const).sum())
        if k:
            ones = torch.ones(shape, dtype=torch.float64)
            scale = ones / op.divisor.to(torch.float64) if op.divisor is not None else ones * op.scale.to(torch.float64)
            shift = (ones * op.shift.to(torch.float64)).reshape(-1).numpy()
            s = scale.reshape(-1).numpy()[~const]
            y = self.program.add_variables(k, lower=lower[~const], upper=upper[~const], name=f"{op.name}.out")
            idx = np.arange(k)
            matrix = _coo([idx, idx], [y, h.var[~const]], [np.ones(k), -s], k, self.program.num_variables)
            self.program.add_rows(matrix, lower=shift[~const], upper=shift[~const], name=op.name)
            var[~const] = y
        return NodeTerms(var, value, np.where(const, value, lower), np.where(const, value, upper))
