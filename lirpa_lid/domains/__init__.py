"""Weight domains: regions of weight space around θ₀ (orthotopes), and projection onto them."""
from lirpa_lid.domains.base import WeightDomain, as_domain, domain_kinds, load_domain, register_domain_kind, save_domain
from lirpa_lid.domains.orthotope import Orthotope
from lirpa_lid.domains.projection import ProjectedOptimizer, Projection, batch_loss, project, project_

__all__ = ["Orthotope", "ProjectedOptimizer", "Projection", "WeightDomain", "as_domain", "batch_loss", "domain_kinds",
           "load_domain", "project", "project_", "register_domain_kind", "save_domain"]
