"""Locally invariant domains: the primal-dual LID optimiser, its candidates and bound plans."""
from lirpa_lid.lid.solve import Candidate, LIDConfig, LIDResult, bound_plan, compute_lid, compute_lid_pool, method_label

__all__ = [
    "Candidate", "LIDConfig", "LIDResult", "bound_plan", "compute_lid", "compute_lid_pool", "method_label",
]
