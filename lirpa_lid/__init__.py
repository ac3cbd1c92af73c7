"""lirpa_lid: locally invariant domains (certified weight-space regions) for safe model updates.

Built on auto_LiRPA's bound propagation (see ``lirpa_lid.autolirpa``) and on lirpa_lid's own fast
weight-box bounds (``lirpa_lid.native``).
"""
from .bounds import AlphaOptions, BoundBackend, BoundMethod, Bounds, InputBox, bounded_network
from .certificate import (Certificate, Verdict, certify, certify_all, clopper_pearson_lower, recheck,
                          verify_update)
from .datasets import blobs_tasks, load_mnist, read_idx
from .errors import (BackendError, CertificateError, DomainError, InputError, LirpaLidError, ModelError,
                     SpecificationError)
from .layers import ElementwiseAffine
from .lid import Candidate, LIDConfig, LIDResult, compute_lid, compute_lid_pool, compute_margins
from .native import NativeBoundedNetwork
from .onnx_io import OnnxNetwork, load_onnx, save_onnx
from .orthotope import Orthotope
from .projection import Projection, ProjectedOptimizer, batch_loss, project, project_
from .specification import CertifiedAccuracy, threshold_from_accuracy
from .vnnlib import Disjunct, InputGroup, VnnlibProperty, parse_vnnlib, write_vnnlib

__version__ = "0.1.0"

__all__ = [
    "AlphaOptions", "BackendError", "BoundBackend", "BoundMethod", "Bounds", "Candidate", "Certificate",
    "CertificateError", "CertifiedAccuracy", "Disjunct", "DomainError", "ElementwiseAffine", "InputBox",
    "InputError", "InputGroup", "LIDConfig", "LIDResult", "LirpaLidError", "ModelError", "NativeBoundedNetwork",
    "OnnxNetwork", "Orthotope", "ProjectedOptimizer", "Projection", "SpecificationError", "Verdict",
    "VnnlibProperty", "batch_loss", "blobs_tasks", "bounded_network", "certify", "certify_all",
    "clopper_pearson_lower", "compute_lid", "compute_lid_pool", "compute_margins", "load_mnist", "load_onnx",
    "parse_vnnlib", "project", "project_", "read_idx", "recheck", "save_onnx", "threshold_from_accuracy",
    "verify_update", "write_vnnlib", "__version__",
]
