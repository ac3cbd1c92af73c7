"""lirpa_lid: locally invariant domains (certified weight-space regions) for safe model updates.

Built on auto_LiRPA's bound propagation (see ``lirpa_lid.autolirpa``) and on lirpa_lid's own fast
weight-box bounds (``lirpa_lid.native``).
"""
from .bounds import AlphaOptions, BoundBackend, BoundMethod, Bounds, InputBox, bounded_network
from .errors import (BackendError, CertificateError, DomainError, InputError, LirpaLidError, ModelError,
                     SpecificationError)
from .layers import ElementwiseAffine
from .native import NativeBoundedNetwork
from .onnx_io import OnnxNetwork, load_onnx, save_onnx
from .orthotope import Orthotope
from .vnnlib import Disjunct, InputGroup, VnnlibProperty, parse_vnnlib, write_vnnlib

__version__ = "0.1.0"

__all__ = [
    "AlphaOptions", "BackendError", "BoundBackend", "BoundMethod", "Bounds", "CertificateError", "Disjunct",
    "DomainError", "ElementwiseAffine", "InputBox", "InputError", "InputGroup", "LirpaLidError", "ModelError",
    "NativeBoundedNetwork", "OnnxNetwork", "Orthotope", "SpecificationError", "VnnlibProperty",
    "bounded_network", "load_onnx", "parse_vnnlib", "save_onnx", "write_vnnlib", "__version__",
]
