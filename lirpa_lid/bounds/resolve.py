"""The one place where a bound backend is chosen by name."""
from __future__ import annotations

from torch import nn

from lirpa_lid.bounds.auto_lirpa.backend import LirpaBoundedNetwork
from lirpa_lid.bounds.core import BoundBackend
from lirpa_lid.bounds.native import NativeBoundedNetwork
from lirpa_lid.errors import InputError


def bounded_network(model: nn.Module, params: list[str] | None = None,
                    backend: str = "native") -> BoundBackend:
    """Prepare ``model`` for bounding over weight domains on the chosen ``backend``.

    ``"native"``: lirpa_lid's own linear bounds (fast, supports Conv2d weight boxes; chains of
    Linear/Conv2d/ReLU/Tanh/Sigmoid/Flatten/element-wise affine layers).
    ``"auto_lirpa"``: auto_LiRPA's ``BoundedModule`` with ``BoundedParameter`` weights (general graphs;
    no Conv2d weight boxes).
    ``params``: the parameters that domains may box — needed by ``"auto_lirpa"`` only, which fixes them
    when it builds its module (default: all); the native backend takes any domain at every call.
    """
    if backend == "native":
        return NativeBoundedNetwork(model)
    if backend in ("auto_lirpa", "auto-lirpa", "autolirpa"):
        return LirpaBoundedNetwork(model, params)
    raise InputError(f"unknown bound backend {backend!r}; choose 'native' or 'auto_lirpa'")


def resolve_backend(model: nn.Module, backend: BoundBackend | str | None = None,
                    params: list[str] | None = None) -> BoundBackend:
    """A prepared backend for ``model``: ``backend`` itself (checked to be prepared for this model), or a
    new one by name (``None``: ``"native"``), boxing ``params``."""
    if backend is None or isinstance(backend, str):
        return bounded_network(model, params, backend or "native")
    if getattr(backend, "model", model) is not model:
        raise InputError("the backend was prepared for a different model than the one given")
    return backend
