"""What the LID optimiser returns: candidate domains, each checked on the whole optimisation set.

The growth loop leaves snapshots (boxes along its path). :func:`evaluate_snapshots` bounds each one on
every item of every specification (``LIDConfig.final_method``, in ``LIDConfig.eval_dtype`` when the backend
follows the inputs' dtype) and turns it into a :class:`Candidate`: kept (and, with ``grow`` > 1, enlarged)
when it meets every threshold, otherwise rejected and replaced by its largest shrunk version that does
(:mod:`lirpa_lid.lid.search`). So every candidate reported meets its thresholds on the optimisation set.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from lirpa_lid.bounds.core import BoundBackend
from lirpa_lid.domains.orthotope import Orthotope
from lirpa_lid.lid.config import LIDConfig
from lirpa_lid.lid.search import grow_snapshot, scaled_box, shrink_snapshot
from lirpa_lid.margin import margins_within
from lirpa_lid.specification.base import Specification


@dataclass(frozen=True)
class Candidate:
    """One candidate domain (a detached snapshot along the growth path).

    ``hard_values`` holds, per specification, the hard certified value of the domain on the whole
    optimisation set (evaluated in ``LIDConfig.eval_dtype``); ``thresholds`` the τ it was grown for.
    ``scale`` < 1 means the snapshot was shrunk towards θ₀ to meet the thresholds, > 1 that it was
    enlarged (``LIDConfig.grow``); ``method`` is the name of the bound method that certified it (a string,
    as certificates record it: ``"CROWN"``).
    """

    domain: Orthotope
    iteration: int
    hard_values: tuple[float, ...]
    thresholds: tuple[float, ...]
    spec_names: tuple[str, ...]
    method: str
    mean_width: float
    log_volume: float
    scale: float = 1.0
    label: str = ""

    @property
    def satisfied(self) -> bool:
        """Whether every hard value meets its threshold."""
        return all(v >= t for v, t in zip(self.hard_values, self.thresholds))

    def __repr__(self) -> str:
        vals = ", ".join(f"{n}={v:.3f}" for n, v in zip(self.spec_names, self.hard_values))
        return (f"Candidate(iter {self.iteration}, mean width {self.mean_width:.4g}, {vals}"
                f"{'' if self.scale == 1 else f', scaled x{self.scale:.3f}'})")


@dataclass
class LIDResult:
    """Output of :func:`~lirpa_lid.lid.solve.compute_lid`: candidates (each meets every threshold on the
    optimisation set), snapshots that could not be made to (``rejected``), per-iteration ``history``
    (keys: :data:`~lirpa_lid.lid.solve.HISTORY_KEYS`, plus ``stopped_at`` after a time limit). A pooled
    result (:func:`~lirpa_lid.lid.solve.compute_lid_pool`) holds its ``runs``, one config each."""

    candidates: list[Candidate]
    rejected: list[Candidate]
    history: dict[str, list]
    spec_names: list[str]
    thresholds: list[float]
    config: LIDConfig | list[LIDConfig]
    seconds: float
    runs: list[LIDResult] = field(default_factory=list)

    def largest(self) -> Candidate:
        """The candidate with the largest mean width."""
        return max(self.candidates, key=lambda c: c.mean_width)

    @property
    def domains(self) -> list[Orthotope]:
        """The candidates' domains, in order."""
        return [c.domain for c in self.candidates]


def evaluation_dtype(backend: BoundBackend, config: LIDConfig) -> torch.dtype | None:
    """Arithmetic of the final evaluation: ``config.eval_dtype`` when the backend follows the inputs'
    dtype (float64 evaluation needs that), else ``None`` (the backend's own)."""
    return config.eval_dtype if backend.follows_input_dtype else None


def make_candidate(domain: Orthotope, iteration: int, values: tuple[float, ...], specs: Sequence[Specification],
                   config: LIDConfig, scale: float, label: str) -> Candidate:
    """A :class:`Candidate` for ``domain`` with its hard ``values`` (certified by ``config.final_method``)."""
    logvol = float(domain.log_volume())
    return Candidate(domain=domain, iteration=iteration, hard_values=values,
                     thresholds=tuple(s.threshold for s in specs), spec_names=tuple(s.name for s in specs),
                     method=config.final_method.value, mean_width=float(domain.mean_width()),
                     log_volume=logvol, scale=scale, label=label)


def evaluate_snapshots(backend: BoundBackend, specs: Sequence[Specification],
                       snapshots: Sequence[tuple[int, Orthotope]], config: LIDConfig, dtype: torch.dtype | None,
                       label: str, limit: Orthotope) -> tuple[list[Candidate], list[Candidate]]:
    """``(candidates, rejected)`` from ``(iteration, box)`` snapshots: hard values of every snapshot on the
    whole optimisation set (bounded by ``config.final_method`` in ``dtype``); a snapshot below a threshold
    is rejected and replaced by its largest shrunk version that meets every threshold (if any); with
    ``config.grow`` > 1 one that meets them is enlarged (inside ``limit``, the largest box the LID may
    take) as far as they keep holding."""
    candidates, rejected = [], []
    for iteration, dom in snapshots:
        margins = [margins_within(backend, s, dom, config.final_method, None, config.batch_size, dtype)
                   for s in specs]
        cand = make_candidate(dom, iteration, tuple(float(s.hard_value(m)) for s, m in zip(specs, margins)),
                              specs, config, 1.0, label)
        if cand.satisfied:
            candidates.append(_grown(backend, specs, cand, config, dtype, limit))
            continue
        rejected.append(cand)
        small = _shrunk(backend, specs, cand, margins, config, dtype)
        if small is not None:
            candidates.append(small)
    return candidates, rejected


def _grown(backend: BoundBackend, specs: Sequence[Specification], cand: Candidate, config: LIDConfig,
           dtype: torch.dtype | None, limit: Orthotope) -> Candidate:
    """``cand`` enlarged as far as its thresholds hold (``config.grow`` > 1), else ``cand`` itself."""
    dom = cand.domain
    if not (config.grow > 1 and float(dom.mean_width()) > 0):
        return cand
    grown = grow_snapshot(backend, specs, dom, config, dtype, limit)
    if grown is None:
        return cand
    return make_candidate(scaled_box(dom, grown[0], limit), cand.iteration, grown[1], specs, config, grown[0],
                          cand.label)


def _shrunk(backend: BoundBackend, specs: Sequence[Specification], cand: Candidate, margins: list[Tensor],
            config: LIDConfig, dtype: torch.dtype | None) -> Candidate | None:
    """The largest shrunk version of a rejected ``cand`` that meets every threshold and still has width."""
    shrunk = shrink_snapshot(backend, specs, cand.domain, margins, config, dtype)
    if shrunk is None or not shrunk[0] > 0:
        return None
    small = cand.domain.scaled(shrunk[0])
    if not float(small.mean_width()) > 0:
        return None
    return make_candidate(small, cand.iteration, shrunk[1], specs, config, shrunk[0], cand.label)
