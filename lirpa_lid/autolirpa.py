"""The one module that talks to auto_LiRPA: version-gated compatibility patches and the bound backend.

auto_LiRPA on PyPI is 0.3 (2022); α,β-CROWN users have 0.6/0.7 from source. Only API shared by both
is used (``BoundedModule``, ``BoundedParameter``, ``BoundedTensor``, ``PerturbationLpNorm``,
``compute_bounds``). On current torch/numpy, 0.3 needs the patches below; each one checks whether the
running versions need it, is applied from outside the package, and can be undone (the tests undo
each one and show the failure it prevents). 0.7.x needs none of them except the α-CROWN slope fix on
torch ≥ 2.14.

A weight box ``[θ₀ − l, θ₀ + u]`` is given to auto_LiRPA as its centre ``θ₀ + (u − l)/2`` (the
parameter's value) with a per-element radius ``eps = (u + l)/2``: explicit per-element ``x_L/x_U``
on a parameter fails under CROWN in both 0.3 (shape mismatch, patched below for users who need it)
and 0.7.1 (einsum shape error), while centre + ``eps`` works in both. Gradients with respect to
``l`` and ``u`` flow through both the centre and the radius (see ``_BoxBounds``).
"""
from __future__ import annotations

import contextlib
import copy
import importlib
import importlib.util
import sys
import types
from pathlib import Path
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

from .bounds import (AlphaOptions, BoundMethod, Bounds, InputBox, check_batch, check_model_finite,
                     spec_matrix)
from .errors import BackendError, DomainError, LirpaLidError
from .orthotope import Orthotope

#: ``bound_opts`` for every BoundedModule.
#: - Sparse intermediate bounds select unstable neurons with ``OneHotC`` specification objects that the
#:   weight-perturbed Linear operator cannot multiply (``'OneHotC' object has no attribute 'clamp'``
#:   under CROWN, in 0.3 and 0.7.1), so they are off.
#: - ``conv_mode='matrix'``: in the default "patches" mode, 0.3 treats an element-wise Add (e.g. an
#:   input normalisation) whose output feeds a weight-perturbed Linear layer as a convolution output
#:   and fails (``IndexError`` in ``backward_bound.py``); matrix mode is exact, only slower on CNNs.
#: - Sparse α (slopes stored only for the neurons found unstable when α-CROWN starts) fails with a
#:   shape mismatch in ``_backward_relaxation`` on weight-perturbed ReLU nets once boxes are wide
#:   enough that the unstable sets of the intermediate bounds disagree; dense α is used.
BOUND_OPTS = {"sparse_intermediate_bounds": False, "conv_mode": "matrix",
              "sparse_features_alpha": False, "sparse_spec_alpha": False}

INSTALL_HINT = ("auto_LiRPA is not installed. Install PyPI's release without its (torch<1.13) metadata: "
                "`pip install --no-deps auto-lirpa==0.3`, or use the auto_LiRPA 0.6/0.7 of an α,β-CROWN "
                "checkout. The native backend (backend='native') does not need it.")


# ---------------------------------------------------------------------------------------- patches
@dataclass
class Patch:
    """One outside fix for one incompatibility. ``stage`` is ``"pre"`` (before importing auto_LiRPA)
    or ``"post"`` (on the imported package)."""

    name: str
    reason: str
    stage: str
    needed: Callable[[], bool]
    _apply: Callable[[], Callable[[], None]]
    _undo: Callable[[], None] | None = None

    @property
    def applied(self) -> bool:
        return self._undo is not None

    def apply(self) -> None:
        if not self.applied:
            self._undo = self._apply()

    def undo(self) -> None:
        if self._undo is not None:
            self._undo()
            self._undo = None


def _set_attr(obj, name: str, value) -> Callable[[], None]:
    """Set ``obj.name = value``; return a function restoring the previous state."""
    missing = object()
    old = obj.__dict__.get(name, missing) if isinstance(obj, (type, types.ModuleType)) else getattr(obj, name, missing)
    setattr(obj, name, value)

    def undo() -> None:
        if old is missing:
            delattr(obj, name)
        else:
            setattr(obj, name, old)
    return undo


def source_version() -> str | None:
    """``auto_LiRPA.__version__`` read from its ``__init__.py`` without importing it (None if absent)."""
    spec = importlib.util.find_spec("auto_LiRPA")
    if spec is None or spec.origin is None:
        return None
    for line in Path(spec.origin).read_text().splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip("'\"")
    return "unknown"


def _is_release_03() -> bool:
    """The 2022 release (PyPI 0.3), which imports names that numpy 2 / torch 2 removed."""
    v = source_version()
    return v is not None and v.startswith("0.3")


def _arraysetops_missing() -> bool:
    try:
        importlib.import_module("numpy.lib.arraysetops")
        return False
    except ImportError:
        return True


def _apply_arraysetops() -> Callable[[], None]:
    # numpy 2 made numpy.lib.arraysetops private; auto_LiRPA 0.3 imports `isin` from it
    stand_in = types.ModuleType("numpy.lib.arraysetops")
    stand_in.isin = np.isin
    sys.modules["numpy.lib.arraysetops"] = stand_in
    return lambda: sys.modules.pop("numpy.lib.arraysetops", None)


def _symbolic_helper():
    # by module path: attribute access on torch.onnx may resolve to the internal TorchScript module,
    # not the backward-compatibility module auto_LiRPA imports from
    return importlib.import_module("torch.onnx.symbolic_helper")


def _onnx_globals():
    for path in ("torch.onnx._internal.torchscript_exporter._globals", "torch.onnx._globals"):
        try:
            return importlib.import_module(path).GLOBALS
        except ImportError:
            continue
    raise BackendError("cannot find torch's TorchScript ONNX exporter globals; this torch is not supported "
                       "by the auto_LiRPA backend")


def _apply_set_opset_version() -> Callable[[], None]:
    def _set_opset_version(opset_version: int) -> None:
        _onnx_globals().export_onnx_opset_version = opset_version
    return _set_attr(_symbolic_helper(), "_set_opset_version", _set_opset_version)


def _apply_node_getitem() -> Callable[[], None]:
    node_get = _symbolic_helper()._node_get
    return _set_attr(torch._C.Node, "__getitem__", lambda node, key: node_get(node, key))


def _lirpa():
    return importlib.import_module("auto_LiRPA")


def _named_members_lacks_keyword() -> bool:
    import inspect
    return "remove_duplicate" not in inspect.signature(_lirpa().BoundedModule._named_members).parameters


def _apply_named_members() -> Callable[[], None]:
    cls = _lirpa().BoundedModule
    original = cls.__dict__["_named_members"]

    def _named_members(self, get_members_fn, prefix="", recurse=True, remove_duplicate=True):
        return original(self, get_members_fn, prefix=prefix, recurse=recurse)
    return _set_attr(cls, "_named_members", _named_members)


def _relu_cls():
    return importlib.import_module("auto_LiRPA.operators").BoundRelu


def _clip_alpha_name() -> str | None:
    """The ReLU slope-clipping method: ``clip_alpha_`` in 0.3, ``clip_alpha`` in 0.6/0.7."""
    cls = _relu_cls()
    return next((n for n in ("clip_alpha_", "clip_alpha") if n in cls.__dict__), None)


def _relu_alpha_clip_needed() -> bool:
    # torch ≥ 2.14: clamp's gradient is 0 at its limits, and auto_LiRPA starts ReLU slopes at exactly
    # 0 or 1 and clamps them to [0, 1] in the relaxation, so α-CROWN never moves them
    from packaging.version import Version
    return Version(torch.__version__.split("+")[0]) >= Version("2.14") and _clip_alpha_name() is not None


def _apply_relu_alpha_clip() -> Callable[[], None]:
    def clip_alpha(self) -> None:
        low = getattr(self, "leaky_alpha", 0.0)
        for v in self.alpha.values():
            v.data = torch.clamp(v.data, low + 1e-3, 1 - 1e-3)  # strictly inside: still valid slopes
    return _set_attr(_relu_cls(), _clip_alpha_name(), clip_alpha)


def _param_box_batch_dim_needed() -> bool:
    # 0.6/0.7 precompute the centre and radius from x_L/x_U and return four values here: not this bug
    return _is_release_03() and hasattr(_lirpa().PerturbationLpNorm, "get_input_bounds")


def _apply_param_box_batch_dim() -> Callable[[], None]:
    # 0.3: a BoundedParameter's centre reaches `concretize` with a leading batch dimension of size 1
    # that explicit x_L/x_U lack, so CROWN fails with a shape mismatch
    cls = _lirpa().PerturbationLpNorm
    original = cls.__dict__["get_input_bounds"]

    def get_input_bounds(self, x, A):
        x_L, x_U = original(self, x, A)
        if (self.x_L is not None and not self.sparse and x_L.dim() + 1 == x.dim() and x.shape[0] == 1
                and tuple(x.shape[1:]) == tuple(x_L.shape)):
            x_L, x_U = x_L.unsqueeze(0), x_U.unsqueeze(0)
        return x_L, x_U
    return _set_attr(cls, "get_input_bounds", get_input_bounds)


def _mul_cls():
    return importlib.import_module("auto_LiRPA.operators").BoundMul


def _constant_product_wrong() -> bool:
    # 0.3: when *both* operands of a Mul/Div are fixed (an unperturbed input times a traced scalar),
    # `interval_propagate_constant` takes the first operand as the constant *and* as the input and
    # returns x·x (Div: x/x) — probed on numbers, so a release that fixed it gets no patch
    original = _mul_cls().__dict__.get("interval_propagate_constant")
    if original is None:
        return False
    three, two = torch.tensor(3.0), torch.tensor(2.0)
    lower, upper = original.__func__((three, three), (two, two))
    return not (float(lower) == float(upper) == 6.0)


def _apply_constant_product() -> Callable[[], None]:
    cls = _mul_cls()
    original = cls.__dict__["interval_propagate_constant"].__func__

    def interval_propagate_constant(*v, op=lambda x, const: x * const):
        (x_lo, x_hi), (y_lo, y_hi) = v[0], v[1]
        if x_lo is x_hi and y_lo is y_hi:  # both fixed: the value itself
            value = op(x_lo, y_lo)
            return value, value
        return original(*v, op=op)
    return _set_attr(cls, "interval_propagate_constant", staticmethod(interval_propagate_constant))


PATCHES: list[Patch] = [
    Patch("numpy-arraysetops", "numpy 2 removed numpy.lib.arraysetops (auto_LiRPA 0.3 imports isin)",
          "pre", lambda: _is_release_03() and _arraysetops_missing(), _apply_arraysetops),
    Patch("onnx-set-opset-version", "torch 2 removed torch.onnx.symbolic_helper._set_opset_version",
          "pre", lambda: _is_release_03() and not hasattr(_symbolic_helper(), "_set_opset_version"),
          _apply_set_opset_version),
    Patch("node-getitem", "torch ≥ 1.13 removed torch._C.Node.__getitem__ (use symbolic_helper._node_get)",
          "pre", lambda: _is_release_03() and not hasattr(torch._C.Node, "__getitem__"), _apply_node_getitem),
    Patch("named-members-remove-duplicate", "torch 2 passes remove_duplicate= to Module._named_members",
          "post", _named_members_lacks_keyword, _apply_named_members),
    Patch("relu-alpha-inside-unit-interval", "torch ≥ 2.14 clamp has zero gradient at its limits: "
          "ReLU α-CROWN would silently equal CROWN", "post", _relu_alpha_clip_needed, _apply_relu_alpha_clip),
    Patch("parameter-box-batch-dim", "0.3: explicit x_L/x_U on a BoundedParameter mismatch the centre's "
          "batch dimension under CROWN", "post", _param_box_batch_dim_needed, _apply_param_box_batch_dim),
    Patch("constant-times-constant", "0.3: a Mul/Div of two fixed operands (a fixed input times a traced "
          "scalar) is bounded as x·x (silently unsound)", "post", _constant_product_wrong,
          _apply_constant_product),
]


def patch(name: str) -> Patch:
    for p in PATCHES:
        if p.name == name:
            return p
    raise KeyError(name)


_LIRPA = None


def import_auto_lirpa() -> types.ModuleType:
    """Import auto_LiRPA with the patches the running versions need (idempotent)."""
    global _LIRPA
    if _LIRPA is not None:
        return _LIRPA
    if importlib.util.find_spec("auto_LiRPA") is None:
        raise BackendError(INSTALL_HINT)
    for p in PATCHES:
        if p.stage == "pre" and p.needed():
            p.apply()
    try:
        module = importlib.import_module("auto_LiRPA")
    except ImportError as exc:
        raise BackendError(f"auto_LiRPA failed to import on torch {torch.__version__} / numpy "
                           f"{np.__version__}: {exc}") from exc
    for p in PATCHES:
        if p.stage == "post" and p.needed():
            p.apply()
    _LIRPA = module
    return module


def version() -> str:
    """The installed auto_LiRPA version (without importing it)."""
    from importlib import metadata
    try:
        return metadata.version("auto_LiRPA")
    except metadata.PackageNotFoundError:
        spec = importlib.util.find_spec("auto_LiRPA")
        return "not installed" if spec is None else "unknown (source checkout)"


# ---------------------------------------------------------------------------------------- backend
@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype):
    """auto_LiRPA 0.3 creates some tensors (identity specifications, Tanh/Sigmoid tangent tables) in
    torch's default dtype; a float64 model needs them in float64."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


_METHOD_NAMES = {BoundMethod.IBP: "IBP", BoundMethod.CROWN: "CROWN", BoundMethod.CROWN_IBP: "CROWN-IBP",
                 BoundMethod.ALPHA_CROWN: "CROWN-Optimized"}


class LirpaBoundedNetwork:
    """``model`` wrapped in an auto_LiRPA ``BoundedModule`` whose boxed parameters are
    ``BoundedParameter``s. Built on the first call (auto_LiRPA needs an example input), then reused:
    each call only writes the new centre and radius into the existing perturbation objects.
    """

    def __init__(self, model: nn.Module, params: list[str] | None = None):
        self.model = model
        self.params = None if params is None else list(params)
        self._bounded = None
        self._input_shape: tuple[int, ...] | None = None
        self._ptb: dict[str, object] = {}
        self._bparam: dict[str, nn.Parameter] = {}

    def _build(self, x: Tensor, names: list[str]) -> None:
        lirpa = import_auto_lirpa()
        convs = {f"{m}.{r}" for m, mod in self.model.named_modules() if isinstance(mod, nn.modules.conv._ConvNd)
                 for r in ("weight", "bias")}
        if convs & set(names):
            raise BackendError(f"auto_LiRPA has no weight perturbation for convolutions (parameters "
                               f"{sorted(convs & set(names))}); use backend='native'")
        model = copy.deepcopy(self.model).to(x.dtype)
        for name in names:
            *path, leaf = name.split(".")
            owner = model.get_submodule(".".join(path))
            value = getattr(owner, leaf)
            ptb = lirpa.PerturbationLpNorm(norm=np.inf, eps=torch.zeros_like(value.data))
            bparam = lirpa.BoundedParameter(value.data.clone(), ptb)
            delattr(owner, leaf)
            owner.register_parameter(leaf, bparam)
            self._ptb[name], self._bparam[name] = ptb, bparam
        try:
            with _default_dtype(x.dtype):
                self._bounded = lirpa.BoundedModule(model, torch.zeros_like(x[:1]), bound_opts=dict(BOUND_OPTS),
                                                    device=x.device.type)
        except Exception as exc:
            raise BackendError(f"auto_LiRPA could not build a bounded module for this model: {exc}; the native "
                               "backend (backend='native') may support it") from exc
        self.params, self._input_shape = list(names), tuple(x.shape[1:])

    def compute_bounds(self, x: Tensor, domain: Orthotope | None = None, C: Tensor | None = None,
                       method: BoundMethod | str = BoundMethod.CROWN, input_box: InputBox | None = None,
                       bound_upper: bool = True, alpha: AlphaOptions = AlphaOptions()) -> Bounds:
        method = BoundMethod.parse(method)
        check_batch(x, input_box)
        check_model_finite(self.model)
        names = domain.names if domain is not None else (self.params or [])
        if self._bounded is None:
            self._build(x, names)
        elif tuple(x.shape[1:]) != self._input_shape:
            raise BackendError(f"this bounded network was built for inputs [B, {self._input_shape}], got "
                               f"{tuple(x.shape)}")
        if domain is not None and sorted(domain.names) != sorted(self.params):
            raise DomainError(f"domain covers {sorted(domain.names)} but this bounded network was built "
                              f"for {sorted(self.params)}")
        if domain is None:
            domain = Orthotope({n: self._bparam[n].detach() for n in self.params})
        boxes = domain.center_radius(x.dtype)
        Cm = spec_matrix(C, x.shape[0], self._n_out(x), x)
        runner = _Runner(self, x, Cm, method, input_box, bound_upper, alpha)
        centre_radius = [boxes[n][0] for n in self.params] + [boxes[n][1] for n in self.params]
        with _reported_as_backend_error(method, input_box):
            if torch.is_grad_enabled() and any(t.requires_grad for t in centre_radius):
                lb, ub = _BoxBounds.apply(runner, *centre_radius)
            else:
                with torch.no_grad():
                    lb, ub = runner.run(centre_radius, need_graph=False)
        return Bounds(lb, ub if bound_upper else None)

    def _n_out(self, x: Tensor) -> int:
        dtype = next((p.dtype for p in self.model.parameters()), x.dtype)
        with torch.no_grad():
            return int(self.model(x[:1].to(dtype)).flatten(1).shape[1])


@contextlib.contextmanager
def _reported_as_backend_error(method: BoundMethod, input_box: InputBox | None):
    """auto_LiRPA's own failures (shape mismatches, assertions, unsupported operators in some method)
    become one :class:`BackendError` naming the method and pointing to the native backend."""
    try:
        yield
    except LirpaLidError:
        raise
    except Exception as exc:
        where = "with an input box" if input_box is not None else "with a fixed input"
        raise BackendError(
            f"auto_LiRPA {version()} cannot compute {method.value} bounds for this model {where} "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no message'}); this "
            "combination is not supported by the auto_lirpa backend. The native backend "
            "(backend='native') bounds chain networks of Linear/Conv2d/ReLU/Tanh/Sigmoid/BatchNorm/"
            "constant affine layers") from exc


class _Runner:
    """One bound computation with fixed inputs; ``run`` maps box offsets to bounds."""

    def __init__(self, net: LirpaBoundedNetwork, x, C, method, input_box, bound_upper, alpha):
        self.net, self.x, self.C, self.method = net, x, C, method
        self.input_box, self.bound_upper, self.alpha = input_box, bound_upper, alpha
        self.leaves: list[Tensor] = []

    def _bounded_input(self) -> Tensor:
        """The input: a plain tensor when fixed (a zero-width ``BoundedTensor`` sends 0.3 through code
        paths that fail on constants and element-wise layers), else a ``BoundedTensor`` over the box."""
        if self.input_box is None:
            return self.x
        lirpa = import_auto_lirpa()
        ptb = lirpa.PerturbationLpNorm(norm=np.inf, x_L=self.input_box.lower.to(self.x.dtype),
                                       x_U=self.input_box.upper.to(self.x.dtype))
        return lirpa.BoundedTensor(self.input_box.center().to(self.x.dtype), ptb)

    def run(self, centre_radius: list[Tensor], need_graph: bool) -> tuple[Tensor, Tensor]:
        """Set the boxes (``centre_radius``: centres..., radii...) and compute the bounds.

        With ``need_graph``, the centres and radii are fresh leaves (``self.leaves``, same order)
        whose gradients ``_BoxBounds.backward`` passes on.
        """
        with _default_dtype(self.x.dtype):
            return self._run(centre_radius, need_graph)

    def _run(self, centre_radius: list[Tensor], need_graph: bool) -> tuple[Tensor, Tensor]:
        net, names = self.net, self.net.params
        k = len(names)
        centres, radii = [], []
        for i, n in enumerate(names):
            bparam = net._bparam[n]
            with torch.no_grad():
                bparam.data.copy_(centre_radius[i])
            bparam.requires_grad_(need_graph)
            bparam.grad = None
            radius = centre_radius[k + i].detach().clone().requires_grad_(need_graph)
            net._ptb[n].eps = radius
            centres.append(bparam)
            radii.append(radius)
        self.leaves = centres + radii
        x = self._bounded_input()
        bm = net._bounded
        kw = dict(x=(x,), C=self.C, bound_upper=self.bound_upper)
        ibp_l, ibp_u = bm.compute_bounds(method="IBP", **kw)
        if self.method is BoundMethod.IBP:
            return ibp_l, ibp_u
        if self.method is BoundMethod.ALPHA_CROWN:
            bm.set_bound_opts({"optimize_bound_args": {"iteration": self.alpha.iterations,
                                                       "lr_alpha": self.alpha.lr}})
            with torch.enable_grad():  # the slope optimisation differentiates even when we do not
                opt_l, opt_u = bm.compute_bounds(method="CROWN-Optimized", **kw)
            # 0.3 returns α-CROWN bounds without a graph; recompute with the optimised slopes
            lb, ub = bm.compute_bounds(method="CROWN", reuse_alpha=True, **kw)
            lb = torch.maximum(lb, opt_l.detach())
            ub = torch.minimum(ub, opt_u.detach()) if self.bound_upper else None
        else:
            lb, ub = bm.compute_bounds(method=_METHOD_NAMES[self.method], **kw)
        lb = torch.maximum(lb, ibp_l)
        ub = torch.minimum(ub, ibp_u) if self.bound_upper else None
        return lb, ub


class _BoxBounds(torch.autograd.Function):
    """Bridge from box centres/radii to auto_LiRPA bounds: auto_LiRPA sees a centre as the value of a
    ``BoundedParameter`` (a leaf) and a radius as its ``eps``; the gradients with respect to those
    leaves are handed back to the centres and radii (and by autograd on to the offsets). The backward
    must run before the next bound computation on the same network (torch reports an in-place
    modification otherwise)."""

    @staticmethod
    def forward(ctx, runner: _Runner, *centre_radius: Tensor):
        with torch.enable_grad():
            lb, ub = runner.run(list(centre_radius), need_graph=True)
        ctx.runner, ctx.outputs = runner, (lb, ub)
        return lb.detach(), (ub.detach() if ub is not None else lb.new_zeros(0))

    @staticmethod
    def backward(ctx, grad_lb: Tensor, grad_ub: Tensor):
        lb, ub = ctx.outputs
        outs, grads = [lb], [grad_lb]
        if ub is not None and grad_ub.numel():
            outs.append(ub)
            grads.append(grad_ub)
        outs_g = [(o, g) for o, g in zip(outs, grads) if o.requires_grad]
        leaves = ctx.runner.leaves
        if not outs_g:
            return (None,) + tuple(torch.zeros_like(t) for t in leaves)
        g = torch.autograd.grad([o for o, _ in outs_g], leaves, [g for _, g in outs_g], allow_unused=True)
        return (None, *(torch.zeros_like(t) if gi is None else gi for gi, t in zip(g, leaves)))
