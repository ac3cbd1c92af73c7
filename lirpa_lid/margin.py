"""Margins of a specification over a weight box, and how far a box can be scaled while they hold.

A specification's margins (``C·f(x; θ) − d`` per query row) are lower-bounded over every θ in a box by a
bound backend; its hard certified value counts the rows whose margins are all positive. Scaling a box's
offsets about θ₀ gives nested boxes, so margins over a larger box bound every smaller one: that is what
makes shrinking a rejected LID snapshot, and growing a certified one, cheap (:func:`largest_scale`).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lirpa_lid.bounds.core import BoundBackend, BoundMethod
from lirpa_lid.domains.orthotope import Orthotope
from lirpa_lid.specification.base import BoundQuery, Specification


def bound_margins(backend: BoundBackend, query: BoundQuery, domain: Orthotope | None,
                  method: BoundMethod | str) -> Tensor:
    """Lower bounds ``[Q, R]`` of ``C·f(x'; θ) − d`` over θ in ``domain`` and x' in the query's input
    boxes (if any), in one backend call. Differentiable w.r.t. the domain's offsets."""
    lower = backend.compute_bounds(query.x, domain, C=query.C, method=method, input_box=query.input_box(),
                                   bound_upper=False).lower
    return lower - query.d.to(lower.dtype)


def compute_margins(backend: BoundBackend, spec: Specification, domain: Orthotope | None,
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


def margins_within(backend: BoundBackend, spec: Specification, domain: Orthotope, method: BoundMethod | str,
                   known: Tensor | None = None, batch_size: int = 500,
                   dtype: torch.dtype | None = torch.float64) -> Tensor:
    """Margin lower bounds of ``spec`` over ``domain`` (no gradient), reusing ``known``: lower bounds
    valid over a box that *contains* ``domain`` (e.g. the same offsets scaled by a larger factor).

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


def hard_values(backend: BoundBackend, specs: Sequence[Specification], domain: Orthotope,
                method: BoundMethod | str, batch_size: int = 500,
                dtype: torch.dtype | None = torch.float64) -> tuple[float, ...]:
    """Hard certified value of ``domain`` for each specification on its whole reference set."""
    return tuple(float(s.hard_value(margins_within(backend, s, domain, method, None, batch_size, dtype)))
                 for s in specs)


def largest_scale(backend: BoundBackend, specs: Sequence[Specification], domain: Orthotope,
                  method: BoundMethod | str, steps: int = 8, high: float = 1.0,
                  known: Sequence[Tensor] | None = None, batch_size: int = 500,
                  dtype: torch.dtype | None = torch.float64, low: float = 0.0,
                  within: Orthotope | None = None,
                  search_dtype: torch.dtype | None = None) -> tuple[float, tuple[float, ...]] | None:
    """Largest tested factor ``s`` in ``(low, high]`` with every hard value of ``domain.scaled(s)`` ≥ its
    threshold, with those values; ``None`` if no tested factor qualifies.

    First probes: ``high`` (shrinking, ``low`` = 0), or — growing from a factor ``low`` > 0 known to
    qualify — the ladder ``low + (high − low)/2^j``, j = 4 … 0, climbed until a rung fails; probes are
    skipped when ``known`` holds each spec's margins over ``domain.scaled(high)`` (which then counts as
    failed). Then ``steps`` bisection steps between the best qualifying factor and the smallest failed
    one. With ``within``, each scaled box is clipped to it (:meth:`Orthotope.intersection`; e.g. the
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
    specs = list(specs)
    if search_dtype is not None and search_dtype != dtype:
        found = largest_scale(backend, specs, domain, method, steps, high, known, batch_size, search_dtype, low,
                              within)
        if found is None:
            return None
        values = hard_values(backend, specs, scaled_box(domain, found[0], within), method, batch_size, dtype)
        if all(v >= spec.threshold for v, spec in zip(values, specs)):
            return found[0], values
        return largest_scale(backend, specs, domain, method, steps, high, known, batch_size, dtype, low, within)

    def evaluate(s: float, outer: Sequence[Tensor] | None) -> tuple[list[Tensor], tuple[float, ...], bool]:
        box = scaled_box(domain, s, within)
        margins = [margins_within(backend, spec, box, method, None if outer is None else outer[i],
                                  batch_size, dtype)
                   for i, spec in enumerate(specs)]
        values = tuple(float(spec.hard_value(m)) for spec, m in zip(specs, margins))
        return margins, values, all(v >= spec.threshold for v, spec in zip(values, specs))

    lo, hi, best = low, high, None
    if known is None:
        ladder = [low + (high - low) / 2 ** j for j in range(4, -1, -1)] if low > 0 else [high]
        for rung in ladder:
            margins, values, ok = evaluate(rung, None)
            if not ok:
                hi, known = rung, margins
                break
            lo, best = rung, (rung, values)  # fresh values: nothing to confirm
        else:
            return best
    confirmed = best
    for _ in range(steps):
        mid = (lo + hi) / 2
        margins, values, ok = evaluate(mid, known)
        if ok:
            lo, best = mid, (mid, values)
        else:
            hi, known = mid, margins
    if best is None or best is confirmed:
        return best
    fresh, values, ok = evaluate(best[0], None)
    if ok:
        return best[0], values
    if confirmed is not None:
        return confirmed
    return largest_scale(backend, specs, domain, method, steps - 1, best[0], fresh, batch_size, dtype,
                         low, within) if steps > 1 else None


def scaled_box(domain: Orthotope, factor: float, within: Orthotope | None = None) -> Orthotope:
    """``domain`` with its offsets scaled by ``factor``, clipped to ``within`` if given (both monotone in
    ``factor``, so the boxes for growing factors are nested)."""
    box = domain.scaled(factor)
    return box if within is None else box.intersection(within)
