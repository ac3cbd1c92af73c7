"""The editing LP: the smallest change of the last Linear layer whose relaxation (``relaxation.py``) makes
every property row hold on every sub-box.

Variables (float64): ``ΔW`` ``[m, n_h]``, ``Δb`` ``[m]`` (the change, ``W' = W + ΔW``, ``b' = b + Δb``, each
element within ``[delta_lower, delta_upper]``: 0 for a frozen element, the LID box minus ``W`` for an edit
inside a LID, free otherwise), ``t`` (the ∞-norm), ``s`` ≥ ``|Δ|`` element-wise (the ℓ1 part) and, per
constraint ``k`` (a property row on a sub-box) and neuron ``j``, the hypograph variable ``L_kj``. Rows, with
``a_k = c_kᵀ (W + ΔW)``::

    L_kj − hl_kj (c_kᵀ ΔW)_j ≤ hl_kj (c_kᵀ W)_j        (L_kj ≤ a_kj hl_kj)
    L_kj − hu_kj (c_kᵀ ΔW)_j ≤ hu_kj (c_kᵀ W)_j        (L_kj ≤ a_kj hu_kj; omitted when hu = hl)
    Σ_j L_kj + c_k·Δb ≥ d_k + margin − c_k·b
    −t ≤ Δ ≤ t,   −s ≤ Δ ≤ s

Objective ``"linf"``: minimise ``t``, then, with ``t`` held at its optimum (relative slack
``LEXICOGRAPHIC_SLACK``), minimise ``mean s`` (a second solve). ``"l1"``: minimise ``mean s`` only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from lirpa_lid.solvers import Program, SolveResult, SolveStatus, solve

#: the second solve of the ∞-norm objective keeps ``t ≤ t*·(1 + slack) + slack``
LEXICOGRAPHIC_SLACK = 1e-9
#: the objectives an edit can minimise
OBJECTIVES = ("linf", "l1")


@dataclass(frozen=True)
class Constraints:
    """Constraint rows of the LP: ``K`` property rows on sub-boxes.

    ``C`` ``[K, m]`` and ``d`` ``[K]`` the rows (``C·f − d ≥ margin`` required), ``hl``, ``hu`` ``[K, n_h]``
    the box of the layer input on each row's sub-box.
    """

    C: np.ndarray
    d: np.ndarray
    hl: np.ndarray
    hu: np.ndarray


@dataclass(frozen=True)
class LPSolution:
    """What the LP found: ``status`` of the last solve, the change ``delta_weight`` ``[m, n_h]`` and
    ``delta_bias`` ``[m]`` (``None`` unless optimal), its norms as the LP computed them, the solver's
    name and version, LP size and seconds over all solves."""

    status: SolveStatus
    delta_weight: np.ndarray | None
    delta_bias: np.ndarray | None
    linf: float
    mean_abs: float
    solver: str
    solver_version: str
    variables: int
    rows: int
    seconds: float
    note: str = ""


def _hypograph(C: np.ndarray, h: np.ndarray, dw: np.ndarray, L: np.ndarray) -> sp.coo_matrix:
    """Coefficients of ``L_kj − h_kj Σ_i C_ki ΔW_ij`` for all ``(k, j)``: a COO matrix ``[K·n_h, n]`` in
    global variable indices (``n`` = ``L.max() + 1``)."""
    K, n_h = h.shape
    k_idx, j_idx, i_idx = np.nonzero(np.broadcast_to((C[:, None, :] != 0) & (h[:, :, None] != 0),
                                                     (K, n_h, C.shape[1])))
    rows = np.r_[np.arange(K * n_h), k_idx * n_h + j_idx]
    cols = np.r_[L.reshape(-1), dw[i_idx, j_idx]]
    vals = np.r_[np.ones(K * n_h), -h[k_idx, j_idx] * C[k_idx, i_idx]]
    return sp.coo_matrix((vals, (rows, cols)), shape=(K * n_h, int(L.max()) + 1))


def build_program(weight: np.ndarray, bias: np.ndarray, cons: Constraints, delta_lower: tuple[np.ndarray, np.ndarray],
                  delta_upper: tuple[np.ndarray, np.ndarray], margin: float) -> tuple[Program, dict[str, np.ndarray]]:
    """The LP of the module docstring (no objective yet) and its variable blocks by name (``"dw"``, ``"db"``,
    ``"t"``, ``"s_w"``, ``"s_b"``, ``"L"``). ``delta_lower`` / ``delta_upper``: ``(weight, bias)`` bounds."""
    m, n_h = weight.shape
    p = Program()
    v = {"dw": p.add_variables((m, n_h), lower=delta_lower[0], upper=delta_upper[0], name="dW"),
         "db": p.add_variables(m, lower=delta_lower[1], upper=delta_upper[1], name="db"),
         "t": p.add_variables(1, lower=0.0, name="t"),
         "s_w": p.add_variables((m, n_h), lower=0.0, name="s_W"),
         "s_b": p.add_variables(m, lower=0.0, name="s_b")}
    delta = np.r_[v["dw"].reshape(-1), v["db"]]
    s = np.r_[v["s_w"].reshape(-1), v["s_b"]]
    n = delta.size
    eye = sp.identity(n, format="coo")
    ones = sp.coo_matrix(np.ones((n, 1)))
    for sign in (1.0, -1.0):  # t ∓ Δ ≥ 0, s ∓ Δ ≥ 0
        p.add_rows(sp.hstack([sign * eye, -ones]), upper=0.0, columns=np.r_[delta, v["t"]], name="linf")
        p.add_rows(sp.hstack([sign * eye, -eye]), upper=0.0, columns=np.r_[delta, s], name="l1")
    K = cons.C.shape[0]
    v["L"] = L = p.add_variables((K, n_h), name="L")
    base = cons.C @ weight  # [K, n_h]: (c_kᵀ W)_j
    total = p.num_variables
    p.add_rows(_hypograph(cons.C, cons.hl, v["dw"], L).tocsr()[:, :total], upper=(cons.hl * base).reshape(-1),
               name="L<=a*hl")
    wide = np.flatnonzero((cons.hu != cons.hl).reshape(-1))
    if wide.size:
        p.add_rows(_hypograph(cons.C, cons.hu, v["dw"], L).tocsr()[wide][:, :total],
                   upper=(cons.hu * base).reshape(-1)[wide], name="L<=a*hu")
    summed = sp.hstack([sp.kron(sp.identity(K), np.ones((1, n_h))), sp.coo_matrix(cons.C)])
    p.add_rows(summed, lower=cons.d + margin - cons.C @ bias, columns=np.r_[L.reshape(-1), v["db"]], name="rows")
    return p, v


def solve_edit(weight: np.ndarray, bias: np.ndarray, cons: Constraints, delta_lower: tuple[np.ndarray, np.ndarray],
               delta_upper: tuple[np.ndarray, np.ndarray], *, margin: float, objective: str = "linf",
               solver: str = "highs", time_limit: float | None = None) -> LPSolution:
    """Build and solve the editing LP (``objective`` ``"linf"``: two solves, ``"l1"``: one)."""
    program, v = build_program(weight, bias, cons, delta_lower, delta_upper, margin)
    n = v["dw"].size + v["db"].size
    s = np.r_[v["s_w"].reshape(-1), v["s_b"]]
    results: list[SolveResult] = []
    if objective == "linf":
        program.set_objective(np.ones(1), columns=v["t"])
        results.append(solve(program, solver, time_limit=time_limit))
        if results[-1].status is SolveStatus.OPTIMAL:
            t_star = float(results[-1].primal[v["t"][0]])
            program.add_rows(np.ones(1), upper=t_star * (1 + LEXICOGRAPHIC_SLACK) + LEXICOGRAPHIC_SLACK,
                             columns=v["t"], name="t<=t*")
    if objective == "l1" or results[-1].status is SolveStatus.OPTIMAL:
        program.set_objective(np.full(n, 1.0 / n), columns=s)
        results.append(solve(program, solver, time_limit=time_limit))
    return _solution(results, v, program)


def _solution(results: list[SolveResult], v: dict[str, np.ndarray], program: Program) -> LPSolution:
    last = results[-1]
    seconds = sum(r.seconds for r in results)
    size = {"variables": program.num_variables, "rows": program.num_rows}
    if last.status is not SolveStatus.OPTIMAL or last.primal is None:
        return LPSolution(last.status, None, None, float("nan"), float("nan"), last.solver, last.solver_version,
                          seconds=seconds, note=last.note, **size)
    x = last.primal
    dw, db = x[v["dw"]], x[v["db"]]
    delta = np.r_[dw.reshape(-1), db]
    return LPSolution(last.status, dw, db, float(np.abs(delta).max(initial=0.0)), float(np.abs(delta).mean()),
                      last.solver, last.solver_version, seconds=seconds, note=last.note, **size)
