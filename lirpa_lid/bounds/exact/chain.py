"""The chain an exact encoding reads: the model's native operator chain, the float64 box of every layer
parameter, which nodes are fixed, and bounds of every node from the native backend (the big-M constants).

Node ``i`` is the input of operator ``i`` (node 0 is the network input, the last node its output), as in
the native backend. A node is *fixed* when the input is a point (no input box) and no operator before it
has a parameter that moves (a boxed parameter with some element of positive width): its value is then
one float64 vector per item, computed by the model's own layers.

Intermediate bounds are the native backend's (``NativeBoundedNetwork.node_bounds``: IBP, with CROWN on the inputs of
activations for ``CROWN`` / ``alpha-CROWN``; α-CROWN optimises final bounds only, so its intermediate
bounds are CROWN's), over the domain's ``center_radius(float64)`` box, which contains the domain. They
are computed in floating point without directed rounding, so every bound is widened by
``BOUND_SLACK · (1 + |lower| + |upper|)`` before it becomes a variable bound or a big-M constant (float64
propagation errors are of the order of ``eps · Σ|terms|``, far below it for the networks this encodes).
"""
from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from lirpa_lid.bounds.core import BoundMethod, InputBox, check_batch, check_model_finite
from lirpa_lid.bounds.native.activation import ReluOp
from lirpa_lid.bounds.native.affine import AffineOp
from lirpa_lid.bounds.native.base import Op, ParamBox
from lirpa_lid.bounds.native.linear import LinearOp
from lirpa_lid.bounds.native.network import NativeBoundedNetwork
from lirpa_lid.bounds.native.reshape import ReshapeOp
from lirpa_lid.domains.base import WeightDomain
from lirpa_lid.errors import DomainError, ModelError

#: relative widening of every propagated bound (see the module docstring)
BOUND_SLACK = 1e-10
#: operators with an exact encoding
SUPPORTED_OPS = (LinearOp, ReluOp, AffineOp, ReshapeOp)
#: the intermediate bounds each method gives the native backend: CROWN on activation inputs or IBP only
_CROWN_INTERMEDIATE = {BoundMethod.IBP: False, BoundMethod.CROWN_IBP: False, BoundMethod.CROWN: True,
                       BoundMethod.ALPHA_CROWN: True}


@dataclass(frozen=True)
class ParamInterval:
    """One layer parameter in the float64 box ``lower ≤ θ ≤ upper`` (each of the parameter's shape).

    ``boxed``: the parameter belongs to the weight domain (it becomes variables of the program); otherwise
    ``lower`` and ``upper`` are both the model's value.
    """

    name: str
    lower: np.ndarray
    upper: np.ndarray
    boxed: bool

    @property
    def moving(self) -> np.ndarray:
        """Elements of positive width, bool of the parameter's shape (all False unless boxed)."""
        return self.upper > self.lower

    @property
    def moves(self) -> bool:
        """Whether any element has positive width."""
        return bool(self.moving.any())


@dataclass(frozen=True)
class ExactChain:
    """A chain network prepared for exact encodings of a batch of ``B`` items.

    Attributes:
        ops: the native operators (Linear, ReLU, constant element-wise affine maps, reshapes), in order.
        params: per operator, ``role -> ParamInterval`` (``"weight"``, ``"bias"``).
        shapes: per node, its shape without the batch dimension.
        lower, upper: per node, float64 ``[B, n_i]`` (flattened) bounds valid for every θ in the domain
            and every input of the input box; node 0 holds the input box (or the input) itself, the others
            are widened by ``BOUND_SLACK``.
        values: per node, float64 ``[B, n_i]`` values of a fixed node, ``None`` for a node that moves.
    """

    ops: list[Op]
    params: list[dict[str, ParamInterval]]
    shapes: list[tuple[int, ...]]
    lower: list[np.ndarray]
    upper: list[np.ndarray]
    values: list[np.ndarray | None]

    @property
    def batch(self) -> int:
        """Number of items ``B``."""
        return self.lower[0].shape[0]

    @property
    def num_outputs(self) -> int:
        """Size of the network's (flattened) output."""
        return self.lower[-1].shape[1]


def on_cpu(model: nn.Module, x: Tensor, domain: WeightDomain | None,
           input_box: InputBox | None) -> tuple[nn.Module, Tensor, WeightDomain | None, InputBox | None]:
    """Everything on the CPU, where the solvers run: ``model`` itself when it is there already, else a copy
    (the caller's model is never moved); inputs, domain and input box likewise."""
    if any(t.device.type != "cpu" for t in itertools.chain(model.parameters(), model.buffers())):
        model = copy.deepcopy(model).cpu()
    if domain is not None and any(t.device.type != "cpu" for t in getattr(domain, "reference", {}).values()):
        domain = domain.to(device="cpu")
    if input_box is not None and input_box.lower.device.type != "cpu":
        input_box = InputBox(input_box.lower.cpu(), input_box.upper.cpu())
    return model, x.cpu(), domain, input_box


def exact_chain_ops(model: nn.Module, input_shape: tuple[int, ...]) -> list[Op]:
    """The native chain of ``model`` for inputs ``[B, *input_shape]``, ``ModelError`` naming the first
    layer that has no exact encoding."""
    ops = NativeBoundedNetwork(model).chain(tuple(input_shape))
    for op in ops:
        if not isinstance(op, SUPPORTED_OPS):
            kind = type(op).__name__.removesuffix("Op")
            raise ModelError(f"layer {op.name!r} ({kind}) has no exact encoding; exact margins support chains "
                             "of Linear, ReLU, constant element-wise affine maps (normalisation, batch norm "
                             "in eval mode, x ± c, x · c, x / c) and reshapes")
    return ops


def box_bounds(domain: WeightDomain | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``name -> (lower, upper)``: the set the domain denotes, float64 numpy. Needs a box domain (one with
    ``exact_bounds``, e.g. an ``Orthotope``)."""
    if domain is None:
        return {}
    if not callable(getattr(domain, "exact_bounds", None)) or not callable(getattr(domain, "inner_bounds", None)):
        raise DomainError(f"exact margins need a box domain with exact_bounds() and inner_bounds() (an "
                          f"Orthotope); got {type(domain).__name__}")
    return {n: (lo.detach().cpu().numpy(), hi.detach().cpu().numpy()) for n, (lo, hi) in domain.exact_bounds().items()}


def parameter_intervals(ops: list[Op], domain: WeightDomain | None) -> list[dict[str, ParamInterval]]:
    """Per operator, ``role -> ParamInterval`` (float64), ``DomainError`` for a domain parameter that no
    operator has or whose shape differs from the model's."""
    boxes = box_bounds(domain)
    used, out = set(), []
    for op in ops:
        intervals = {}
        for role, name in op.param_names.items():
            value = getattr(op.module, role).detach().to(torch.float64).cpu().numpy()
            if name in boxes:
                lower, upper = boxes[name]
                if lower.shape != value.shape:
                    raise DomainError(f"domain parameter {name!r} has shape {lower.shape}, the model's has "
                                      f"{value.shape}")
                intervals[role] = ParamInterval(name, lower, upper, True)
                used.add(name)
            else:
                intervals[role] = ParamInterval(name, value, value, False)
        out.append(intervals)
    unknown = set(boxes) - used
    if unknown:
        raise DomainError(f"domain parameter(s) {sorted(unknown)} are not weights or biases of a Linear layer of "
                          f"the model; boxable: {[n for op in ops for n in op.param_names.values()]}")
    return out


def prepare_chain(model: nn.Module, x: Tensor, domain: WeightDomain | None, input_box: InputBox | None,
                  method: BoundMethod | str = BoundMethod.CROWN) -> ExactChain:
    """The ``ExactChain`` of ``model`` for inputs ``x`` ``[B, *input_shape]`` (float64 from here on), the box
    ``domain`` (``None``: the model's own weights) and an optional ``input_box``; intermediate bounds by
    ``method``'s intermediate bounds in the native backend (see the module docstring)."""
    method = BoundMethod.parse(method)
    check_batch(x, input_box)
    check_model_finite(model)
    x64 = x.detach().to(torch.float64)
    box64 = None if input_box is None else InputBox(input_box.lower.detach().to(torch.float64),
                                                    input_box.upper.detach().to(torch.float64))
    ops = exact_chain_ops(model, tuple(x.shape[1:]))
    params = parameter_intervals(ops, domain)
    with torch.no_grad():  # the native backend's boxes contain the domain (centre ± radius with ulps of slack)
        nodes = NativeBoundedNetwork(model).node_bounds(x64, domain, box64, _CROWN_INTERMEDIATE[method])
    shapes = [tuple(lo.shape[1:]) for lo, _ in nodes]
    lower, upper = [], []
    for i, (lo, hi) in enumerate(nodes):
        lo, hi = lo.detach().flatten(1).cpu().numpy().astype(np.float64), hi.detach().flatten(1).cpu().numpy().astype(np.float64)
        if i > 0:
            slack = BOUND_SLACK * (1.0 + np.abs(lo) + np.abs(hi))
            lo, hi = lo - slack, hi + slack
        lower.append(lo)
        upper.append(hi)
    values = _fixed_values(ops, params, x64, fixed_input=input_box is None)
    return ExactChain(ops, params, shapes, lower, upper, values)


def _fixed_values(ops: list[Op], params: list[dict[str, ParamInterval]], x: Tensor,
                  fixed_input: bool) -> list[np.ndarray | None]:
    """Float64 values of the fixed nodes (``None`` from the first node that moves on)."""
    values: list[np.ndarray | None] = [None] * (len(ops) + 1)
    if not fixed_input:
        return values
    h = x
    values[0] = h.flatten(1).numpy()
    with torch.no_grad():
        for i, op in enumerate(ops):
            if any(p.moves for p in params[i].values()):
                break
            h = op.forward(h, {role: ParamBox(torch.from_numpy(p.lower)) for role, p in params[i].items()})
            values[i + 1] = h.flatten(1).numpy().astype(np.float64)
    return values
