"""A box over one dense layer with a fixed input is exactly a box of that layer's outputs.

For ``z = W h + b`` with ``h`` fixed and ``W ∈ [W_lo, W_hi]``, ``b ∈ [b_lo, b_hi]`` (a weight box), output
``z_i`` depends on row ``i`` of ``W`` and ``b_i`` only, so the set of outputs is the product of the
intervals

    z_i ∈ [ Σ_j min(W_lo,ij h_j, W_hi,ij h_j) + b_lo,i ,  Σ_j max(W_lo,ij h_j, W_hi,ij h_j) + b_hi,i ]

and every margin question over the weight box becomes the same question over an *input* box of the
network's tail — which α,β-CROWN (or ``exact_margins`` with no weight domain) decides completely.

    problem = reduce_to_tail(model, x, box)          # box moves one Linear layer only
    problem.tail(problem.input_box.lower)            # the network after that layer
    exact_margins(problem.tail, problem.input_box.center(), None, C, input_box=problem.input_box)

Rounding: ``h`` is computed by the model's own layers in the model's dtype (what the network computes);
the intervals are computed in float64 from the domain's exact float64 bounds, widened by the rigorous
error bound of a float64 dot product, ``γ_n·Σ_j |terms|`` with ``γ_n = n·u/(1 − n·u)``, ``u = 2⁻⁵³``
(any summation order), then converted to the model's dtype rounding outwards (``round_directed``).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from lirpa_lid.bounds.core import InputBox, check_batch, check_model_finite
from lirpa_lid.bounds.exact.chain import ParamInterval, on_cpu, parameter_intervals
from lirpa_lid.bounds.native.activation import ReluOp, SigmoidOp, TanhOp
from lirpa_lid.bounds.native.affine import AffineOp
from lirpa_lid.bounds.native.base import Op, ParamBox
from lirpa_lid.bounds.native.conv import ConvOp
from lirpa_lid.bounds.native.linear import LinearOp
from lirpa_lid.bounds.native.network import NativeBoundedNetwork
from lirpa_lid.bounds.native.reshape import ReshapeOp
from lirpa_lid.domains.base import WeightDomain
from lirpa_lid.errors import DomainError, ModelError
from lirpa_lid.rounding import round_directed

_UNIT_ROUNDOFF = 2.0 ** -53
_ACTIVATIONS = {ReluOp: nn.ReLU, TanhOp: nn.Tanh, SigmoidOp: nn.Sigmoid}


@dataclass(frozen=True)
class TailProblem:
    """The input-box problem a one-layer weight box reduces to.

    Attributes:
        layer: name of the boxed Linear layer (as the model names it).
        tail: the layers after it, an ``nn.Sequential`` in the model's dtype (empty for the last layer),
            with the domain's values for any zero-width boxed parameter.
        input_box: ``[B, out_features]``: the exact range of the layer's outputs for each item, rounded
            outwards; every θ of the domain gives ``f(x; θ) = tail(z)`` for some ``z`` in it, and every
            ``z`` in it (up to the rounding) is the layer's output for some θ.
    """

    layer: str
    tail: nn.Sequential
    input_box: InputBox


class ConstantAffine(nn.Module):
    """``x · scale + shift`` or ``x / divisor + shift`` with constant tensors: the model's own element-wise
    arithmetic (normalisation, batch norm in eval mode, ``x ± c``...) as one module of the tail."""

    def __init__(self, scale: Tensor, shift: Tensor, divisor: Tensor | None = None):
        super().__init__()
        self.register_buffer("scale", scale.detach().clone())
        self.register_buffer("shift", shift.detach().clone())
        self.register_buffer("divisor", None if divisor is None else divisor.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        """``x / divisor + shift`` when there is a divisor, else ``x · scale + shift``."""
        scaled = x / self.divisor if self.divisor is not None else x * self.scale
        return scaled + self.shift


def reduce_to_tail(model: nn.Module, x: Tensor, domain: WeightDomain) -> TailProblem:
    """The tail of ``model`` after the one Linear layer that ``domain`` moves, and the exact box of that
    layer's outputs for the fixed inputs ``x`` ``[B, *input_shape]`` (module docstring).

    ``DomainError`` unless the domain moves parameters (weight and/or bias) of exactly one Linear layer;
    parameters of other layers may be boxed with zero width. The result is on the CPU.
    """
    check_batch(x, None)
    check_model_finite(model)
    model, x, domain, _ = on_cpu(model, x, domain, None)
    ops = NativeBoundedNetwork(model).chain(tuple(x.shape[1:]))
    params = parameter_intervals(ops, domain)
    moving = [i for i, layer in enumerate(params) if any(p.moves for p in layer.values())]
    if len(moving) != 1 or not isinstance(ops[moving[0]], LinearOp):
        names = [ops[i].name for i in moving]
        raise DomainError(f"the reduction to a tail needs a domain that moves one Linear layer; it moves "
                          f"{names or 'no layer'}")
    k = moving[0]
    dtype = next(model.parameters()).dtype
    with torch.no_grad():
        h = x.detach().to(dtype)
        for op, layer in zip(ops[:k], params[:k]):
            h = op.forward(h, {role: ParamBox(torch.from_numpy(p.lower).to(dtype)) for role, p in layer.items()})
    lower, upper = _output_interval(h.flatten(1).to(torch.float64).numpy(), params[k])
    box = InputBox(round_directed(torch.from_numpy(lower), dtype, -1), round_directed(torch.from_numpy(upper), dtype, +1))
    tail = nn.Sequential(*[m for op, layer in zip(ops[k + 1:], params[k + 1:]) for m in _modules(op, layer, dtype)])
    return TailProblem(ops[k].name, tail.to(dtype).eval(), box)


def _output_interval(h: np.ndarray, layer: dict[str, ParamInterval]) -> tuple[np.ndarray, np.ndarray]:
    """Float64 ``[B, O]`` bounds of ``W h + b`` over the layer's box, ``h`` ``[B, I]``, widened by the
    dot-product error bound and one more ulp."""
    w = layer["weight"]
    positive, negative = np.maximum(h, 0.0), np.minimum(h, 0.0)
    lower = positive @ w.lower.T + negative @ w.upper.T
    upper = positive @ w.upper.T + negative @ w.lower.T
    magnitude = np.abs(h) @ np.maximum(np.abs(w.lower), np.abs(w.upper)).T
    if "bias" in layer:
        b = layer["bias"]
        lower, upper = lower + b.lower, upper + b.upper
        magnitude = magnitude + np.maximum(np.abs(b.lower), np.abs(b.upper))
    n = 2 * h.shape[1] + 2  # two dot products and a bias per output
    gamma = n * _UNIT_ROUNDOFF / (1.0 - n * _UNIT_ROUNDOFF)
    error = gamma * magnitude * (1.0 + 2 * gamma)  # the magnitude itself is rounded
    return np.nextafter(lower - error, -np.inf), np.nextafter(upper + error, np.inf)


def _modules(op: Op, layer: dict[str, ParamInterval], dtype: torch.dtype) -> list[nn.Module]:
    """Torch modules computing ``op`` (boxed zero-width parameters at the domain's values)."""
    if isinstance(op, (LinearOp, ConvOp)):
        module = copy.deepcopy(op.module)
        with torch.no_grad():
            for role, p in layer.items():
                if p.boxed:
                    getattr(module, role).copy_(torch.from_numpy(p.lower).to(dtype))
        return [module]
    if type(op) in _ACTIVATIONS:
        return [_ACTIVATIONS[type(op)]()]
    if isinstance(op, ReshapeOp):
        return ([nn.Flatten()] if len(op.in_shape) > 1 else []) + \
               ([nn.Unflatten(1, op.out_shape)] if len(op.out_shape) > 1 else [])
    if isinstance(op, AffineOp):
        return [ConstantAffine(op.scale, op.shift, op.divisor)]
    raise ModelError(f"layer {op.name!r} ({type(op).__name__.removesuffix('Op')}) cannot be part of a tail")
