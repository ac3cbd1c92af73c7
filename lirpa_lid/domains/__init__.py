"""Weight domains: regions of weight space around θ₀ (orthotopes), and projection onto them."""
from lirpa_lid.domains.orthotope import Orthotope
from lirpa_lid.domains.projection import Projection, ProjectedOptimizer, batch_loss, project, project_

__all__ = ["Orthotope", "ProjectedOptimizer", "Projection", "batch_loss", "project", "project_"]
