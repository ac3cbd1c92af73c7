"""ONNX in and out: VNN-COMP networks as plain ``nn.Sequential`` models with trainable weights.

``load_onnx`` validates a file, upgrades old opsets (VNN-COMP 2022 ACAS Xu files are opset 8, whose
``Flatten`` onnx2torch cannot convert), converts it with onnx2torch and rebuilds the chain node by
node from standard layers: ``nn.Linear`` (Gemm, MatMul [+ Add]), ``nn.Conv2d``, ReLU / Tanh /
Sigmoid, ``nn.Flatten`` / ``nn.Unflatten`` and ``ElementwiseAffine`` (Add / Sub / Mul / Div by a
constant). Why rebuild: onnx2torch keeps MatMul and Add initialisers as buffers and emits its own
``Onnx*`` modules, which neither backend can put a weight box on. onnx2torch's graph is used to fold
constant sub-graphs and as the reference the rebuilt module is checked against before it is returned.

``save_onnx`` exports a module with a dynamic batch axis (input ``"input"``, output ``"output"``),
atomically: a failed export leaves no file behind.

Every loaded module takes ``[B, *input_shape]``; ``input_shape`` is the ONNX input's shape without
its first (batch) dimension.
"""
from __future__ import annotations

import copy
import inspect
import os
import uuid
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper, version_converter
from torch import Tensor, nn

from lirpa_lid.errors import InputError, ModelError
from lirpa_lid.models.layers import ElementwiseAffine

#: older files are upgraded to this opset first, so that the converters see one version of each operator
TARGET_OPSET = 13
_DEFAULT_DOMAINS = ("", "ai.onnx")
_FLOAT_TYPES = {onnx.TensorProto.FLOAT: torch.float32, onnx.TensorProto.DOUBLE: torch.float64}


@dataclass(frozen=True)
class OnnxNetwork:
    """A network read from an ONNX file.

    ``module`` maps ``[B, *input_shape]`` to ``[B, output_size]`` (or ``[B, *out_shape]`` with
    ``output_size`` elements); its weights are ``nn.Parameter``s that weight domains can cover.
    """

    module: nn.Sequential
    input_shape: tuple[int, ...]
    output_size: int


# ---------------------------------------------------------------------------------------- loading
def load_onnx(path: str | os.PathLike) -> OnnxNetwork:
    """Read a chain network from an ONNX file (see the module docstring for what is supported).

    Raises ``ModelError`` naming the file and the problem for unreadable or malformed files,
    unsupported operators (naming the operator and node) and graphs that are not a chain.
    """
    path = Path(path)
    try:
        model = _read_model(path)
        input_name, input_shape, dtype = _graph_input(model.graph)
        is_constant = _check_chain(model.graph, input_name)
        reference = _onnx2torch(model)
        layers = _convert_chain(model.graph, is_constant, input_shape, dtype, reference)
        module = nn.Sequential(*_merge_constant_maps(layers)).to(dtype).eval()
        out_shape = _check_against(module, reference, input_shape)
    except ModelError as exc:
        raise ModelError(f"{path}: {exc}") from exc.__cause__
    return OnnxNetwork(module, input_shape, int(np.prod(out_shape, dtype=np.int64)))


def _read_model(path: Path) -> onnx.ModelProto:
    """Load, validate and (if older than ``TARGET_OPSET``) upgrade an ONNX model."""
    if not path.is_file():
        raise ModelError("file not found")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # protobuf decode errors, checker.ValidationError, OSError
        raise ModelError(f"not a valid ONNX model ({type(exc).__name__}: {_first_line(exc)})") from exc
    opset = next((o.version for o in model.opset_import if o.domain in _DEFAULT_DOMAINS), None)
    if opset is None:
        raise ModelError("the model imports no default-domain (ai.onnx) opset")
    if opset < TARGET_OPSET:
        try:
            model = version_converter.convert_version(model, TARGET_OPSET)
            onnx.checker.check_model(model)
        except Exception as exc:
            raise ModelError(f"could not upgrade opset {opset} to {TARGET_OPSET} "
                             f"({type(exc).__name__}: {_first_line(exc)})") from exc
    return model


def _graph_input(graph: onnx.GraphProto) -> tuple[str, tuple[int, ...], torch.dtype]:
    """Name, per-example shape and dtype of the single data input (initialisers are not inputs)."""
    constants = {init.name for init in graph.initializer}
    inputs = [value for value in graph.input if value.name not in constants]
    if len(inputs) != 1:
        raise ModelError(f"the graph has {len(inputs)} data inputs {[v.name for v in inputs]}; "
                         "exactly one is supported")
    if len(graph.output) != 1:
        raise ModelError(f"the graph has {len(graph.output)} outputs {[v.name for v in graph.output]}; "
                         "exactly one is supported")
    value = inputs[0]
    tensor_type = value.type.tensor_type
    if tensor_type.elem_type not in _FLOAT_TYPES:
        raise ModelError(f"input {value.name!r} has element type "
                         f"{onnx.TensorProto.DataType.Name(tensor_type.elem_type)}; FLOAT or DOUBLE needed")
    if not tensor_type.HasField("shape") or len(tensor_type.shape.dim) < 2:
        raise ModelError(f"input {value.name!r} needs a known shape [batch, ...] with at least two dimensions")
    batch, *dims = tensor_type.shape.dim
    if batch.HasField("dim_value") and batch.dim_value != 1:
        raise ModelError(f"input {value.name!r} has a fixed first dimension {batch.dim_value}; the first "
                         "dimension must be the batch (size 1 or symbolic)")
    if not all(d.HasField("dim_value") and d.dim_value > 0 for d in dims):
        raise ModelError(f"input {value.name!r}: all dimensions after the batch must be fixed sizes")
    return value.name, tuple(int(d.dim_value) for d in dims), _FLOAT_TYPES[tensor_type.elem_type]


def _onnx2torch(model: onnx.ModelProto) -> torch.fx.GraphModule:
    from onnx2torch import convert  # imported lazily: it registers several hundred converters

    try:
        return convert(model, attach_onnx_mapping=True)
    except Exception as exc:
        raise ModelError(f"onnx2torch cannot convert the model ({type(exc).__name__}: "
                         f"{_first_line(exc)})") from exc


def _check_against(module: nn.Sequential, reference: torch.fx.GraphModule,
                   input_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Check the rebuilt module against onnx2torch's graph (float64, random input); output shape."""
    x = torch.randn(1, *input_shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        try:
            expected = reference.double()(x)
        except Exception as exc:
            raise ModelError(f"onnx2torch's conversion cannot run ({type(exc).__name__}: "
                             f"{_first_line(exc)})") from exc
        got = copy.deepcopy(module).double()(x)
    scale = max(1.0, float(expected.abs().max())) if expected.numel() else 1.0
    if got.shape != expected.shape or not torch.allclose(got, expected, rtol=1e-6, atol=1e-8 * scale):
        raise ModelError("internal error: the rebuilt network differs from onnx2torch's conversion "
                         f"(shapes {tuple(got.shape)} / {tuple(expected.shape)}); please report this file")
    return tuple(got.shape[1:])


# ------------------------------------------------------------------------------- the chain walk
@dataclass(frozen=True)
class _Node:
    """One ONNX node on the chain, as a converter sees it.

    ``operands[i]`` is the constant value of input ``i`` (None for the data input and for missing
    optional inputs); ``in_shape`` is the data input's shape without the batch dimension.
    """

    proto: onnx.NodeProto
    index: int
    operands: tuple[Tensor | None, ...]
    data_slot: int
    in_shape: tuple[int, ...]

    @property
    def op_type(self) -> str:
        return self.proto.op_type

    def describe(self) -> str:
        return _label(self.proto, self.index)

    def error(self, reason: str) -> ModelError:
        return ModelError(f"{self.describe()}: {reason}")

    def attr(self, name: str, default=None):
        for attribute in self.proto.attribute:
            if attribute.name == name:
                return onnx.helper.get_attribute_value(attribute)
        return default

    def constant(self, slot: int, what: str) -> Tensor:
        """The constant operand in input ``slot`` (``what`` names it in errors)."""
        value = self.operands[slot] if slot < len(self.operands) else None
        if value is None:
            raise self.error(f"the {what} (input {slot}) must be a constant")
        return value

    def optional_constant(self, slot: int, what: str) -> Tensor | None:
        if slot >= len(self.proto.input) or not self.proto.input[slot]:
            return None
        return self.constant(slot, what)

    def require_data_first(self) -> None:
        if self.data_slot != 0:
            raise self.error(f"the data must be the first input (it is input {self.data_slot})")


Converter = Callable[[_Node], list[nn.Module]]
_CONVERTERS: dict[str, Converter] = {}


def _converts(*op_types: str) -> Callable[[Converter], Converter]:
    def register(fn: Converter) -> Converter:
        for op_type in op_types:
            _CONVERTERS[op_type] = fn
        return fn
    return register


def _check_chain(graph: onnx.GraphProto, input_name: str) -> list[bool]:
    """Which nodes are constant (all inputs constant); the others must form a chain of supported
    operators from the input to the output, else ``ModelError`` naming the node at fault."""
    constant_values = {init.name for init in graph.initializer}
    consumers = Counter(name for proto in graph.node for name in proto.input if name)
    consumers.update(value.name for value in graph.output)
    current = input_name
    is_constant = []
    for index, proto in enumerate(graph.node):
        live = [name for name in proto.input if name and name not in constant_values]
        is_constant.append(not live)
        if not live:
            constant_values.update(name for name in proto.output if name)
            continue
        label = _label(proto, index)
        if live != [current]:
            raise ModelError(f"{label} takes non-constant inputs {live}; only chain networks are supported "
                             f"(each layer takes the previous layer's output {current!r} and constants)")
        if consumers[current] != 1:
            raise ModelError(f"value {current!r} is used {consumers[current]} times; only chain networks are "
                             "supported (each layer feeds only the next)")
        if proto.domain not in _DEFAULT_DOMAINS or proto.op_type not in _CONVERTERS:
            op = proto.op_type if proto.domain in _DEFAULT_DOMAINS else f"{proto.domain}::{proto.op_type}"
            raise ModelError(f"unsupported ONNX operator {op!r} ({label}); supported: "
                             f"{', '.join(sorted(_CONVERTERS))}")
        used = [name for name in proto.output[1:] if name and consumers[name]]
        if used:
            raise ModelError(f"{label}: only its first output may be used, but {used} are used too")
        current = proto.output[0]
    if graph.output[0].name != current:
        raise ModelError(f"the graph output {graph.output[0].name!r} is not the end of the chain "
                         f"({current!r})")
    return is_constant


def _convert_chain(graph: onnx.GraphProto, is_constant: list[bool], input_shape: tuple[int, ...],
                   dtype: torch.dtype, reference: torch.fx.GraphModule) -> list[nn.Module]:
    """Layers for the chain's nodes (checked by ``_check_chain``); constant nodes are folded."""
    constants = {init.name: _tensor(init) for init in graph.initializer}
    modules = {out: m for _, m in reference.named_children() if hasattr(m, "onnx_mapping")
               for out in m.onnx_mapping.outputs}
    example = torch.zeros(1, *input_shape, dtype=dtype)  # tracks the data's shape through the new layers
    layers: list[nn.Module] = []
    for index, proto in enumerate(graph.node):
        if is_constant[index]:
            constants.update(_fold(proto, index, modules, constants))
            continue
        slot = next(i for i, name in enumerate(proto.input) if name and name not in constants)
        node = _Node(proto, index, tuple(constants.get(name) if name else None for name in proto.input),
                     slot, tuple(example.shape[1:]))
        new = _CONVERTERS[proto.op_type](node)
        with torch.no_grad():
            for layer in new:  # a cast copy: constants are kept in float64 until the final .to(dtype)
                example = copy.deepcopy(layer).to(example.dtype)(example)
        layers.extend(new)
    return layers


def _fold(proto: onnx.NodeProto, index: int, modules: dict[str, nn.Module],
          constants: dict[str, Tensor]) -> dict[str, Tensor]:
    """Evaluate a node whose inputs are all constants with onnx2torch's module for it."""
    label = _label(proto, index)
    module = modules.get(proto.output[0])
    if module is None:
        raise ModelError(f"{label}: onnx2torch produced no module for this constant node")
    names = list(module.onnx_mapping.inputs)
    while names and not names[-1]:
        names.pop()
    if not all(names):
        raise ModelError(f"{label}: cannot fold a constant node with a missing optional input")
    try:
        with torch.no_grad():
            result = module(*(constants[name] for name in names))
    except Exception as exc:
        raise ModelError(f"{label}: cannot evaluate this constant node ({type(exc).__name__}: "
                         f"{_first_line(exc)})") from exc
    values = list(result) if isinstance(result, (tuple, list)) else [result]
    return {name: value for name, value in zip(module.onnx_mapping.outputs, values) if name}


def _tensor(init: onnx.TensorProto) -> Tensor:
    try:
        return torch.from_numpy(np.array(numpy_helper.to_array(init)))
    except Exception as exc:
        raise ModelError(f"initialiser {init.name!r} cannot be read as a tensor "
                         f"({type(exc).__name__}: {_first_line(exc)})") from exc


# ------------------------------------------------------------------------------- converters
@_converts("Relu", "Tanh", "Sigmoid")
def _activation(node: _Node) -> list[nn.Module]:
    return [{"Relu": nn.ReLU, "Tanh": nn.Tanh, "Sigmoid": nn.Sigmoid}[node.op_type]()]


@_converts("Identity", "Dropout")
def _identity(node: _Node) -> list[nn.Module]:
    """Identity, and Dropout in inference mode (an identity)."""
    node.require_data_first()
    mode = node.optional_constant(2, "training_mode") if node.op_type == "Dropout" else None
    if mode is not None and bool(mode.reshape(-1)[0]):
        raise node.error("Dropout with training_mode=true is random, not a fixed network")
    return []


@_converts("Gemm")
def _gemm(node: _Node) -> list[nn.Module]:
    """``Y = alpha·A'·B' + beta·C`` with the data as ``A`` (``transA = 0``) → ``nn.Linear``."""
    node.require_data_first()
    if node.attr("transA", 0):
        raise node.error("transA = 1 on the data input would move the batch dimension")
    if len(node.in_shape) != 1:
        raise node.error(f"the data input must be [batch, features], got [batch, {_dims(node.in_shape)}]")
    b = node.constant(1, "weight matrix B")
    if b.dim() != 2:
        raise node.error(f"B must be a matrix, got shape {tuple(b.shape)}")
    weight = float(node.attr("alpha", 1.0)) * (b if node.attr("transB", 0) else b.t())
    c = node.optional_constant(2, "bias C")
    bias = None if c is None else float(node.attr("beta", 1.0)) * _as_bias(node, c, weight.shape[0])
    return [_linear(node, weight, bias)]


@_converts("MatMul")
def _matmul(node: _Node) -> list[nn.Module]:
    """``x @ W`` with a constant matrix ``W`` → ``nn.Linear(bias=False)``, weight ``Wᵀ``.

    A following Add of a constant becomes its bias (see ``_merge_constant_maps``).
    """
    node.require_data_first()
    w = node.constant(1, "second operand")
    if w.dim() < 2 or len(node.in_shape) < 1:
        raise node.error(f"only [batch, ..., n] @ [n, m] is supported, got data [batch, "
                         f"{_dims(node.in_shape)}] and constant {tuple(w.shape)}")
    leading = w.shape[:-2]
    if any(d != 1 for d in leading) or len(leading) > len(node.in_shape) - 1:
        raise node.error(f"the constant operand of shape {tuple(w.shape)} would broadcast over the batch")
    return [_linear(node, w.reshape(w.shape[-2:]).t(), None)]


@_converts("Conv")
def _conv(node: _Node) -> list[nn.Module]:
    """2-D convolution with symmetric padding → ``nn.Conv2d``."""
    node.require_data_first()
    w = node.constant(1, "kernel W")
    if w.dim() != 4 or len(node.in_shape) != 3:
        raise node.error(f"only 2-D convolutions of [batch, C, H, W] data are supported (kernel "
                         f"{tuple(w.shape)}, data [batch, {_dims(node.in_shape)}])")
    bias = node.optional_constant(2, "bias B")
    groups = int(node.attr("group", 1))
    if w.shape[1] * groups != node.in_shape[0]:
        raise node.error(f"kernel {tuple(w.shape)} with group={groups} does not fit {node.in_shape[0]} "
                         "input channels")
    kernel = tuple(int(k) for k in w.shape[2:])
    if tuple(node.attr("kernel_shape", kernel)) != kernel:
        raise node.error(f"kernel_shape {node.attr('kernel_shape')} differs from the kernel {kernel}")
    stride = tuple(int(s) for s in node.attr("strides", (1, 1)))
    dilation = tuple(int(d) for d in node.attr("dilations", (1, 1)))
    padding = _conv_padding(node)
    conv = nn.Conv2d(node.in_shape[0], w.shape[0], kernel, stride, padding, dilation, groups,
                     bias=bias is not None, dtype=_float_dtype(w))
    conv.weight = nn.Parameter(w.to(conv.weight.dtype).clone())
    if bias is not None:
        conv.bias = nn.Parameter(bias.reshape(-1).to(conv.weight.dtype).clone())
    return [conv]


def _conv_padding(node: _Node) -> tuple[int, int]:
    """Explicit symmetric padding; ``auto_pad = SAME_*`` is rejected by onnx2torch before we get here."""
    auto_pad = node.attr("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
    if auto_pad == "VALID":
        return (0, 0)
    if auto_pad != "NOTSET":
        raise node.error(f"auto_pad={auto_pad} is not supported; give explicit pads")
    pads = [int(p) for p in node.attr("pads", (0, 0, 0, 0))]
    if pads[:2] != pads[2:]:
        raise node.error(f"asymmetric padding (begin {pads[:2]}, end {pads[2:]}) is not supported")
    return (pads[0], pads[1])


@_converts("Flatten")
def _flatten(node: _Node) -> list[nn.Module]:
    """``Flatten(axis=1)`` keeps the batch dimension → ``nn.Flatten``; other axes mix it."""
    node.require_data_first()
    rank = len(node.in_shape) + 1
    axis = int(node.attr("axis", 1))
    if (axis + rank if axis < 0 else axis) != 1:
        raise node.error(f"Flatten with axis={axis} on rank-{rank} data merges the batch dimension; "
                         "only axis=1 is supported")
    return [] if len(node.in_shape) == 1 else [nn.Flatten()]


@_converts("Reshape")
def _reshape(node: _Node) -> list[nn.Module]:
    """Reshape that keeps the batch dimension first → ``nn.Flatten`` (and ``nn.Unflatten``).

    The target's first entry must stand for the batch: ``0`` (copy), ``-1`` (inferred) or ``1`` (files
    exported with batch size 1).
    """
    node.require_data_first()
    target = [int(v) for v in node.constant(1, "target shape").reshape(-1).tolist()]
    if node.attr("allowzero", 0) and 0 in target:
        raise node.error("Reshape with allowzero=1 and a zero in the target shape is not supported")
    if not target or target[0] not in (0, -1, 1) or target.count(-1) > 1:
        raise node.error(f"target shape {target} does not keep the batch dimension first")
    rest = [node.in_shape[i] if v == 0 and i < len(node.in_shape) else v for i, v in enumerate(target[1:])]
    numel = int(np.prod(node.in_shape, dtype=np.int64))
    if -1 in rest:
        known = int(np.prod([v for v in rest if v != -1], dtype=np.int64))
        if known <= 0 or numel % known:
            raise node.error(f"target shape {target} does not fit data [batch, {_dims(node.in_shape)}]")
        rest[rest.index(-1)] = numel // known
    if int(np.prod(rest, dtype=np.int64)) != numel:
        raise node.error(f"target shape {target} does not keep the batch dimension (data is "
                         f"[batch, {_dims(node.in_shape)}])")
    out_shape = tuple(rest)
    if out_shape == node.in_shape:
        return []
    layers: list[nn.Module] = [] if len(node.in_shape) == 1 else [nn.Flatten()]
    if len(out_shape) != 1:
        layers.append(nn.Unflatten(1, out_shape))
    return layers


@_converts("Add", "Sub", "Mul", "Div")
def _arithmetic(node: _Node) -> list[nn.Module]:
    """``x ∘ c`` or ``c ∘ x`` with a constant ``c`` → ``ElementwiseAffine`` (``c / x`` is not affine)."""
    c = _per_example(node, node.constant(1 - node.data_slot, "other operand")).to(torch.float64)
    data_first = node.data_slot == 0
    if node.op_type == "Add":
        scale, shift = torch.ones(()), c
    elif node.op_type == "Sub":
        scale, shift = (torch.ones(()), -c) if data_first else (-torch.ones(()), c)
    elif node.op_type == "Mul":
        scale, shift = c, torch.zeros(())
    elif not data_first:
        raise node.error("division of a constant by the data is not an affine map")
    elif bool((c == 0).any()):
        raise node.error("division by a constant that contains zero")
    else:
        scale, shift = 1.0 / c, torch.zeros(())
    return [ElementwiseAffine(scale, shift)]


# ------------------------------------------------------------------------------- converter helpers
def _linear(node: _Node, weight: Tensor, bias: Tensor | None) -> nn.Linear:
    """``nn.Linear`` with ``weight`` ``[out, in]`` (and ``bias`` ``[out]``) as parameters."""
    if weight.shape[1] != node.in_shape[-1]:
        raise node.error(f"weight of shape {tuple(weight.shape)} (as [out, in]) does not fit data "
                         f"[batch, {_dims(node.in_shape)}]")
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, dtype=_float_dtype(weight))
    linear.weight = nn.Parameter(weight.to(linear.weight.dtype).contiguous().clone())
    if bias is not None:
        linear.bias = nn.Parameter(bias.to(linear.weight.dtype).clone())
    return linear


def _float_dtype(t: Tensor) -> torch.dtype:
    return t.dtype if t.is_floating_point() else torch.get_default_dtype()


def _as_bias(node: _Node, c: Tensor, out_features: int) -> Tensor:
    """Gemm's C (scalar, [n], [1, n], [1, 1]) as a bias vector ``[n]``."""
    if c.dim() == 2 and c.shape[0] == 1:
        c = c[0]
    if c.dim() > 1 or c.numel() not in (1, out_features):
        raise node.error(f"bias C of shape {tuple(c.shape)} does not broadcast to [1, {out_features}] "
                         "without depending on the batch")
    return c.reshape(-1).expand(out_features).clone()


def _per_example(node: _Node, c: Tensor) -> Tensor:
    """A constant operand without its batch dimension; it must not change the data's shape."""
    rank = len(node.in_shape)
    if c.dim() > rank + 1 or (c.dim() == rank + 1 and c.shape[0] != 1):
        raise node.error(f"the constant of shape {tuple(c.shape)} would broadcast over the batch of "
                         f"data [batch, {_dims(node.in_shape)}]")
    if c.dim() == rank + 1:
        c = c[0]
    try:
        shape = torch.broadcast_shapes(node.in_shape, tuple(c.shape))
    except RuntimeError:
        shape = None
    if shape != node.in_shape:
        raise node.error(f"the constant of shape {tuple(c.shape)} does not broadcast to the data "
                         f"[batch, {_dims(node.in_shape)}] without changing its shape")
    return c


def _merge_constant_maps(layers: list[nn.Module]) -> list[nn.Module]:
    """Fold consecutive ``ElementwiseAffine`` layers together, and additions after a ``nn.Linear``
    into its bias (MatMul + Add → one Linear); weights stay untouched."""
    merged: list[nn.Module] = []
    for layer in layers:
        prev = merged[-1] if merged else None
        if isinstance(layer, ElementwiseAffine) and isinstance(prev, ElementwiseAffine):
            merged[-1] = ElementwiseAffine(prev.scale * layer.scale, prev.shift * layer.scale + layer.shift)
        elif isinstance(layer, ElementwiseAffine) and isinstance(prev, nn.Linear) \
                and _is_bias(layer, prev.out_features):
            merged[-1] = _with_bias(prev, layer.shift)
        else:
            merged.append(layer)
    return merged


def _is_bias(affine: ElementwiseAffine, out_features: int) -> bool:
    shift = affine.shift
    while shift.dim() > 1 and shift.shape[0] == 1:
        shift = shift[0]
    return bool((affine.scale == 1).all()) and shift.dim() <= 1 and shift.numel() in (1, out_features)


def _with_bias(linear: nn.Linear, shift: Tensor) -> nn.Linear:
    out = nn.Linear(linear.in_features, linear.out_features, bias=True, dtype=linear.weight.dtype)
    out.weight = linear.weight
    base = linear.bias.detach() if linear.bias is not None else torch.zeros_like(out.bias)
    out.bias = nn.Parameter((base + shift.reshape(-1).to(base.dtype)).clone())
    return out


def _label(proto: onnx.NodeProto, index: int) -> str:
    """How errors name a node: its op type and its name (or its position if it has none)."""
    return f"{proto.op_type} node " + (repr(proto.name) if proto.name else f"#{index}")


def _dims(shape: tuple[int, ...]) -> str:
    return ", ".join(map(str, shape))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no message"


# ---------------------------------------------------------------------------------------- saving
def save_onnx(module: nn.Module, path: str | os.PathLike, input_shape: tuple[int, ...],
              opset: int = TARGET_OPSET) -> Path:
    """Export ``module`` (inputs ``[B, *input_shape]``) to ONNX with a dynamic batch axis.

    Input and output are named ``"input"`` and ``"output"``. The file is written under a temporary
    name in the same directory and renamed at the end, so a failed export leaves no partial file
    (and an existing file at ``path`` untouched). Returns ``path``. Raises ``InputError`` for a bad
    shape or directory, ``ModelError`` if the export fails.
    """
    path = Path(path)
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list, torch.Size)) else None
    if not shape or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise InputError(f"input_shape must be a non-empty tuple of positive ints (without the batch "
                         f"dimension), got {input_shape!r}")
    if not path.parent.is_dir():
        raise InputError(f"cannot write {path}: directory {path.parent} does not exist")
    reference = next((t for t in [*module.parameters(), *module.buffers()] if t.is_floating_point()), None)
    example = torch.zeros(2, *shape, dtype=reference.dtype if reference is not None else None,
                          device=reference.device if reference is not None else None)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
    done = False
    try:
        _export(module, example, tmp, opset)
        onnx.checker.check_model(str(tmp))
        os.replace(tmp, path)
        done = True
    except Exception as exc:
        raise ModelError(f"could not export the module to {path} ({type(exc).__name__}: "
                         f"{_first_line(exc)})") from exc
    finally:
        if not done:
            tmp.unlink(missing_ok=True)
    return path


def _export(module: nn.Module, example: Tensor, path: Path, opset: int) -> None:
    """TorchScript-based export (the dynamo exporter needs onnxscript, which is not a dependency)."""
    options = {}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:  # torch >= 2.5
        options["dynamo"] = False
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=r"The feature will be removed.*", category=DeprecationWarning)
        torch.onnx.export(module, (example,), str(path), input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                          opset_version=opset, **options)
