"""The parametric linear relaxation of an edit of the last Linear layer, in its simplest exact form.

The network is a chain ``f(x) = W' h(x) + b'`` where ``h`` is the output of every layer before the last
Linear one (the *prefix*, left unchanged) and ``W'`` ``[m, n_h]``, ``b'`` ``[m]`` are the edited parameters.
Over a sub-box ``B`` of a property's input box the prefix's native bounds (CROWN on activation inputs,
float64, widened by ``bounds.exact.chain.BOUND_SLACK``) give a box ``hl ≤ h(x) ≤ hu`` valid for every
``x ∈ B``. A property row ``c·f(x) − d > 0`` then holds on ``B`` if

    min_{hl ≤ h ≤ hu}  a·h + c·b' − d  ≥  margin,     a = cᵀ W'  (linear in the edited weights)

and the minimum of a linear function over a box is ``Σ_j min(a_j hl_j, a_j hu_j)``. With ``a`` an LP
variable this is exactly the hypograph of a concave function (``lp.py``): variables ``L_j`` with

    L_j ≤ a_j hl_j,   L_j ≤ a_j hu_j,   Σ_j L_j + c·b' − d ≥ margin,

so the edit's constraint over the sub-box is a set of linear rows (exact for the box of ``h``; the only
loss is the box itself). The box shrinks as the sub-box does, so splitting the property's input box
(:func:`bisect`) tightens the relaxation; every sub-box gets its own rows.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lirpa_lid.bounds.core import BoundMethod, InputBox
from lirpa_lid.bounds.exact import prepare_chain
from lirpa_lid.bounds.exact.chain import exact_chain_ops
from lirpa_lid.bounds.native.linear import LinearOp
from lirpa_lid.errors import ModelError


@dataclass(frozen=True)
class LastLayer:
    """The Linear layer an edit changes: operator ``index`` of the model's native chain.

    ``weight`` ``[m, n_h]`` and ``bias`` ``[m]`` are its float64 values (zeros when it has no bias);
    ``weight_name`` / ``bias_name`` the model's parameter names (``bias_name`` is ``None`` without a bias).
    """

    index: int
    weight_name: str
    bias_name: str | None
    weight: np.ndarray
    bias: np.ndarray

    @property
    def n_hidden(self) -> int:
        """``n_h``, the width of the layer's input ``h``."""
        return self.weight.shape[1]

    @property
    def n_outputs(self) -> int:
        """``m``, the network's output size."""
        return self.weight.shape[0]


def last_linear_layer(model: nn.Module, input_shape: tuple[int, ...]) -> LastLayer:
    """The model's last Linear layer, ``ModelError`` unless it is the last operator of a chain of Linear,
    ReLU, constant element-wise affine and reshape layers."""
    ops = exact_chain_ops(model, tuple(input_shape))
    if not ops or not isinstance(ops[-1], LinearOp):
        last = type(ops[-1]).__name__.removesuffix("Op") if ops else "nothing"
        raise ModelError(f"editing changes the last layer, which must be Linear; this model ends with {last} "
                         f"({ops[-1].name if ops else ''})")
    op = ops[-1]
    weight = op.module.weight.detach().to(torch.float64).cpu().numpy()
    bias_name = op.param_names.get("bias")
    bias = (op.module.bias.detach().to(torch.float64).cpu().numpy() if bias_name is not None
            else np.zeros(weight.shape[0]))
    return LastLayer(len(ops) - 1, op.param_names["weight"], bias_name, weight, bias)


def hidden_boxes(model: nn.Module, layer: LastLayer, lower: np.ndarray, upper: np.ndarray,
                 input_shape: tuple[int, ...], method: BoundMethod | str = BoundMethod.CROWN
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Bounds ``(hl, hu)``, float64 ``[S, n_h]``, of the last Linear layer's input over each input sub-box
    ``lower[s] ≤ x ≤ upper[s]`` (``[S, n_in]``), valid for every input of the sub-box (see the module
    docstring). A degenerate sub-box (a point) gives its exact value up to the bound slack."""
    lo = torch.from_numpy(np.ascontiguousarray(lower)).reshape(-1, *input_shape)
    hi = torch.from_numpy(np.ascontiguousarray(upper)).reshape(-1, *input_shape)
    chain = prepare_chain(model, (lo + hi) / 2, None, InputBox(lo, hi), method)
    return chain.lower[layer.index], chain.upper[layer.index]


def bisect(lower: np.ndarray, upper: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Halve each sub-box ``[S, n_in]`` along its widest dimension relative to ``scale`` ``[S, n_in]``
    (the width of the property box it came from) → ``[2S, n_in]``; the halves cover the sub-box exactly
    (they share the face at the float64 midpoint). A point stays a point (both halves equal it)."""
    rel = np.where(scale > 0, (upper - lower) / np.where(scale > 0, scale, 1.0), 0.0)
    dim = rel.argmax(axis=1)
    rows = np.arange(lower.shape[0])
    mid = lower[rows, dim] + (upper[rows, dim] - lower[rows, dim]) / 2
    left_up, right_lo = upper.copy(), lower.copy()
    left_up[rows, dim], right_lo[rows, dim] = mid, mid
    return np.concatenate([lower, right_lo]), np.concatenate([left_up, upper])
