"""Brute-force oracles for exact margins on tiny networks, independent of ``lirpa_lid.bounds.exact``:
enumerate the ReLU activation patterns and solve one LP per pattern with scipy's ``linprog`` (over the
boxed weights themselves, or over the input box), or enumerate the vertices of a weight box."""
from __future__ import annotations

import itertools

import numpy as np
import torch
from scipy.optimize import linprog
from torch import Tensor, nn
from torch.func import functional_call

from lirpa_lid import ElementwiseAffine, Orthotope


def _moving(bounds: dict, name: str) -> bool:
    return name in bounds and bool((bounds[name][1] > bounds[name][0]).any())


def pattern_minimum(model: nn.Sequential, x: Tensor, c: Tensor, box: Orthotope | None = None,
                    input_box: tuple[Tensor, Tensor] | None = None) -> float:
    """``min c·f`` by enumerating the activation patterns of every ReLU whose input varies (one LP each).

    ``model``: ``nn.Sequential`` of Linear / ReLU / ElementwiseAffine / Flatten. Either ``box`` moves the
    weight (and bias) of one Linear layer whose input is fixed, and later layers at most their biases, with
    ``x`` ``[*input_shape]`` fixed; or ``input_box = (lower, upper)`` with no weight box. LP variables: the
    moving parameters, or the inputs.
    """
    bounds = {} if box is None else {n: (lo.numpy(), hi.numpy()) for n, (lo, hi) in box.exact_bounds().items()}
    modules = {id(m): n for n, m in model.named_modules()}
    layers = [m for m in model if not isinstance(m, (nn.Flatten, nn.Identity))]
    x = x.reshape(-1).double().numpy()
    lows, highs, index = [], [], {}

    def allocate(key: str, lo: np.ndarray, hi: np.ndarray) -> None:
        index[key] = np.arange(len(lows), len(lows) + lo.size).reshape(lo.shape)
        lows.extend(lo.reshape(-1)), highs.extend(hi.reshape(-1))

    if input_box is not None:
        allocate("input", input_box[0].reshape(-1).double().numpy(), input_box[1].reshape(-1).double().numpy())
    for layer in layers:
        if isinstance(layer, nn.Linear):
            for role in ("weight", "bias"):
                name = f"{modules[id(layer)]}.{role}"
                if _moving(bounds, name):
                    allocate(name, *bounds[name])
    nv = len(lows)

    def value(layer: nn.Linear, role: str) -> np.ndarray:
        name = f"{modules[id(layer)]}.{role}"
        return bounds[name][0] if name in bounds else getattr(layer, role).detach().double().numpy()

    def run(pattern: list[int] | None) -> tuple[np.ndarray, float, list, list, int]:
        """Affine form of the output under ``pattern`` (None: count the bits it needs)."""
        if input_box is not None:
            A, a0 = np.zeros((x.size, nv)), np.zeros(x.size)
            A[np.arange(x.size), index["input"]] = 1.0
        else:
            A, a0 = np.zeros((x.size, nv)), x.copy()
        rows, rhs, bits = [], [], 0
        for layer in layers:
            if isinstance(layer, nn.Linear):
                name = modules[id(layer)]
                if f"{name}.weight" in index:
                    assert not A.any(), "the moving layer's input must be fixed"
                    W = index[f"{name}.weight"]
                    A = np.zeros((W.shape[0], nv))
                    for i in range(W.shape[0]):
                        A[i, W[i]] = a0
                    a0 = np.zeros(W.shape[0])
                else:
                    W = value(layer, "weight")
                    A, a0 = W @ A, W @ a0
                if f"{name}.bias" in index:
                    A[np.arange(A.shape[0]), index[f"{name}.bias"]] += 1.0
                else:
                    a0 = a0 + value(layer, "bias")
            elif isinstance(layer, nn.ReLU):
                varies = A.any(1)
                s = (a0 > 0).astype(float)
                for i in np.flatnonzero(varies):
                    on = 1 if pattern is None else pattern[bits]
                    bits += 1
                    s[i] = on
                    rows.append(-A[i] if on else A[i]), rhs.append(a0[i] if on else -a0[i])
                A, a0 = s[:, None] * A, np.where(varies, s * a0, np.maximum(a0, 0.0))
            elif isinstance(layer, ElementwiseAffine):
                scale = np.broadcast_to(layer.scale.double().numpy(), a0.shape)
                shift = np.broadcast_to(layer.shift.double().numpy(), a0.shape)
                A, a0 = scale[:, None] * A, scale * a0 + shift
            else:
                raise TypeError(layer)
        cc = c.double().numpy()
        return cc @ A, float(cc @ a0), rows, rhs, bits

    *_, bits = run(None)
    best = np.inf
    for pattern in itertools.product([0, 1], repeat=bits):
        objective, const, rows, rhs, _ = run(list(pattern))
        res = linprog(objective, A_ub=np.array(rows) if rows else None, b_ub=np.array(rhs) if rows else None,
                      bounds=list(zip(lows, highs)), method="highs")
        if res.status == 0:
            best = min(best, res.fun + const)
    return best


def vertex_minimum(model: nn.Module, x: Tensor, c: Tensor, box: Orthotope) -> float:
    """``min c·f(x; θ)`` over the vertices of ``box`` (the minimum when the margin is linear in every
    moving element: e.g. only the last layer moves), by float64 forward passes."""
    lo = {n: b[0] for n, b in box.exact_bounds().items()}
    hi = {n: b[1] for n, b in box.exact_bounds().items()}
    moving = [(n, i) for n in lo for i in torch.nonzero((hi[n] > lo[n]).reshape(-1)).flatten().tolist()]
    assert len(moving) <= 14, "too many vertices"
    corners = torch.tensor(list(itertools.product([0, 1], repeat=len(moving))), dtype=torch.bool)
    params = {n: lo[n].reshape(1, -1).repeat(len(corners), 1) for n in lo}
    for k, (n, i) in enumerate(moving):
        params[n][:, i] = torch.where(corners[:, k], hi[n].reshape(-1)[i], lo[n].reshape(-1)[i])
    params = {n: t.reshape(len(corners), *lo[n].shape) for n, t in params.items()}
    with torch.no_grad():
        out = torch.func.vmap(lambda p: functional_call(model, p, (x.double().unsqueeze(0),)))(params)
    return float((out.reshape(len(corners), -1) @ c.double()).min())
