"""Refinement of what bound propagation leaves open: input splitting for VNN-LIB properties.

:func:`split_input_boxes` runs branch and bound on the input box of each VNN-LIB property. Every round
bounds all current sub-boxes of a property in one batched backend call (a
:class:`~lirpa_lid.specification.vnnlib.spec.VnnlibSpecification` with one item per sub-box, so a
sub-box is certified by exactly the rule certify uses), keeps the certified ones as leaves, looks for a
counterexample in the undecided ones (their centres and a few signed-gradient steps on the float64 model,
confirmed by the property's own check :meth:`VnnlibProperty.is_counterexample`), and halves each
undecided sub-box along one input dimension (the widest, or the largest ``|∂margin/∂x_i| · width_i`` at
the centre). It stops when every sub-box is certified (``VERIFIED``), a counterexample is confirmed
(``FALSIFIED``) or the budget (sub-boxes bounded, seconds) runs out (``UNKNOWN``).

Splits are made in float64 at the midpoint ``m``: ``[l, m]`` and ``[m, u]``, so the leaves and the
open sub-boxes of a property always cover its original box exactly (they share only faces). Property
semantics: a property holds iff every disjunct of its unsafe set is empty on its box; disjuncts that
share a box (an :class:`InputGroup`) are split together, each group separately.

The LID constraint. :meth:`SplitResult.specification` returns a specification with one property per
original property whose disjuncts are the original ones restricted to the sub-boxes (every group's
disjuncts repeated on each of its sub-boxes). Since the sub-boxes cover the original box, certifying
that property over a weight domain (every restricted disjunct empty for every weight) proves the
original property for every weight in the domain; for a ``VERIFIED`` split it is certified at the
weights where the split ran. Give it to ``compute_lid`` and ``certify`` as any VNN-LIB specification.

Soundness: ``VERIFIED`` is only reported when every leaf was certified by a sound bound (lower bound of
every disjunct's best row ``> 0``, in float64 with input boxes rounded outwards); a timeout or an
exhausted budget leaves ``UNKNOWN``.
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np
import torch
from torch import Tensor, nn

from lirpa_lid.bounds.core import BoundBackend, BoundMethod
from lirpa_lid.bounds.resolve import bounded_network
from lirpa_lid.domains.orthotope import Orthotope
from lirpa_lid.errors import InputError
from lirpa_lid.margin import compute_margins
from lirpa_lid.progress import progress_bar
from lirpa_lid.specification.vnnlib.parse import Disjunct, InputGroup, VnnlibProperty
from lirpa_lid.specification.vnnlib.spec import VnnlibSpecification

__all__ = ["BRANCHING", "Counterexample", "PropertySplit", "SplitResult", "SplitStatus", "SubBox",
           "split_input_boxes"]

#: the branching rules :func:`split_input_boxes` accepts
BRANCHING = ("widest", "gradient")


class SplitStatus(str, Enum):
    """How input splitting decided a property."""

    VERIFIED = "verified"      # every sub-box certified by bounds
    FALSIFIED = "falsified"    # a confirmed counterexample
    UNKNOWN = "unknown"        # budget (sub-boxes or time) exhausted


@dataclass(frozen=True, eq=False)
class SubBox:
    """A sub-box ``lower ≤ x ≤ upper`` (float64 ``[n_in]``) of input group ``group`` of a property, with
    the certified margin lower bound found for it (> 0: certified; NaN: not bounded yet)."""

    group: int
    lower: np.ndarray
    upper: np.ndarray
    margin: float = math.nan

    def volume(self) -> float:
        """Product of the widths (0 for a degenerate box)."""
        return float(np.prod(self.upper - self.lower))


@dataclass(frozen=True, eq=False)
class Counterexample:
    """An input ``x`` ``[n_in]`` of the original box and its float64 output ``y`` ``[n_out]`` that lie
    in the property's unsafe set (checked by :meth:`VnnlibProperty.is_counterexample`)."""

    x: np.ndarray
    y: np.ndarray


@dataclass(frozen=True, eq=False)
class PropertySplit:
    """The outcome of splitting one property.

    ``leaves`` are certified sub-boxes, ``open`` the undecided ones; together they cover every input
    group's box exactly. ``bounded``: sub-boxes bounded (the budget's unit); ``seconds``: time taken.
    """

    prop: VnnlibProperty
    status: SplitStatus
    leaves: tuple[SubBox, ...]
    open: tuple[SubBox, ...]
    counterexample: Counterexample | None
    bounded: int
    rounds: int
    seconds: float

    def boxes(self) -> tuple[SubBox, ...]:
        """Leaves then open sub-boxes: a partition of the property's input boxes."""
        return self.leaves + self.open

    def refined_property(self) -> VnnlibProperty:
        """The property with every input group's disjuncts restricted to each of its sub-boxes.

        It has the same unsafe set as the original (the sub-boxes cover the boxes), so a certificate
        for it over a weight domain proves the original property over that domain.
        """
        groups = self.prop.input_groups()
        disjuncts = [Disjunct(b.lower, b.upper, self.prop.disjuncts[k].C, self.prop.disjuncts[k].d)
                     for b in self.boxes() for k in groups[b.group].disjunct_indices]
        return VnnlibProperty(self.prop.n_inputs, self.prop.n_outputs, tuple(disjuncts))

    def describe(self) -> dict:
        """A JSON record of how the property was decided."""
        cex = None if self.counterexample is None else {"x": self.counterexample.x.tolist(),
                                                          "y": self.counterexample.y.tolist()}
        return {"status": self.status.value, "leaves": len(self.leaves), "open": len(self.open),
                "bounded": self.bounded, "rounds": self.rounds, "seconds": round(self.seconds, 3),
                "counterexample": cex}


@dataclass(frozen=True, eq=False)
class SplitResult:
    """Per property, the outcome of :func:`split_input_boxes`, with the settings it ran with."""

    splits: tuple[PropertySplit, ...]
    input_shape: tuple[int, ...]
    method: str
    branching: str

    @property
    def statuses(self) -> tuple[SplitStatus, ...]:
        """One status per property."""
        return tuple(s.status for s in self.splits)

    @property
    def verified(self) -> bool:
        """Whether every property was verified."""
        return all(s is SplitStatus.VERIFIED for s in self.statuses)

    def specification(self, name: str = "vnnlib (input split)", **kwargs) -> VnnlibSpecification:
        """The LID constraint "every sub-box certified": one refined property per original property
        (:meth:`PropertySplit.refined_property`). Keyword arguments go to :class:`VnnlibSpecification`
        (``threshold``, ``temperature``, ``sources``, ``dtype``)."""
        return VnnlibSpecification([s.refined_property() for s in self.splits], self.input_shape, name=name,
                                   **kwargs)

    def describe(self) -> dict:
        """A JSON record: settings and each property's outcome."""
        return {"method": self.method, "branching": self.branching,
                "properties": [s.describe() for s in self.splits]}


@dataclass(frozen=True)
class _Budget:
    """Per property: at most ``max_boxes`` sub-boxes bounded and ``time_limit`` seconds (None: no limit)."""

    max_boxes: int
    time_limit: float | None

    def allows(self, bounded: int, more: int, start: float) -> bool:
        """Whether ``more`` sub-boxes may be bounded after ``bounded``, in a search begun at ``start``."""
        if bounded + more > self.max_boxes:
            return False
        return time.perf_counter() < self.deadline(start)

    def deadline(self, start: float) -> float:
        """The ``perf_counter`` time after which nothing more is bounded."""
        return math.inf if self.time_limit is None else start + self.time_limit


# ------------------------------------------------------------------------------- the entry
def split_input_boxes(model: nn.Module, properties: VnnlibProperty | Sequence[VnnlibProperty] | VnnlibSpecification,
                      domain: Orthotope | None = None, method: BoundMethod | str = "CROWN", *,
                      input_shape: Sequence[int] | None = None, backend: BoundBackend | None = None,
                      max_boxes: int = 20_000, time_limit: float | None = 60.0, batch_size: int = 2048,
                      branching: str = "gradient", attack_steps: int = 5,
                      progress: bool = False) -> SplitResult:
    """Branch and bound on the input boxes of VNN-LIB properties (see the module docstring).

    Args:
        model: the network (float64 copies are made; the model is not modified).
        properties: one property, several, or a :class:`VnnlibSpecification` (its ``input_shape`` is used).
        domain: weights to certify over (default: the model's own weights, no weight perturbation).
            Counterexamples are searched at the domain's reference weights.
        method: bound method of every sub-box (``"IBP"``, ``"CROWN"``, ``"alpha-CROWN"``, ...).
        input_shape: the model's input shape without the batch dimension (default ``[n_in]``).
        backend: a bound backend prepared for ``model`` (default: the native one).
        max_boxes: per property, the most sub-boxes bounded (the root counts one per input group).
        time_limit: per property, seconds after which no new round starts (None: no limit).
        batch_size: sub-boxes per backend call.
        branching: ``"widest"`` or ``"gradient"`` (``|∂margin/∂x_i| · width_i`` at the centre).
        attack_steps: signed-gradient steps from each undecided centre (0: centres only).
        progress: show a progress bar over the properties.

    Raises:
        InputError: on an unknown ``branching``, a non-positive budget or wrong input shape.
    """
    props, shape = _properties(properties, input_shape)
    if branching not in BRANCHING:
        raise InputError(f"unknown branching {branching!r}; choose one of {list(BRANCHING)}")
    if max_boxes < 1 or batch_size < 1 or attack_steps < 0:
        raise InputError(f"max_boxes and batch_size must be ≥ 1 and attack_steps ≥ 0, got {max_boxes}, "
                         f"{batch_size}, {attack_steps}")
    method = BoundMethod.parse(method)
    backend = backend or bounded_network(model)
    searcher = _Searcher(_model64(model, domain), shape, attack_steps)
    bounder = _Bounder(backend, domain, method, shape, batch_size)
    budget = _Budget(int(max_boxes), time_limit)
    splits = []
    with progress_bar(total=len(props), desc="input splitting", enabled=progress) as bar:
        for prop in props:
            splits.append(_split_one(prop, bounder, searcher, budget, branching))
            bar.update(1)
    return SplitResult(tuple(splits), shape, method.value, branching)


def _properties(properties, input_shape) -> tuple[list[VnnlibProperty], tuple[int, ...]]:
    if isinstance(properties, VnnlibSpecification):
        props, shape = list(properties.properties), tuple(input_shape or properties.input_shape)
    else:
        props = [properties] if isinstance(properties, VnnlibProperty) else list(properties)
        if not props or not all(isinstance(p, VnnlibProperty) for p in props):
            raise InputError("split_input_boxes takes VnnlibProperty objects or a VnnlibSpecification")
        shape = tuple(input_shape or (props[0].n_inputs,))
    if any(p.n_inputs != math.prod(shape) for p in props):
        raise InputError(f"input_shape {shape} has {math.prod(shape)} elements; the properties have "
                         f"{sorted({p.n_inputs for p in props})} inputs")
    return props, shape


def _model64(model: nn.Module, domain: Orthotope | None) -> nn.Module:
    """A float64 copy of ``model`` in eval mode, with the domain's reference weights if given."""
    m = copy.deepcopy(model).double().eval()
    if domain is not None:
        with torch.no_grad():
            for name, p in m.named_parameters():
                if name in domain.reference:
                    p.copy_(domain.reference[name].to(torch.float64))
    for p in m.parameters():
        p.requires_grad_(False)
    return m


# ------------------------------------------------------------------------------- one property
def _split_one(prop: VnnlibProperty, bounder: _Bounder, searcher: _Searcher, budget: _Budget,
               branching: str) -> PropertySplit:
    """The branch-and-bound loop of one property: bound, keep certified, attack, split."""
    start = time.perf_counter()
    groups = prop.input_groups()
    pending = [SubBox(g, grp.input_lower, grp.input_upper) for g, grp in enumerate(groups)]
    leaves: list[SubBox] = []
    bounded = rounds = 0
    status, cex = SplitStatus.UNKNOWN, None
    while pending and budget.allows(bounded, len(pending), start):
        margins = bounder.certified_margins(prop, groups, pending, budget.deadline(start))
        bounded, rounds = bounded + int(np.isfinite(margins).sum()), rounds + 1
        scored = [SubBox(b.group, b.lower, b.upper, float(m)) for b, m in zip(pending, margins)]
        leaves += [b for b in scored if b.margin > 0]
        pending = [b for b in scored if not b.margin > 0]
        if not pending or np.isnan(margins).any():
            break  # all certified, or the time ran out within the round (unbounded boxes stay open)
        cex, grads = searcher.search(prop, groups, pending)
        if cex is not None:
            status = SplitStatus.FALSIFIED
            break
        children = [_halve(b, g, branching) for b, g in zip(pending, grads)]
        if any(c is None for c in children):
            break  # a sub-box that cannot be halved further: undecided
        pending = [c for pair in children for c in pair]
    if not pending:
        status = SplitStatus.VERIFIED
    return PropertySplit(prop, status, tuple(leaves), tuple(pending), cex, bounded, rounds,
                         time.perf_counter() - start)


def _halve(box: SubBox, grad: np.ndarray, branching: str) -> tuple[SubBox, SubBox] | None:
    """The two halves of ``box`` along the chosen dimension, or None when no dimension can be halved."""
    width = box.upper - box.lower
    score = width.copy() if branching == "widest" else np.abs(grad) * width
    if not (score > 0).any():
        score = width.copy()
    for i in np.argsort(-score, kind="stable"):
        mid = box.lower[i] + width[i] / 2
        if box.lower[i] < mid < box.upper[i]:
            left_up, right_lo = box.upper.copy(), box.lower.copy()
            left_up[i], right_lo[i] = mid, mid
            return SubBox(box.group, box.lower, left_up), SubBox(box.group, right_lo, box.upper)
    return None


# ------------------------------------------------------------------------------- bounding
class _Bounder:
    """Certified margins of sub-boxes: one VnnlibSpecification item per sub-box, bounded in batches."""

    def __init__(self, backend: BoundBackend, domain: Orthotope | None, method: BoundMethod,
                 shape: tuple[int, ...], batch_size: int):
        self.backend, self.domain, self.method = backend, domain, method
        self.shape, self.batch_size = shape, batch_size

    def certified_margins(self, prop: VnnlibProperty, groups: Sequence[InputGroup],
                          boxes: Sequence[SubBox], deadline: float = math.inf) -> np.ndarray:
        """Per sub-box, min over its group's disjuncts of max over rows of the margin lower bounds ``[B]``;
        NaN for the sub-boxes of batches not started before ``deadline`` (``perf_counter`` time)."""
        out = []
        for start in range(0, len(boxes), self.batch_size):
            if start and time.perf_counter() >= deadline:
                out.append(np.full(len(boxes) - start, np.nan))
                break
            part = boxes[start:start + self.batch_size]
            items = [VnnlibProperty(prop.n_inputs, prop.n_outputs, tuple(
                Disjunct(b.lower, b.upper, prop.disjuncts[k].C, prop.disjuncts[k].d)
                for k in groups[b.group].disjunct_indices)) for b in part]
            spec = VnnlibSpecification(items, self.shape, name="sub-boxes", dtype=torch.float64)
            with torch.no_grad():
                margins = compute_margins(self.backend, spec, self.domain, self.method, len(part), torch.float64)
            out.append(spec.certified_margins(margins).cpu().numpy())
        return np.concatenate(out)


# ------------------------------------------------------------------------------- counterexamples
class _Searcher:
    """Counterexample search on the float64 model: centres, then signed-gradient steps inside each box."""

    def __init__(self, model64: nn.Module, shape: tuple[int, ...], steps: int):
        self.model, self.shape, self.steps = model64, shape, steps

    def search(self, prop: VnnlibProperty, groups: Sequence[InputGroup],
               boxes: Sequence[SubBox]) -> tuple[Counterexample | None, list[np.ndarray]]:
        """A confirmed counterexample (or None), and the margin's gradient at each box's centre."""
        lo = torch.from_numpy(np.stack([b.lower for b in boxes]))
        up = torch.from_numpy(np.stack([b.upper for b in boxes]))
        group = torch.tensor([b.group for b in boxes])
        x = (lo + up) / 2
        grads = None
        for step in range(self.steps + 1):
            m, g, y = self._margin_and_grad(prop, groups, group, x)
            grads = g if grads is None else grads
            cex = _confirm(prop, x, y, m)
            if cex is not None or step == self.steps:
                return cex, list(grads.numpy())
            x = torch.minimum(torch.maximum(x - (up - lo) / 4 * g.sign(), lo), up)
        return None, list(grads.numpy())

    def _margin_and_grad(self, prop, groups, group, x):
        """Concrete margins ``[B]`` (min over the group's disjuncts of max over rows), their gradient
        ``[B, n_in]`` and the outputs ``[B, n_out]``."""
        x = x.clone().requires_grad_(True)
        y = self.model(x.reshape(-1, *self.shape)).reshape(x.shape[0], -1)
        m = torch.full((x.shape[0],), math.inf, dtype=torch.float64)
        for g, grp in enumerate(groups):
            rows = group == g
            if not rows.any():
                continue
            for k in grp.disjunct_indices:
                dj = prop.disjuncts[k]
                mk = (y[rows] @ torch.tensor(dj.C).T - torch.tensor(dj.d)).amax(dim=1) \
                    if dj.n_rows else torch.full((int(rows.sum()),), -math.inf, dtype=torch.float64)
                m = m.masked_scatter(rows, torch.minimum(m[rows], mk))
        grad = torch.autograd.grad(m.clamp(min=-1e30).sum(), x)[0]
        return m.detach(), grad, y.detach()


def _confirm(prop: VnnlibProperty, x: Tensor, y: Tensor, m: Tensor) -> Counterexample | None:
    """The first candidate that the property's own check calls a counterexample (its margin ≤ 0)."""
    for i in torch.nonzero(m <= 0).flatten().tolist():
        if bool(prop.is_counterexample(x[i].numpy(), y[i].numpy())):
            return Counterexample(x[i].numpy().copy(), y[i].numpy().copy())
    return None
