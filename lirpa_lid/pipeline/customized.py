"""α,β-CROWN's ``Customized("module", "function", *args, **kwargs)`` hooks for models and data.

α,β-CROWN evaluates such a string as Python; here it is *parsed* (``ast``): the arguments must be
literals (numbers, strings, lists, dicts, ``True``/``False``/``None``), nothing is evaluated. The
conventions are α,β-CROWN's (``complete_verifier/load_model.py`` and ``loading.py``):

* ``module`` ending in ``.py`` is a file, relative to the configuration file's directory (or
  absolute); otherwise a module name, looked up as ``<config dir>/<module>.py``, then
  ``<config dir>/custom/<module>.py``, then imported from ``sys.path`` (``custom.<module>`` first, as
  α,β-CROWN does, then ``<module>``);
* a **model** hook is called as ``function(*args, **kwargs)`` and must return an ``nn.Module``;
* a **data** hook is called as ``function(spec, *args, **kwargs)``, where ``spec`` is the
  ``specification`` section as a dict (``spec["epsilon"]`` etc.), and returns
  ``X, labels, data_max, data_min, eps`` (optionally ``runnerup`` and ``target_label`` after them,
  which lirpa_lid ignores) or a dict with those keys. ``X`` is ``[n, *input_shape]``; ``data_max``
  and ``data_min`` clip the ε-balls (``None``: no clipping); ``eps`` is the L∞ radius, already in the
  normalised input space (a number or a tensor such as ``[1, C, 1, 1]``), or ``None``.

α,β-CROWN's hooks may also read ``arguments.Config``; lirpa_lid has no such global (pass what a hook
needs as keyword arguments instead).
"""
from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from lirpa_lid.errors import InputError, ModelError, SpecificationError

PREFIX = "Customized"


@dataclass(frozen=True)
class Customized:
    """A parsed ``Customized("module", "function", *args, **kwargs)`` call (arguments are literals)."""

    module: str
    function: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)

    def __str__(self) -> str:
        parts = [repr(self.module), repr(self.function), *map(repr, self.args),
                 *(f"{k}={v!r}" for k, v in self.kwargs.items())]
        return f"{PREFIX}({', '.join(parts)})"


def is_customized(text: object) -> bool:
    """Whether a YAML value is a ``Customized(...)`` hook (rather than a file, dataset or model name)."""
    return isinstance(text, str) and text.strip().startswith(PREFIX + "(")


def parse_call(text: str, where: str) -> tuple[str, tuple, dict]:
    """``name(args...)`` or ``name`` → ``(name, args, kwargs)``; arguments must be literals."""
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        raise SpecificationError(f"{where}: cannot parse {text!r} ({exc.msg}); expected NAME or NAME(arguments)") from None
    if isinstance(node, ast.Name):
        return node.id, (), {}
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
        raise SpecificationError(f"{where}: expected NAME or NAME(arguments), got {text!r}")
    try:
        args = tuple(ast.literal_eval(a) for a in node.args)
        kwargs = {}
        for kw in node.keywords:
            if kw.arg is None:
                raise ValueError("**kwargs")
            kwargs[kw.arg] = ast.literal_eval(kw.value)
    except ValueError:
        raise SpecificationError(f"{where}: the arguments of {text!r} must be literals (numbers, strings, lists, "
                         "dicts, True/False/None); lirpa_lid does not evaluate Python expressions") from None
    return node.func.id, args, kwargs


def parse_customized(text: str, where: str) -> Customized:
    """Parse ``Customized("module", "function", ...)`` (α,β-CROWN's syntax)."""
    name, args, kwargs = parse_call(text, where)
    if name != PREFIX:
        raise SpecificationError(f"{where}: expected Customized(\"module\", \"function\", ...), got {text!r}")
    if len(args) < 2 or not all(isinstance(a, str) and a for a in args[:2]):
        raise SpecificationError(f"{where}: Customized needs the module and the function name as its first two "
                         f"arguments (strings), got {text!r}")
    return Customized(args[0], args[1], tuple(args[2:]), kwargs)


def _load_file(path: Path, name: str):
    key = "lirpa_lid_customized_" + hashlib.sha256(str(path).encode()).hexdigest()[:16]
    spec = importlib.util.spec_from_file_location(key, path)
    if spec is None or spec.loader is None:
        raise InputError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module  # dataclasses and pickling look modules up by name
    added = str(path.parent) not in sys.path
    if added:  # the hook may import its neighbours, as it would when run from its own directory
        sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(key, None)
        raise InputError(f"importing {name} ({path}) failed: {type(exc).__name__}: {exc}") from exc
    finally:
        if added:
            sys.path.remove(str(path.parent))
    return module


def resolve_module(name: str, base_dir: str | os.PathLike | None):
    """Import the module of a ``Customized`` hook (see the module docstring for the search order)."""
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    if name.endswith(".py"):
        path = Path(name) if Path(name).is_absolute() else base / name
        if not path.is_file():
            raise InputError(f"Customized module file {path} does not exist (paths are relative to the "
                             "configuration file's directory)")
        return _load_file(path.resolve(), name)
    for candidate in (base / f"{name}.py", base / "custom" / f"{name}.py"):
        if candidate.is_file():
            return _load_file(candidate.resolve(), name)
    for dotted in (f"custom.{name}", name):
        try:
            return importlib.import_module(dotted)
        except ModuleNotFoundError as exc:
            if exc.name not in (dotted, dotted.split(".")[0]):  # the module exists but an import inside fails
                raise InputError(f"importing {dotted} failed: {exc}") from exc
        except Exception as exc:
            raise InputError(f"importing {dotted} failed: {type(exc).__name__}: {exc}") from exc
    raise InputError(f"Customized module {name!r} not found: looked for {base / (name + '.py')}, "
                     f"{base / 'custom' / (name + '.py')}, and modules custom.{name} / {name} on sys.path")


def resolve(hook: Customized, base_dir: str | os.PathLike | None) -> Callable:
    """The hook's function, from its module found as :func:`resolve_module` finds it; errors name both."""
    module = resolve_module(hook.module, base_dir)
    fn = getattr(module, hook.function, None)
    if not callable(fn):
        raise InputError(f"{hook}: module {hook.module!r} has no function {hook.function!r}")
    return fn


def call_model(hook: Customized, base_dir: str | os.PathLike | None) -> nn.Module:
    """``function(*args, **kwargs)``, which must return an ``nn.Module``."""
    fn = resolve(hook, base_dir)
    try:
        model = fn(*hook.args, **hook.kwargs)
    except Exception as exc:
        raise ModelError(f"{hook} raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise ModelError(f"{hook} returned a {type(model).__name__}; a model hook must return a torch.nn.Module")
    return model


@dataclass(frozen=True)
class CustomizedData:
    """What a data hook returned (α,β-CROWN's names): ``X [n, ...]``, ``labels [n]``, clip range
    ``data_min``/``data_max`` (or None) and the L∞ radius ``eps`` (or None)."""

    X: Tensor
    labels: Tensor
    data_max: Tensor | None
    data_min: Tensor | None
    eps: Tensor | None


def _tensor(value, what: str, hook: Customized, dtype: torch.dtype | None = None) -> Tensor | None:
    if value is None:
        return None
    try:
        t = torch.as_tensor(value) if dtype is None else torch.as_tensor(value, dtype=dtype)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise SpecificationError(f"{hook}: {what} is not a tensor ({exc})") from None
    return t


def call_data(hook: Customized, spec: dict, base_dir: str | os.PathLike | None) -> CustomizedData:
    """``function(spec, *args, **kwargs)`` → ``X, labels, data_max, data_min, eps[, runnerup[, target]]``
    or a dict with those keys."""
    fn = resolve(hook, base_dir)
    try:
        out = fn(dict(spec), *hook.args, **hook.kwargs)
    except Exception as exc:
        raise SpecificationError(f"{hook} raised {type(exc).__name__}: {exc}") from exc
    if isinstance(out, dict):
        missing = [k for k in ("X", "labels") if k not in out]
        if missing:
            raise SpecificationError(f"{hook} returned a dict without {missing}")
        parts = [out.get(k) for k in ("X", "labels", "data_max", "data_min", "eps")]
    elif isinstance(out, (tuple, list)) and len(out) in (5, 6, 7):
        parts = list(out[:5])
    else:
        got = f"a {len(out)}-tuple" if isinstance(out, (tuple, list)) else f"a {type(out).__name__}"
        raise SpecificationError(f"{hook} returned {got}; a data hook returns (X, labels, data_max, data_min, eps"
                                 "[, runnerup[, target_label]]) or a dict, as in alpha,beta-CROWN")
    X = _tensor(parts[0], "X", hook)
    if X is None or not X.is_floating_point() or X.dim() < 2:
        raise SpecificationError(f"{hook}: X must be a floating-point tensor [n, ...]")
    labels = _tensor(parts[1], "labels", hook)
    if labels is None:
        raise SpecificationError(f"{hook}: labels are missing")
    data_max, data_min, eps = (_tensor(p, w, hook, X.dtype) for p, w in zip(parts[2:], ("data_max", "data_min", "eps")))
    return CustomizedData(X, labels.reshape(-1) if labels.dim() > 1 and labels.shape[-1] == 1 else labels,
                          data_max, data_min, eps)
