"""Turn a torch model into a chain of native bound operators (via ``torch.fx``).

Supported: ``nn.Linear``, ``nn.Conv2d``, ReLU / Tanh / Sigmoid (modules, functions or methods),
``nn.Flatten`` / ``nn.Unflatten`` / ``flatten`` / ``view`` / ``reshape`` keeping the batch dimension, ``nn.Identity``,
``nn.Dropout`` (identity when bounding), ``nn.BatchNorm1d/2d`` in eval mode and
``lirpa_lid.models.layers.ElementwiseAffine`` (constant affine maps), and ``+ − × ÷`` by constants.
The graph must be a chain (each layer feeds only the next); anything else is reported by name.
"""
from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from lirpa_lid.bounds.native.activation import ReluOp, SigmoidOp, TanhOp
from lirpa_lid.bounds.native.affine import AffineOp
from lirpa_lid.bounds.native.base import Op
from lirpa_lid.bounds.native.conv import ConvOp
from lirpa_lid.bounds.native.linear import LinearOp
from lirpa_lid.bounds.native.reshape import ReshapeOp
from lirpa_lid.errors import ModelError
from lirpa_lid.models.layers import ElementwiseAffine

_ACTIVATIONS = {nn.ReLU: ReluOp, nn.Tanh: TanhOp, nn.Sigmoid: SigmoidOp}
_ACT_FUNCTIONS = {F.relu: ReluOp, torch.relu: ReluOp, torch.tanh: TanhOp, F.tanh: TanhOp,
                  torch.sigmoid: SigmoidOp, F.sigmoid: SigmoidOp}
_ACT_METHODS = {"relu": ReluOp, "tanh": TanhOp, "sigmoid": SigmoidOp}
_ARITH = {operator.add: "add", torch.add: "add", "add": "add",
          operator.sub: "sub", torch.sub: "sub", "sub": "sub",
          operator.mul: "mul", torch.mul: "mul", "mul": "mul",
          operator.truediv: "div", torch.div: "div", "div": "div"}
_RESHAPES = {"flatten", "view", "reshape"}


def _trace(model: nn.Module) -> fx.GraphModule:
    if isinstance(model, fx.GraphModule):
        return model
    try:
        return fx.symbolic_trace(model)
    except Exception as exc:  # fx raises many kinds of errors for data-dependent control flow
        raise ModelError(f"the native backend could not trace the model with torch.fx ({exc}); "
                         "use backend='auto_lirpa' for this model") from None


def _shape(node: fx.Node) -> tuple[int, ...]:
    return tuple(node.meta["tensor_meta"].shape[1:])


def _param_names(target: str, module: nn.Module) -> dict[str, str]:
    prefix = f"{target}." if target else ""
    names = {"weight": f"{prefix}weight"}
    if getattr(module, "bias", None) is not None:
        names["bias"] = f"{prefix}bias"
    return names


def _batchnorm_affine(name: str, bn: nn.modules.batchnorm._BatchNorm, ndim: int) -> AffineOp:
    if bn.training or bn.running_mean is None:
        raise ModelError(f"layer {name!r}: batch norm must be in eval mode with running statistics")
    scale = (bn.weight if bn.affine else 1.0) / torch.sqrt(bn.running_var + bn.eps)
    shift = (bn.bias if bn.affine else 0.0) - bn.running_mean * scale
    view = (-1,) + (1,) * (ndim - 1)
    return AffineOp(name, scale.detach().view(view), shift.detach().view(view))


def build_chain(model: nn.Module, input_shape: tuple[int, ...]) -> list[Op]:
    """Operators of ``model`` in order, for inputs of shape ``[B, *input_shape]``."""
    example = torch.zeros(1, *input_shape, dtype=next((p.dtype for p in model.parameters()),
                                                      torch.get_default_dtype()))
    if isinstance(model, (nn.Linear, nn.Conv2d)):  # fx would trace their functional forward instead
        try:
            with torch.no_grad():
                model(example)
        except Exception as exc:
            raise ModelError(f"the model does not accept inputs of shape [B, {', '.join(map(str, input_shape))}]: "
                             f"{exc}") from None
        op_cls = LinearOp if isinstance(model, nn.Linear) else ConvOp
        return [op_cls(type(model).__name__, model, _param_names("", model))]
    gm = _trace(model)
    try:
        ShapeProp(gm).propagate(example)
    except Exception as exc:
        raise ModelError(f"the model does not accept inputs of shape [B, {', '.join(map(str, input_shape))}]: "
                         f"{exc}") from None
    modules = dict(gm.named_modules())
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise ModelError(f"the native backend needs a model with exactly one input, got {len(placeholders)}")
    current = placeholders[0]
    constants: dict[fx.Node, Tensor] = {}
    ops: list[Op] = []

    def const_value(arg) -> Tensor | None:
        """A constant operand in the model's dtype (a Python number is what torch applies to a tensor
        of that dtype)."""
        if isinstance(arg, (int, float)):
            return torch.tensor(float(arg), dtype=example.dtype)
        if isinstance(arg, fx.Node) and isinstance(constants.get(arg), Tensor):
            return constants[arg].to(example.dtype)
        return None

    for node in gm.graph.nodes:
        if node.op in ("placeholder", "output"):
            if node.op == "output" and node.args[0] is not current:
                raise ModelError("the native backend needs a model whose output is its last layer "
                                 "(a single tensor)")
            continue
        if node.op == "get_attr":
            value = gm
            for part in node.target.split("."):
                value = getattr(value, part)
            constants[node] = value.detach() if isinstance(value, Tensor) else value
            continue
        inputs = [a for a in node.all_input_nodes if a not in constants]
        if node.op == "call_method" and node.target == "size":
            continue
        if current not in inputs or any(a is not current and not (a.op == "call_method" and a.target == "size")
                                        for a in inputs):
            raise ModelError(f"node {node.name!r} ({node.op} {node.target}) does not continue a chain; the "
                             "native backend supports sequential networks only — use backend='auto_lirpa'")
        op = _make_op(node, modules, current, const_value)
        if op is not None:
            ops.append(op)
        current = node
    return ops


def _arith_op(name: str, kind: str, c: Tensor, input_first: bool) -> AffineOp:
    """``x ∘ c`` (``input_first``) or ``c ∘ x`` as an :class:`AffineOp` that repeats the model's own
    floating-point operation (``x − c`` as ``x·1 + (−c)``, ``c − x`` as ``x·(−1) + c``: both exact)."""
    one, zero = torch.ones_like(c), torch.zeros_like(c)
    if kind == "div":
        if bool((c == 0).any()):
            raise ModelError(f"node {name!r}: division by a constant that contains zero")
        return AffineOp(name, one, zero, divisor=c)
    if kind == "add":
        return AffineOp(name, one, c)
    if kind == "mul":
        return AffineOp(name, c, zero)
    return AffineOp(name, one, -c) if input_first else AffineOp(name, -one, c)


def _make_op(node: fx.Node, modules: dict[str, nn.Module], current: fx.Node, const_value) -> Op | None:
    name = node.name
    if node.op == "call_module":
        mod = modules[node.target]
        if isinstance(mod, nn.Linear):
            return LinearOp(node.target, mod, _param_names(node.target, mod))
        if isinstance(mod, nn.Conv2d):
            return ConvOp(node.target, mod, _param_names(node.target, mod))
        for cls, op_cls in _ACTIVATIONS.items():
            if isinstance(mod, cls):
                return op_cls(node.target)
        if isinstance(mod, (nn.Identity, nn.Dropout)):
            return None
        if isinstance(mod, (nn.Flatten, nn.Unflatten)):
            return ReshapeOp(node.target, _shape(current), _shape(node))
        if isinstance(mod, ElementwiseAffine):
            return AffineOp(node.target, mod.scale.detach(), mod.shift.detach())
        if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            return _batchnorm_affine(node.target, mod, len(_shape(current)))
        raise ModelError(f"layer {node.target!r} ({type(mod).__name__}) is not supported by the native "
                         "backend; use backend='auto_lirpa'")
    target = node.target
    if node.op == "call_function" and target in _ACT_FUNCTIONS:
        return _ACT_FUNCTIONS[target](name)
    if node.op == "call_method" and target in _ACT_METHODS:
        return _ACT_METHODS[target](name)
    if (node.op == "call_function" and target is torch.flatten) or (node.op == "call_method" and target in _RESHAPES):
        if _shape(node) == _shape(current) and node.meta["tensor_meta"].shape[0] == 1:
            return None
        return ReshapeOp(name, _shape(current), _shape(node))
    kind = _ARITH.get(target)
    if kind is not None and len(node.args) == 2 and not node.kwargs:  # alpha=, rounding_mode=: not affine maps
        a, b = node.args
        if a is current and const_value(b) is not None:
            return _arith_op(name, kind, const_value(b), input_first=True)
        if b is current and const_value(a) is not None and kind in ("add", "sub", "mul"):
            return _arith_op(name, kind, const_value(a), input_first=False)
        raise ModelError(f"node {name!r}: {kind} is only supported with a constant operand")
    raise ModelError(f"node {name!r} ({node.op} {getattr(target, '__name__', target)}) is not supported by "
                     "the native backend; use backend='auto_lirpa'")
