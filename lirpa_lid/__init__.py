"""lirpa_lid: locally invariant domains (certified weight-space regions) for safe model updates.

Built on auto_LiRPA's bound propagation (``lirpa_lid.bounds.auto_lirpa``) and on lirpa_lid's own fast
weight-box bounds (``lirpa_lid.bounds.native``). One sub-package per concept; the README's "Layout"
section says what lives where and which layer may import which.
"""
from lirpa_lid.bounds import AlphaOptions, BoundBackend, BoundMethod, Bounds, InputBox, bounded_network
from lirpa_lid.bounds.exact import ExactOptions, ExactResult, ExactStatus, exact_margin, exact_margins, reduce_to_tail
from lirpa_lid.bounds.native import NativeBoundedNetwork
from lirpa_lid.certificate import (Certificate, SplitResult, SplitStatus, Verdict, certify, certify_all,
                                   clopper_pearson_lower, recheck, split_input_boxes, verify_update)
from lirpa_lid.datasets import blobs_tasks, load_mnist, read_idx
from lirpa_lid.editing import EditProperty, EditResult, EditStatus, edit
from lirpa_lid.domains import Orthotope, ProjectedOptimizer, Projection, batch_loss, project, project_
from lirpa_lid.errors import (BackendError, CertificateError, DomainError, InputError, LirpaLidError, ModelError,
                              SpecificationError)
from lirpa_lid.lid import (Candidate, LIDConfig, LIDResult, bound_plan, compute_lid, compute_lid_pool,
                           method_label)
from lirpa_lid.margin import compute_margins, largest_scale, margins_within
from lirpa_lid.models import ElementwiseAffine, OnnxNetwork, load_onnx, save_onnx
from lirpa_lid.pipeline import (Customized, Outcome, OutcomeStatus, Problem, RunConfig, build_problem, load_config,
                                load_spec, parse_config, parse_customized, read_instances, run_problem,
                                write_outcome)
from lirpa_lid.specification import (BoundQuery, CertifiedAccuracy, Disjunct, Guarantee, InputGroup, Specification,
                                     VnnlibProperty, VnnlibSpecification, parse_vnnlib, threshold_from_accuracy,
                                     write_vnnlib)
from lirpa_lid.version import __version__

# continual learning with certified domains (Split-MNIST, freezing policies, replay, baselines)
from lirpa_lid.continual import (AGEM, EWC, Bias, ContinualResult, FineTune, FreezingPolicy, IntervalCL, LIDLearner,
                                 LIDLearnerConfig, LwF, ReplayBuffer, ReplayConfig, SplitTask, TrainConfig,
                                 average_accuracy, backward_transfer, fisher_diagonal, forgetting, freeze_mask,
                                 negative_flip_rate, paper_cnn, run_continual, si_importance, split_mnist_tasks)

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
    "Guarantee", "OutcomeStatus", "ExactOptions", "ExactResult", "ExactStatus", "exact_margin", "exact_margins",
    "reduce_to_tail", "SplitResult", "SplitStatus", "split_input_boxes", "EditProperty", "EditResult", "EditStatus",
    "edit",
]
__all__ += [
    "AGEM", "Bias", "FreezingPolicy", "ContinualResult", "EWC", "FineTune", "IntervalCL", "LIDLearner", "LIDLearnerConfig", "LwF",
    "ReplayBuffer", "ReplayConfig", "SplitTask", "TrainConfig", "average_accuracy", "backward_transfer",
    "fisher_diagonal", "forgetting", "freeze_mask", "negative_flip_rate", "paper_cnn", "run_continual",
    "si_importance", "split_mnist_tasks",
]
