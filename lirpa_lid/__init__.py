"""lirpa_lid: locally invariant domains (certified weight-space regions) for safe model updates.

Built on auto_LiRPA's bound propagation (see ``lirpa_lid.autolirpa``) and on lirpa_lid's own fast
weight-box bounds (``lirpa_lid.native``).
"""
from .bounds import AlphaOptions, BoundBackend, BoundMethod, Bounds, InputBox, bounded_network
from .errors import BackendError, DomainError, InputError, LirpaLidError, ModelError
from .layers import ElementwiseAffine
from .native import NativeBoundedNetwork
from .orthotope import Orthotope

__version__ = "0.1.0"

__all__ = [
    "AlphaOptions", "BackendError", "BoundBackend", "BoundMethod", "Bounds", "DomainError",
    "ElementwiseAffine", "InputBox", "InputError", "LirpaLidError", "ModelError", "NativeBoundedNetwork",
    "Orthotope", "bounded_network", "__version__",
]
