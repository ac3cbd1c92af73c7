"""The one module that imports auto_LiRPA: version-gated compatibility patches and the import itself.

auto_LiRPA on PyPI is 0.3 (2022); α,β-CROWN users have 0.6/0.7 from source. Only API shared by both
is used (``BoundedModule``, ``BoundedParameter``, ``BoundedTensor``, ``PerturbationLpNorm``,
``compute_bounds``). On current torch/numpy, 0.3 needs the patches below; each one checks whether the
running versions need it, is applied from outside the package, and can be undone (the tests undo
each one and show the failure it prevents). 0.7.x needs none of them except the α-CROWN slope fix on
torch ≥ 2.14. The bound backend built on it is ``backend.py``.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from lirpa_lid.errors import BackendError

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
        """Whether the fix is in effect now (applied and not undone)."""
        return self._undo is not None

    def apply(self) -> None:
        """Apply the fix, keeping what :meth:`undo` needs; a no-op if already applied."""
        if not self.applied:
            self._undo = self._apply()

    def undo(self) -> None:
        """Restore what the fix replaced; a no-op if it is not applied."""
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
    """The patch in ``PATCHES`` called ``name`` (``KeyError`` if none); the tests undo patches one by one."""
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
