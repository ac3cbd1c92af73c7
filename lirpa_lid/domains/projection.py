"""Projection of weight updates into candidate domains (the paper's safe update mechanism).

Any update — any optimiser, any data — is made safe by projecting the new weights onto one of the
candidate LIDs; the certificate of that candidate then applies. If the weights already lie in some
candidate, nothing moves. Strategies for choosing the candidate otherwise:

* ``closest``: smallest Euclidean distance;
* ``largest``: largest mean width;
* ``best_loss``: project onto each, keep the one with the lowest loss (``loss_fn``);
* ``sample_closest``: sample with probabilities ``softmax(1/dist)``;
* ``sample_largest_closest``: sample with probabilities ``softmax(width/dist)``.

Membership is decided against the box's exact float64 bounds and :meth:`Orthotope.project` rounds
the clamp bounds inwards, so a projected update is always inside in float64 as well.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from lirpa_lid.digest import named_parameter_values
from lirpa_lid.domains.base import WeightDomain, as_domain
from lirpa_lid.errors import DomainError, InputError

ParamDict = dict[str, Tensor]
STRATEGIES = ("closest", "largest", "best_loss", "sample_closest", "sample_largest_closest")
LossFn = Callable[[ParamDict], Tensor | float]


@dataclass(frozen=True)
class Projection:
    """Result of :func:`project`: the projected parameters (all of them, by name), the index of the
    chosen candidate, and whether anything moved."""

    params: ParamDict
    index: int
    moved: bool
    distance: float


def _domain(candidate) -> WeightDomain:
    return as_domain(candidate, "a candidate")


def _sample(weights: Tensor, generator: torch.Generator | None) -> int:
    probs = torch.softmax(weights, dim=0)
    return int(torch.multinomial(probs, 1, generator=generator))


def project(params_or_model: nn.Module | Mapping[str, Tensor], candidates: Sequence,
            strategy: str = "closest", *, loss_fn: LossFn | None = None,
            generator: torch.Generator | None = None, prefer: int | None = None) -> Projection:
    """Project weights onto one of the candidate domains (see module docstring).

    Args:
        params_or_model: a module or a name → tensor mapping (not modified).
        candidates: :class:`~lirpa_lid.lid.solve.Candidate` objects or :class:`Orthotope` s (same parameters).
        strategy: one of ``STRATEGIES``.
        loss_fn: for ``best_loss``: parameters (name → tensor) → loss (lower is better); see
            :func:`batch_loss`.
        generator: randomness of the ``sample_*`` strategies.
        prefer: index of the candidate currently in use; if the weights lie in it, it is kept.

    Returns:
        a :class:`Projection` (``moved`` False and parameters unchanged when already inside).
    """
    if strategy not in STRATEGIES:
        raise InputError(f"unknown projection strategy {strategy!r}; choose one of {STRATEGIES}")
    domains = [_domain(c) for c in candidates]
    if not domains:
        raise InputError("no candidate domains to project onto")
    values = named_parameter_values(params_or_model)
    for n in domains[0].names:
        if n in values and not torch.isfinite(values[n]).all():
            raise InputError(f"parameter {n!r} of the update contains NaN or inf")
    order = ([prefer] if prefer is not None and 0 <= prefer < len(domains) else []) + list(range(len(domains)))
    for i in order:
        if domains[i].contains(values):
            return Projection({n: t.detach().clone() for n, t in values.items()}, i, False, 0.0)

    dists = torch.tensor([d.distance(values) for d in domains], dtype=torch.float64)
    widths = torch.tensor([float(d.mean_width()) for d in domains], dtype=torch.float64)
    if strategy == "closest":
        index = int(torch.argmin(dists))
    elif strategy == "largest":
        index = int(torch.argmax(widths))
    elif strategy == "sample_closest":
        index = _sample(1.0 / dists, generator)
    elif strategy == "sample_largest_closest":
        index = _sample(widths / dists, generator)
    else:
        if loss_fn is None:
            raise InputError("strategy 'best_loss' needs loss_fn (e.g. lirpa_lid.domains.projection.batch_loss(...))")
        best = None
        for i, d in enumerate(domains):
            with torch.no_grad():
                loss = float(loss_fn(d.project(values)))
            if math.isnan(loss):
                raise InputError(f"loss_fn returned NaN for candidate {i}")
            if best is None or loss < best[0]:
                best = (loss, i)
        index = best[1]
    return Projection(domains[index].project(values), index, True, float(dists[index]))


def batch_loss(model: nn.Module, x: Tensor, y: Tensor,
               criterion: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy) -> LossFn:
    """A ``loss_fn`` for ``best_loss``: ``criterion(model(x; params), y)`` via ``functional_call``."""
    def loss(params: ParamDict) -> Tensor:
        return criterion(functional_call(model, params, (x,)), y)
    return loss


@torch.no_grad()
def project_(model: nn.Module, candidates: Sequence, strategy: str = "closest", **kwargs) -> Projection:
    """:func:`project` applied to ``model`` in place; returns the :class:`Projection`."""
    result = project(model, candidates, strategy, **kwargs)
    if result.moved:
        params = dict(model.named_parameters())
        for n in _domain(candidates[result.index]).names:
            params[n].copy_(result.params[n])
    return result


class ProjectedOptimizer:
    """Wraps a torch optimiser: after every ``step()`` the model is projected in place onto the
    candidate domains (projected gradient descent with a LID).

    ``current`` is the index of the candidate last projected onto (or containing the weights): its
    certificate is the one that applies to the model. For ``best_loss`` pass the current batch to
    ``step(batch=(x, y))`` (the loss is ``criterion``, cross-entropy by default).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, model: nn.Module, candidates: Sequence,
                 strategy: str = "closest", criterion: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
                 generator: torch.Generator | None = None):
        if strategy not in STRATEGIES:
            raise InputError(f"unknown projection strategy {strategy!r}; choose one of {STRATEGIES}")
        if not candidates:
            raise InputError("ProjectedOptimizer needs at least one candidate domain")
        self.optimizer, self.model, self.candidates = optimizer, model, list(candidates)
        self.strategy, self.criterion, self.generator = strategy, criterion, generator
        self.current: int | None = None
        self.projections = 0
        names = set(dict(model.named_parameters()))
        for i, c in enumerate(self.candidates):
            missing = sorted(set(_domain(c).names) - names)
            if missing:
                raise DomainError(f"candidate {i} covers parameter(s) {missing} that the model does not have")

    @property
    def param_groups(self):
        """The wrapped optimiser's parameter groups (so learning rates can be read and set through the wrapper)."""
        return self.optimizer.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forward to the wrapped optimiser's ``zero_grad``."""
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def project_(self, batch: tuple[Tensor, Tensor] | None = None) -> Projection:
        """Project the model in place onto a candidate, preferring the current one; updates ``current``.

        ``batch`` ``(x, y)`` is required for ``best_loss`` (it scores each candidate's projection).
        """
        loss_fn = None
        if self.strategy == "best_loss":
            if batch is None:
                raise InputError("strategy 'best_loss' needs the current batch: step(batch=(x, y))")
            loss_fn = batch_loss(self.model, batch[0], batch[1], self.criterion)
        result = project_(self.model, self.candidates, self.strategy, loss_fn=loss_fn,
                          generator=self.generator, prefer=self.current)
        self.current = result.index
        self.projections += int(result.moved)
        return result

    def step(self, closure: Callable[[], Tensor] | None = None, *,
             batch: tuple[Tensor, Tensor] | None = None) -> Tensor | None:
        """The wrapped optimiser's ``step(closure)``, then :meth:`project_`; returns the closure's loss."""
        loss = self.optimizer.step(closure)
        self.project_(batch)
        return loss

    @property
    def candidate(self):
        """The candidate whose certificate applies now (None before the first step)."""
        return None if self.current is None else self.candidates[self.current]
