"""Locally invariant domains: the primal-dual LID optimiser, its candidates, scale searches and bound plans.

One module per concern: :mod:`~lirpa_lid.lid.config` (hyperparameters), :mod:`~lirpa_lid.lid.problem` (the
Cooper problem), :mod:`~lirpa_lid.lid.solve` (the loop: :func:`compute_lid`, :func:`compute_lid_pool`),
:mod:`~lirpa_lid.lid.candidates` (evaluating snapshots), :mod:`~lirpa_lid.lid.search` (shrinking and growing
them), :mod:`~lirpa_lid.lid.plans` (``"IBP+CROWN"`` bound plans).
"""
from lirpa_lid.lid.candidates import Candidate, LIDResult
from lirpa_lid.lid.config import OBJECTIVES, LIDConfig
from lirpa_lid.lid.plans import GROW, bound_plan, bound_plans, method_label, plan_label, with_config
from lirpa_lid.lid.problem import LIDProblem, ParamDict
from lirpa_lid.lid.search import ScaleSearch, largest_scale, scaled_box, search_scale
from lirpa_lid.lid.solve import HISTORY_KEYS, compute_lid, compute_lid_pool

__all__ = [
    "GROW", "HISTORY_KEYS", "OBJECTIVES", "Candidate", "LIDConfig", "LIDProblem", "LIDResult", "ParamDict",
    "ScaleSearch", "bound_plan", "bound_plans", "compute_lid", "compute_lid_pool", "largest_scale",
    "method_label", "plan_label", "scaled_box", "search_scale", "with_config",
]
