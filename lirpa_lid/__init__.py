"""lirpa_lid: locally invariant domains (certified weight-space regions) for safe model updates.

Built on auto_LiRPA's bound propagation (see ``lirpa_lid.autolirpa``) and on lirpa_lid's own fast
weight-box bounds (``lirpa_lid.native``).
"""
from .bounds import AlphaOptions, BoundBackend, BoundMethod, Bounds, InputBox, bounded_network
from .certificate import (Certificate, Verdict, certify, certify_all, clopper_pearson_lower, recheck,
                          verify_update)
from .config import RunConfig, load_config, parse_config
from .customized import Customized, parse_customized
from .datasets import blobs_tasks, load_mnist, read_idx
from .errors import (BackendError, CertificateError, DomainError, InputError, LirpaLidError, ModelError,
                     SpecificationError)
from .layers import ElementwiseAffine
from .lid import Candidate, LIDConfig, LIDResult, bound_plan, compute_lid, compute_lid_pool, method_label
from .margin import compute_margins, largest_scale, margins_within
from .loading import Problem, build_problem, load_spec
from .native import NativeBoundedNetwork
from .onnx_io import OnnxNetwork, load_onnx, save_onnx
from .orthotope import Orthotope
from .pipeline import Outcome, read_instances, run_problem, write_outcome
from .projection import Projection, ProjectedOptimizer, batch_loss, project, project_
from .specification import BoundQuery, CertifiedAccuracy, Specification, threshold_from_accuracy
from .vnnlib import Disjunct, InputGroup, VnnlibProperty, parse_vnnlib, write_vnnlib
from .vnnlib_spec import VnnlibSpecification
# continual learning with certified domains (Split-MNIST, biases, replay, baselines)
from .baselines import AGEM, EWC, FineTune, IntervalCL, LwF
from .continual import (ContinualResult, TrainConfig, average_accuracy, backward_transfer, forgetting,
                        negative_flip_rate, run_continual)
from .importance import Bias, fisher_diagonal, freeze_mask, si_importance
from .lid_learner import LIDLearner, LIDLearnerConfig, ReplayConfig
from .replay import ReplayBuffer
from .split_mnist import SplitTask, paper_cnn, split_mnist_tasks

__version__ = "0.1.0"

__all__ = [
    "AlphaOptions", "BackendError", "BoundBackend", "BoundMethod", "BoundQuery", "Bounds", "Candidate",
    "Certificate", "CertificateError", "CertifiedAccuracy", "Customized", "Disjunct", "DomainError",
    "ElementwiseAffine", "InputBox", "InputError", "InputGroup", "LIDConfig", "LIDResult", "LirpaLidError",
    "ModelError", "NativeBoundedNetwork", "OnnxNetwork", "Orthotope", "Outcome", "Problem",
    "ProjectedOptimizer", "Projection", "RunConfig", "Specification", "SpecificationError", "Verdict",
    "VnnlibProperty", "VnnlibSpecification", "batch_loss", "blobs_tasks", "bound_plan", "bounded_network",
    "build_problem",
    "certify", "certify_all", "clopper_pearson_lower", "compute_lid", "compute_lid_pool", "compute_margins",
    "largest_scale", "load_config", "load_mnist", "load_onnx", "load_spec", "margins_within", "method_label",
    "parse_config",
    "parse_customized", "parse_vnnlib",
    "project", "project_", "read_idx", "read_instances", "recheck", "run_problem", "save_onnx",
    "threshold_from_accuracy", "verify_update", "write_outcome", "write_vnnlib", "__version__",
]
__all__ += [
    "AGEM", "Bias", "ContinualResult", "EWC", "FineTune", "IntervalCL", "LIDLearner", "LIDLearnerConfig", "LwF",
    "ReplayBuffer", "ReplayConfig", "SplitTask", "TrainConfig", "average_accuracy", "backward_transfer",
    "fisher_diagonal", "forgetting", "freeze_mask", "negative_flip_rate", "paper_cnn", "run_continual",
    "si_importance", "split_mnist_tasks",
]
