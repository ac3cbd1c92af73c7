"""How the LID optimiser scales its snapshots: shrink one that misses a threshold, grow one that meets them.

Both are a search for the largest factor ``s`` such that the snapshot's offsets scaled by ``s`` about θ₀
still meet every threshold (:func:`~lirpa_lid.margin.largest_scale`, re-exported here with its settings
:class:`~lirpa_lid.margin.ScaleSearch` and :func:`~lirpa_lid.margin.scaled_box`):

* **shrink** (``s`` in ``(0, 1]``): a snapshot below a threshold; the margins it was rejected with bound
  every smaller box, so the search starts from them (no first probe);
* **grow** (``s`` in ``[1, grow]``, ``LIDConfig.grow`` > 1): a snapshot that meets its thresholds, enlarged
  inside ``limit`` (the largest box the LID may take: ``max_width``, the outer box, ``free``).

With float64 evaluation the searches run in float32 (:func:`search_dtype`) and the factor found is bounded
once in float64, so the values reported are float64 ones.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lirpa_lid.bounds.core import BoundBackend
from lirpa_lid.domains.orthotope import Orthotope
from lirpa_lid.lid.config import LIDConfig
from lirpa_lid.margin import Found, ScaleSearch, largest_scale, scaled_box, search_scale
from lirpa_lid.specification.base import Specification

__all__ = ["Found", "ScaleSearch", "grow_snapshot", "largest_scale", "scaled_box", "search_dtype", "search_scale",
           "shrink_snapshot"]


def search_dtype(dtype: torch.dtype | None) -> torch.dtype | None:
    """Arithmetic of the factor searches when candidates are checked in float64: float32 (convolutions in
    float64 have no fast CPU kernel; the factor found is bounded in float64); otherwise ``None`` (the
    evaluation's own)."""
    return torch.float32 if dtype == torch.float64 else None


def shrink_snapshot(backend: BoundBackend, specs: Sequence[Specification], domain: Orthotope,
                    margins: Sequence[Tensor], config: LIDConfig, dtype: torch.dtype | None) -> Found | None:
    """Largest factor in ``(0, 1]`` (and the hard values there) at which ``domain`` meets every threshold,
    after ``config.shrink_steps`` bisection steps; ``margins`` are the spec's margins ``[Q, R]`` over
    ``domain`` itself (bounded by ``config.final_method`` in ``dtype``). ``None``: no tested factor."""
    settings = ScaleSearch(steps=config.shrink_steps, batch_size=config.batch_size, dtype=dtype,
                           search_dtype=search_dtype(dtype))
    return search_scale(backend, specs, domain, config.final_method, settings, known=margins)


def grow_snapshot(backend: BoundBackend, specs: Sequence[Specification], domain: Orthotope, config: LIDConfig,
                  dtype: torch.dtype | None, limit: Orthotope) -> Found | None:
    """Largest factor in ``[1, config.grow]`` (and the hard values there) at which ``domain``, clipped to
    ``limit``, meets every threshold; ``domain`` meets them at factor 1. ``None``: no tested factor
    qualified (the snapshot stays as it is)."""
    settings = ScaleSearch(steps=config.shrink_steps, high=config.grow, low=1.0, batch_size=config.batch_size,
                           dtype=dtype, within=limit, search_dtype=search_dtype(dtype))
    return search_scale(backend, specs, domain, config.final_method, settings)
