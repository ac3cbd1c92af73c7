"""Margins of a specification over a weight box, and how far a box can be scaled while they hold.

A specification's margins (``C·f(x; θ) − d`` per query row; > 0 means that row is satisfied) are
lower-bounded over every θ in a box by a bound backend; its hard certified value counts the items whose
margins are all positive. Scaling a box's offsets about θ₀ gives nested boxes, so margins over a larger box
bound every smaller one: that is what makes shrinking a rejected LID snapshot, and growing a certified one,
cheap (:func:`largest_scale`, settings grouped in :class:`ScaleSearch`).

The scale search is the LID's (:mod:`lirpa_lid.lid.search` uses and re-exports it); it stays importable
from here because :mod:`lirpa_lid.continual.baselines` and the package root import it from here, and a
margin-layer module may not import from ``lid`` (``tests/test_layout.py``).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from lirpa_lid.bounds.core import BoundBackend, BoundMethod
from lirpa_lid.domains.base import WeightDomain
from lirpa_lid.domains.orthotope import Orthotope
from lirpa_lid.specification.base import BoundQuery, Specification

#: a factor and each specification's hard value of the box scaled by it
Found = tuple[float, tuple[float, ...]]


# ------------------------------------------------------------------------------- margins over a domain
def bound_margins(backend: BoundBackend, query: BoundQuery, domain: WeightDomain | None,
                  method: BoundMethod | str) -> Tensor:
    """Lower bounds ``[Q, R]`` of ``C·f(x'; θ) − d`` over θ in ``domain`` and x' in the query's input
    boxes (if any), in one backend call. Differentiable w.r.t. the domain's offsets."""
    lower = backend.compute_bounds(query.x, domain, C=query.C, method=method, input_box=query.input_box(),
                                   bound_upper=False).lower
    return lower - query.d.to(lower.dtype)


def compute_margins(backend: BoundBackend, spec: Specification, domain: WeightDomain | None,
                    method: BoundMethod | str, batch_size: int = 500,
                    dtype: torch.dtype | None = None, rows: Tensor | None = None) -> Tensor:
    """Lower bounds ``[Q, R]`` of the specification's margins over ``domain``, in chunks (for certified
    accuracy ``Q = n`` items, ``R`` competing classes − 1).

    The specification says what to bound (:meth:`Specification.query`). ``dtype`` converts the query
    (input boxes rounded outwards) and the domain (the native backend converts the model's parameters
    to the inputs' dtype); default: the specification's own dtype. ``rows``: only these query rows
    (an index tensor; the result then has ``len(rows)`` rows). The result is differentiable w.r.t.
    the offsets.
    """
    query = spec.query(dtype)
    if rows is not None:
        query = query.part(rows)
    dom = domain if domain is None or dtype is None else domain.to(dtype=dtype)
    out = [bound_margins(backend, query.part(slice(start, start + batch_size)), dom, method)
           for start in range(0, len(query), batch_size)]
    return torch.cat(out)


def margins_within(backend: BoundBackend, spec: Specification, domain: WeightDomain, method: BoundMethod | str,
                   known: Tensor | None = None, batch_size: int = 500,
                   dtype: torch.dtype | None = torch.float64) -> Tensor:
    """Margin lower bounds ``[Q, R]`` of ``spec`` over ``domain`` (no gradient), reusing ``known``: lower
    bounds ``[Q, R]`` valid over a box that *contains* ``domain`` (e.g. the same offsets scaled by a larger
    factor).

    Query rows whose known margins are all positive stay as they are (satisfied over the larger box,
    so over this one; all-zero padding rows of ``C`` never are, and are ignored); the others are bounded
    again and keep the larger of both lower bounds. Every specification's hard value depends only on
    which margins are positive and never decreases when a margin grows, so the result certifies at
    least what a fresh bound would, at a fraction of the cost when most rows were already satisfied.
    """
    with torch.no_grad():
        if known is None:
            return compute_margins(backend, spec, domain, method, batch_size, dtype)
        live = (spec.query(dtype).C != 0).any(dim=-1).to(known.device)
        redo = (~((known > 0) | ~live).all(dim=1)).nonzero().flatten()
        out = known.clone()
        if len(redo):
            fresh = compute_margins(backend, spec, domain, method, batch_size, dtype, rows=redo)
            out[redo] = torch.maximum(known[redo], fresh.to(known.dtype))
        return out


def hard_values(backend: BoundBackend, specs: Sequence[Specification], domain: WeightDomain,
                method: BoundMethod | str, batch_size: int = 500,
                dtype: torch.dtype | None = torch.float64) -> tuple[float, ...]:
    """Hard certified value of ``domain`` for each specification on its whole reference set."""
    return tuple(float(s.hard_value(margins_within(backend, s, domain, method, None, batch_size, dtype)))
                 for s in specs)


# ------------------------------------------------------------------------------- how far a box scales
def scaled_box(domain: Orthotope, factor: float, within: Orthotope | None = None) -> Orthotope:
    """``domain`` with its offsets scaled by ``factor``, clipped to ``within`` if given (both monotone in
    ``factor``, so the boxes for growing factors are nested)."""
    box = domain.scaled(factor)
    return box if within is None else box.intersection(within)


@dataclass(frozen=True)
class ScaleSearch:
    """Settings of one scale search (:func:`largest_scale` documents each; defaults: shrinking).

    ``low`` < ``high`` bound the factors tried (``low`` = 0: shrinking, first probe ``high``; ``low`` > 0,
    known to qualify: growing, first a ladder of probes); ``steps`` bisection steps follow. Margins are
    bounded in ``batch_size`` chunks in ``dtype`` (values returned are always in ``dtype``); the search
    itself runs in ``search_dtype`` when given. ``within`` clips every scaled box.
    """

    steps: int = 8
    high: float = 1.0
    low: float = 0.0
    batch_size: int = 500
    dtype: torch.dtype | None = torch.float64
    within: Orthotope | None = None
    search_dtype: torch.dtype | None = None

    def ladder(self) -> list[float]:
        """The first probes: ``low + (high − low)/2^j``, j = 4 … 0, when growing; ``[high]`` when shrinking."""
        return [self.low + (self.high - self.low) / 2 ** j for j in range(4, -1, -1)] if self.low > 0 \
            else [self.high]


def largest_scale(backend: BoundBackend, specs: Sequence[Specification], domain: Orthotope,
                  method: BoundMethod | str, steps: int = 8, high: float = 1.0,
                  known: Sequence[Tensor] | None = None, batch_size: int = 500,
                  dtype: torch.dtype | None = torch.float64, low: float = 0.0,
                  within: Orthotope | None = None,
                  search_dtype: torch.dtype | None = None) -> Found | None:
    """Largest tested factor ``s`` in ``(low, high]`` with every hard value of ``domain.scaled(s)`` ≥ its
    threshold, with those values; ``None`` if no tested factor qualifies.

    First probes: ``high`` (shrinking, ``low`` = 0), or — growing from a factor ``low`` > 0 known to
    qualify — the ladder ``low + (high − low)/2^j``, j = 4 … 0, climbed until a rung fails; probes are
    skipped when ``known`` holds each spec's margins ``[Q, R]`` over ``domain.scaled(high)`` (which then
    counts as failed). Then ``steps`` bisection steps between the best qualifying factor and the smallest
    failed one. With ``within``, each scaled box is clipped to it (:meth:`Orthotope.intersection`; e.g. the
    largest box a LID may take). Scaled (and clipped) boxes are nested, so margins of the smallest
    failed box bound every smaller one: only the rows it does not satisfy are bounded again
    (:func:`margins_within`) — which is why growth climbs a ladder: the failed box that seeds the reuse
    lies close to the answer. A factor found by bisection is confirmed by one fresh bound of the whole
    set, so the values returned are what anyone re-bounding the domain gets (bounds that are not
    monotone in the box, possible with CROWN's adaptive relaxations, send the search lower).

    ``search_dtype`` (e.g. float32, several times faster than float64 for convolutions on CPU): search in
    that arithmetic, then bound the factor found once in ``dtype``; the values returned are always those
    of ``dtype``. Should that bound miss a threshold (margins within rounding of zero), the search is
    repeated in ``dtype``.
    """
    settings = ScaleSearch(steps=steps, high=high, low=low, batch_size=batch_size, dtype=dtype, within=within,
                           search_dtype=search_dtype)
    return search_scale(backend, specs, domain, method, settings, known)


def search_scale(backend: BoundBackend, specs: Sequence[Specification], domain: Orthotope,
                 method: BoundMethod | str, settings: ScaleSearch,
                 known: Sequence[Tensor] | None = None) -> Found | None:
    """:func:`largest_scale` with its settings grouped in a :class:`ScaleSearch`."""
    specs = list(specs)
    if settings.search_dtype is None or settings.search_dtype == settings.dtype:
        return _bisect_scale(_Scaler(backend, specs, domain, method, settings), settings, known)
    fast = replace(settings, dtype=settings.search_dtype, search_dtype=None)
    found = _bisect_scale(_Scaler(backend, specs, domain, method, fast), fast, known)
    if found is None:
        return None
    exact = replace(settings, search_dtype=None)
    scaler = _Scaler(backend, specs, domain, method, exact)
    probe = scaler.probe(found[0])
    if probe.ok:
        return found[0], probe.values
    return _bisect_scale(scaler, exact, known)  # margins within rounding of zero: search again in ``dtype``


# ------------------------------------------------------------------------------- the search's steps
@dataclass(frozen=True)
class _Probe:
    """One scaled box's margins (one ``[Q, R]`` tensor per spec), hard values and whether all qualify."""

    margins: list[Tensor]
    values: tuple[float, ...]
    ok: bool


class _Scaler:
    """Bounds ``scaled_box(domain, factor, within)`` for the factors a search tries."""

    def __init__(self, backend: BoundBackend, specs: list[Specification], domain: Orthotope,
                 method: BoundMethod | str, settings: ScaleSearch):
        self.backend, self.specs, self.domain, self.method, self.settings = backend, specs, domain, method, settings

    def probe(self, factor: float, known: Sequence[Tensor] | None = None) -> _Probe:
        """Margins of the box scaled by ``factor`` (reusing ``known``: margins over a box containing it)."""
        s = self.settings
        box = scaled_box(self.domain, factor, s.within)
        margins = [margins_within(self.backend, spec, box, self.method, None if known is None else known[i],
                                  s.batch_size, s.dtype)
                   for i, spec in enumerate(self.specs)]
        values = tuple(float(spec.hard_value(m)) for spec, m in zip(self.specs, margins))
        return _Probe(margins, values, all(v >= spec.threshold for v, spec in zip(values, self.specs)))


@dataclass
class _Bracket:
    """The search's state: ``lo`` qualifies (``best``: its factor and values, once probed), ``hi`` fails
    (``failed``: its margins, reused for every smaller box)."""

    lo: float
    hi: float
    failed: Sequence[Tensor] | None
    best: Found | None = None

    def record(self, factor: float, probe: _Probe) -> None:
        """Move ``lo`` (qualified) or ``hi`` (failed) to ``factor``."""
        if probe.ok:
            self.lo, self.best = factor, (factor, probe.values)
        else:
            self.hi, self.failed = factor, probe.margins


def _bisect_scale(scaler: _Scaler, settings: ScaleSearch, known: Sequence[Tensor] | None) -> Found | None:
    """The search in one arithmetic: climb the ladder (unless ``known``), bisect, confirm."""
    bracket = _Bracket(settings.low, settings.high, known)
    if known is None and not _climb(scaler, settings, bracket):
        return bracket.best  # every rung qualified
    confirmed = bracket.best  # a rung's values are fresh: nothing to confirm
    _bisect(scaler, settings.steps, bracket)
    if bracket.best is None or bracket.best is confirmed:
        return bracket.best
    return _confirm(scaler, settings, bracket.best, confirmed)


def _climb(scaler: _Scaler, settings: ScaleSearch, bracket: _Bracket) -> bool:
    """Probe the ladder's rungs with fresh bounds until one fails; whether one did."""
    for rung in settings.ladder():
        probe = scaler.probe(rung)
        bracket.record(rung, probe)
        if not probe.ok:
            return True
    return False


def _bisect(scaler: _Scaler, steps: int, bracket: _Bracket) -> None:
    """``steps`` bisection steps, each reusing the margins of the smallest failed box."""
    for _ in range(steps):
        mid = (bracket.lo + bracket.hi) / 2
        bracket.record(mid, scaler.probe(mid, bracket.failed))


def _confirm(scaler: _Scaler, settings: ScaleSearch, best: Found, confirmed: Found | None) -> Found | None:
    """Bound the factor found afresh; if that misses a threshold, fall back on the last fresh factor that
    qualified, else search below it with one step fewer."""
    fresh = scaler.probe(best[0])
    if fresh.ok:
        return best[0], fresh.values
    if confirmed is not None:
        return confirmed
    if settings.steps <= 1:
        return None
    lower = replace(settings, steps=settings.steps - 1, high=best[0], search_dtype=None)
    return _bisect_scale(scaler, lower, fresh.margins)
