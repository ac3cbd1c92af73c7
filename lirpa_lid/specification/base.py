"""Specifications: what a locally invariant domain must preserve, computed from margin bounds.

A specification never propagates bounds itself. It supplies the specification matrix ``C`` (one row
per margin) and turns lower bounds of the margins ``C·f(x; θ)`` — valid for every θ in a weight
domain, computed by a bound backend — into values:

* **margin** ``m = C·f(x; θ)``; sign convention: ``m > 0`` means the property holds;
* **hard value**: the fraction of reference items whose margins are all certified positive
  (certified accuracy), or its class-balanced version;
* **soft value**: a differentiable surrogate of the hard value, used as the LID constraint;
* **defect** ``threshold − value`` (Cooper's convention: positive means violated).

Several specifications (one per earlier task) are handled by passing a list to the optimiser; each
has its own threshold.

Kinds (every one usable as a LID constraint, every one bounded over a weight box):

* :class:`CertifiedAccuracy` without ``epsilon`` — certified (balanced) accuracy on labelled items;
* :class:`CertifiedAccuracy` with ``epsilon`` — local robustness: an L∞ ball of radius ε around each
  item (clipped to ``[data_min, data_max]``, α,β-CROWN's ``lp`` specification) must keep the label,
  under every weight of the domain (joint input + weight perturbation);
* :class:`~lirpa_lid.specification.vnnlib.spec.VnnlibSpecification` — VNN-LIB properties (output polytopes over
  input boxes), each one item that must hold for every input of its box and every weight.

What they share is the :class:`Specification` protocol: a spec says *what to bound* (a
:class:`BoundQuery`: inputs, optional input boxes, spec matrix ``C`` and offsets ``d``) and turns the
lower bounds of ``C·f − d`` into hard and soft values. ``compute_margins`` (in ``lirpa_lid.lid``) asks
the spec for its query and a bound backend for the bounds; nothing else needs to know the kind.
"""
from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from lirpa_lid.bounds.core import InputBox
from lirpa_lid.errors import InputError, SpecificationError
from lirpa_lid.rounding import round_directed


class Guarantee(enum.StrEnum):
    """The kind of statement a certificate makes; the value is what the certificate file records.

    ``FINITE_SAMPLE``: the items are a sample of a distribution, the bound holds with probability
    ≥ 1 − δ over that sample (Clopper–Pearson). ``DETERMINISTIC``: the items are the whole statement
    (VNN-LIB properties), the bound is the certified fraction ``k/n`` and δ is 0.
    """

    FINITE_SAMPLE = "finite-sample"
    DETERMINISTIC = "deterministic"

    @classmethod
    def parse(cls, value: str | Guarantee) -> Guarantee:
        """The guarantee named ``value`` (a member or its recorded string); InputError lists the choices."""
        if isinstance(value, Guarantee):
            return value
        try:
            return cls(value)
        except (ValueError, TypeError):
            raise InputError(f"unknown guarantee {value!r}; choose one of {[g.value for g in cls]}") from None


GUARANTEES = tuple(g.value for g in Guarantee)


class SpecificationKind(enum.StrEnum):
    """What a specification states; the value is what certificates record as ``spec.kind``."""

    CERTIFIED_ACCURACY = "certified_accuracy"
    LOCAL_ROBUSTNESS = "local_robustness"
    VNNLIB = "vnnlib"


def threshold_from_accuracy(accuracy: float, increment: float | None = None,
                            limit: float | None = None) -> float:
    """The paper's threshold rule ``τ = min(max(a − increment, a/2), limit)``.

    Only the given parts apply: without ``increment`` τ starts from ``a``; without ``limit`` there is
    no cap. ``accuracy`` is the nominal (width-0) accuracy on the reference set.
    """
    for label, value in (("accuracy", accuracy), ("limit", limit)):
        if value is not None and not (0.0 <= float(value) <= 1.0):
            raise SpecificationError(f"{label} must lie in [0, 1], got {value}")
    if increment is not None and not (0.0 <= float(increment) <= 1.0):
        raise SpecificationError(f"increment must lie in [0, 1], got {increment}")
    tau = float(accuracy)
    if increment is not None:
        tau = max(tau - float(increment), tau / 2)
    if limit is not None:
        tau = min(tau, float(limit))
    return tau


def round_outward(t: Tensor, dtype: torch.dtype, direction: int) -> Tensor:
    """``t`` in ``dtype``, rounded towards −inf (``direction`` −1) or +inf (+1) where inexact, so that a
    box converted to a narrower dtype still contains the original one (and an offset ``d`` converted
    upwards never enlarges a margin)."""
    return round_directed(t, dtype, direction)


@dataclass(frozen=True)
class BoundQuery:
    """What a specification asks a bound backend to bound: ``Q`` query rows.

    Shapes: ``x`` ``[Q, *input_shape]`` (the points, or the centres of the input boxes);
    ``lower``/``upper`` ``[Q, *input_shape]`` input boxes, or ``None`` for point inputs; ``C``
    ``[Q, R, K]``; ``d`` ``[Q, R]``. The *margins* of the query are lower bounds of ``C·f(x'; θ) − d``
    over every θ in the weight domain and every x' in the box: ``[Q, R]``, ``> 0`` = row satisfied.
    """

    x: Tensor
    C: Tensor
    d: Tensor
    lower: Tensor | None = None
    upper: Tensor | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def part(self, sl: slice) -> BoundQuery:
        """Rows ``sl`` of the query."""
        box = (None, None) if self.lower is None else (self.lower[sl], self.upper[sl])
        return BoundQuery(self.x[sl], self.C[sl], self.d[sl], *box)

    def to(self, dtype: torch.dtype) -> BoundQuery:
        """In ``dtype``: boxes rounded outwards, ``d`` upwards, points to nearest (kept inside the box)."""
        if self.x.dtype == dtype and self.C.dtype == dtype and self.d.dtype == dtype:
            return self
        d = round_outward(self.d, dtype, +1)
        if self.lower is None:
            return BoundQuery(self.x.to(dtype), self.C.to(dtype), d)
        lo, up = round_outward(self.lower, dtype, -1), round_outward(self.upper, dtype, +1)
        return BoundQuery(torch.minimum(torch.maximum(self.x.to(dtype), lo), up), self.C.to(dtype), d, lo, up)

    def input_box(self) -> InputBox | None:
        """The input boxes ``[Q, *input_shape]`` as an :class:`InputBox`, or ``None`` for point inputs."""
        return None if self.lower is None else InputBox(self.lower, self.upper)


@runtime_checkable
class Specification(Protocol):
    """What the LID optimiser, :func:`~lirpa_lid.certificate.certify.certify` and ``recheck`` need of a spec.

    ``len(spec)`` is the number of *items* (reference points, properties); ``subset`` selects items
    (minibatches). ``query`` says what to bound; ``certified``/``hard_value``/``soft_value`` read the
    margins ``[Q, R]`` of that query (``> 0`` = satisfied). ``guarantee`` is ``"finite-sample"`` (items
    are a sample of a distribution: a certificate bounds the expected value) or ``"deterministic"``
    (the items are the whole statement: no sampling).
    """

    kind: SpecificationKind
    guarantee: Guarantee
    name: str
    threshold: float

    def __len__(self) -> int: ...

    def query(self, dtype: torch.dtype | None = None) -> BoundQuery:
        """What to bound for the current items (``Q`` rows, possibly more than one per item).

        In ``dtype`` (``None``: the spec's own) converted soundly: input boxes rounded outwards and
        ``d`` upwards, so margins bounded in ``dtype`` never overstate the exact ones.
        """

    def subset(self, index: Tensor) -> Specification:
        """The same spec (threshold, name, options) restricted to the items ``index`` (a minibatch)."""

    def with_threshold(self, threshold: float) -> Specification:
        """A copy with a new threshold (the original is unchanged); validated like the constructor."""

    def certified(self, margins: Tensor) -> Tensor:
        """Bool ``[len(spec)]``: whether each item holds, read from margin lower bounds ``[Q, R]`` of
        :meth:`query` (``> 0`` = satisfied). Must be sound: an item is certified only if its bounds prove it.
        Shape or NaN errors raise (see :func:`check_margins`)."""

    def hard_value(self, margins: Tensor) -> Tensor:
        """Scalar in ``[0, 1]`` from margins ``[Q, R]``: the (possibly class-balanced) fraction of
        :meth:`certified` items; what certificates count. Not differentiable."""

    def soft_value(self, margins: Tensor) -> Tensor:
        """Differentiable scalar in ``[0, 1]`` from margins ``[Q, R]``, increasing in every margin: the
        surrogate of :meth:`hard_value` that the LID optimiser constrains."""

    def defect(self, value: Tensor | float) -> Tensor | float:
        """``threshold − value``; positive means the constraint ``value ≥ threshold`` is violated."""

    def violated(self, value: Tensor | float) -> bool:
        """Whether :meth:`defect` of ``value`` is strictly positive."""

    def describe(self) -> dict:
        """A JSON-able record of the spec (kind, name, size, threshold, options) for certificates and logs."""

    def digest(self) -> str:
        """SHA-256 hex digest of the items (data and labels, or property contents), recorded in
        certificates so a recheck can tell the items changed; options such as ε go in :meth:`describe`."""


def check_margins(name: str, margins: Tensor, shape: tuple[int, int]) -> None:
    """Margin lower bounds handed to a specification have its ``[queries, rows]`` shape and no NaN."""
    if margins.shape != shape:
        raise SpecificationError(f"{name}: margin bounds have shape {tuple(margins.shape)}, expected "
                                 f"[{shape[0]}, {shape[1]}]")
    if torch.isnan(margins).any():
        raise SpecificationError(f"{name}: margin bounds contain NaN")


def _is_spec(obj: object) -> bool:
    return isinstance(obj, Specification) and not isinstance(obj, type)


def as_spec_list(specs: Specification | Sequence[Specification]) -> list[Specification]:
    """A single specification or a sequence of them as a list, with unique names."""
    items = [specs] if _is_spec(specs) else list(specs)
    if not items:
        raise SpecificationError("at least one specification is needed")
    for s in items:
        if not _is_spec(s):
            raise SpecificationError(f"not a specification: {type(s).__name__}")
    names = [s.name for s in items]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SpecificationError(f"specification names must be unique; repeated: {dupes}")
    return items
