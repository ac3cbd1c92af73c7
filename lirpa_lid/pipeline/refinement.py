"""The step before giving up at θ₀: input splitting of a VNN-LIB problem the bound method cannot certify.

:func:`refine_at_theta0` runs :func:`~lirpa_lid.certificate.refine.split_input_boxes` (branch and bound
on each property's input box, with the problem's bound method ``lid.method``) at the model's own weights
and returns a :class:`Refinement`, whose :attr:`~Refinement.verdict` is

* ``verified`` — enough properties were verified (the fraction verified reaches the specification's
  threshold): :attr:`Refinement.spec` is the split specification ("every sub-box certified"), on which
  the LID is grown and certified; certifying it over a weight domain proves the original properties for
  every weight in the domain. It keeps the original files as ``sources`` (recorded in the certificate);
* ``falsified`` — so many properties have a confirmed counterexample (an input of the property's box
  whose float64 output lies in its unsafe set) that the threshold cannot be reached;
* ``undecided`` — neither, within the budget.

Budget. ``lid.split.time_limit`` seconds for all properties of the problem (shared equally, per
property), and for an instances.csv row at most ``lid.split.share`` (default half) of the row's timeout;
:func:`lid_time_left` gives the LID growth what is left of the timeout. ``lid.split.max_boxes`` bounds the
sub-boxes per property.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import torch

from lirpa_lid.certificate.refine import SplitResult, SplitStatus, split_input_boxes
from lirpa_lid.lid import LIDConfig
from lirpa_lid.pipeline.config import SplitSettings
from lirpa_lid.pipeline.problems import Problem, base_value
from lirpa_lid.specification.vnnlib.spec import VnnlibSpecification

#: the least time (seconds) the LID growth gets after splitting, even if the row's timeout is spent
MIN_LID_SECONDS = 0.5

#: the verdicts of :class:`Refinement`
VERDICTS = ("verified", "falsified", "undecided")


@dataclass(frozen=True, eq=False)
class Refinement:
    """What splitting at θ₀ decided: the verdict, the split (per property), the split specification (only
    when ``verified``), its certified value at θ₀ and the seconds splitting took."""

    verdict: str
    split: SplitResult
    spec: VnnlibSpecification | None
    value: float
    seconds: float

    @property
    def leaves(self) -> int:
        """Certified sub-boxes over all properties."""
        return sum(len(s.leaves) for s in self.split.splits)

    @property
    def bounded(self) -> int:
        """Sub-boxes bounded over all properties."""
        return sum(s.bounded for s in self.split.splits)

    def counterexamples(self) -> list[dict]:
        """Each confirmed counterexample: the property's index, the input ``x`` and the float64 output ``y``."""
        return [{"property": i, "x": s.counterexample.x.tolist(), "y": s.counterexample.y.tolist()}
                for i, s in enumerate(self.split.splits) if s.counterexample is not None]

    def describe(self) -> dict:
        """The JSON record of ``results.json``'s ``decided_by``: how the problem was decided at θ₀."""
        return {"how": "split", "verdict": self.verdict, "leaves": self.leaves, "bounded": self.bounded,
                "seconds": round(self.seconds, 3), **self.split.describe()}


def split_seconds(settings: SplitSettings, timeout: float | None) -> float:
    """Seconds splitting may take: ``settings.time_limit``, and at most ``share`` of a row's timeout."""
    return settings.time_limit if timeout is None else min(settings.time_limit, settings.share * timeout)


def refine_at_theta0(problem: Problem) -> Refinement | None:
    """Split the properties of a VNN-LIB ``problem`` (None when it is not one, or ``lid.refine: none``)."""
    settings = problem.refine
    if settings is None or problem.spec.kind != "vnnlib":
        return None
    spec = problem.spec
    start = time.perf_counter()
    split = split_input_boxes(problem.model, spec, None, problem.method, input_shape=problem.input_shape,
                              max_boxes=settings.max_boxes,
                              time_limit=split_seconds(settings, problem.timeout) / len(spec),
                              branching=settings.branching, attack_steps=settings.attack_steps)
    verdict = _verdict(split, spec.threshold)
    refined, value = None, problem.base_value
    if verdict == "verified":
        refined = split.specification(name=f"{spec.name} (input split)", threshold=spec.threshold,
                                      temperature=spec.temperature, sources=spec.sources,
                                      dtype=torch.float64)  # the leaves were bounded on float64 boxes
        value = base_value(problem.model, refined, problem.method, problem.backend)
        if value < refined.threshold:  # the bound at θ₀ disagrees with the split's leaves: never claim it
            verdict, refined = "undecided", None
    return Refinement(verdict, split, refined, value, time.perf_counter() - start)


def _verdict(split: SplitResult, threshold: float) -> str:
    """``verified`` if the fraction verified reaches ``threshold``; ``falsified`` if the properties not
    falsified cannot reach it; else ``undecided``."""
    n = len(split.statuses)
    verified = sum(s is SplitStatus.VERIFIED for s in split.statuses)
    falsified = sum(s is SplitStatus.FALSIFIED for s in split.statuses)
    if verified / n >= threshold:
        return "verified"
    if falsified and (n - falsified) / n < threshold:
        return "falsified"
    return "undecided"


def lid_time_left(config: LIDConfig, timeout: float | None, spent: float) -> LIDConfig:
    """``config`` with the LID growth limited to what is left of a row's ``timeout`` after ``spent``
    seconds of splitting (at least :data:`MIN_LID_SECONDS`); unchanged without a timeout."""
    if timeout is None:
        return config
    left = max(timeout - spent, MIN_LID_SECONDS)
    limit = left if config.time_limit is None else min(config.time_limit, left)
    return dataclasses.replace(config, time_limit=limit)
