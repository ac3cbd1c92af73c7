"""Certifying a domain: count what it certifies on held-out items or properties, and state a bound.

:func:`certify` hard-certifies one domain for one specification and returns a
:class:`~lirpa_lid.certificate.record.Certificate`; :func:`certify_all` certifies several candidates
with δ split between them. The statement and its bound are in :mod:`lirpa_lid.certificate.statistics`,
the file format in :mod:`lirpa_lid.certificate.record`, the checks in :mod:`lirpa_lid.certificate.check`.

The names that used to live here (``Certificate``, ``Verdict``, ``clopper_pearson_lower``,
``verify_update``, ``recheck``) are re-exported, so ``from lirpa_lid.certificate.certify import ...``
keeps working.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lirpa_lid.bounds.core import BoundBackend, BoundMethod
from lirpa_lid.certificate.check import recheck, verify_update
from lirpa_lid.certificate.counting import DataLike, as_data, count_certified
from lirpa_lid.certificate.record import FORMAT, Certificate, Verdict
from lirpa_lid.certificate.statistics import (
    Guarantee,
    certified_bound,
    check_delta,
    clopper_pearson_lower,
    statement_text,
)
from lirpa_lid.digest import digest_frozen, digest_weights, frozen_parts
from lirpa_lid.domains.base import WeightDomain, as_domain
from lirpa_lid.errors import InputError, SpecificationError
from lirpa_lid.specification.base import Specification, as_spec_list

__all__ = [
    "FORMAT", "Certificate", "DataLike", "Guarantee", "Verdict", "certify", "certify_all", "clopper_pearson_lower",
    "recheck", "verify_update",
]

#: what :attr:`Certificate.held_out` says for a deterministic certificate
_NO_SAMPLING = "not applicable (deterministic: no sampling)"


def certify(model: nn.Module, domain: WeightDomain | object, spec_on_heldout: Specification,
            method: BoundMethod | str = "CROWN", delta: float = 0.05,
            backend: BoundBackend | str | None = None, exclude: DataLike | Tensor | None = None,
            label: str = "", model_record: dict | None = None) -> Certificate:
    """Hard-certify ``domain`` (a weight domain, or a candidate holding one) for a specification.

    Certified accuracy and local robustness (finite-sample guarantee): ``spec_on_heldout`` must hold
    items that played no part in computing the domain; pass the optimisation data as ``exclude`` to
    have that checked (shared input rows → SpecificationError). VNN-LIB properties (deterministic):
    the properties themselves, no held-out set, ``delta`` is not used (recorded as 0). Bounds are
    computed in float64 wherever the backend allows. The model supplies the parameters the domain does
    not cover (their digest is recorded). ``model_record`` is stored as :attr:`Certificate.model`.
    """
    label = label or getattr(domain, "label", "")
    domain = as_domain(domain, "certify's domain")
    spec = _one_specification(spec_on_heldout)
    method = BoundMethod.parse(method).value
    guarantee = Guarantee.parse(spec.guarantee)
    delta, held_out = _sampling(spec, guarantee, delta, exclude)
    count = count_certified(model, domain, spec, method, backend)
    bound = certified_bound(count.k, count.n, count.class_counts, delta, guarantee)
    return Certificate(domain=domain.detach(), spec=spec.describe(),
                       reference_digest=digest_weights(domain.reference),
                       frozen_digest=digest_frozen(model, domain.names), data_digest=spec.digest(),
                       method=method, dtype=count.dtype, n=count.n, k=count.k, bound=bound, delta=delta,
                       balanced=bool(getattr(spec, "balanced", False)),
                       statement=statement_text(spec, count.k, count.n, count.class_counts, bound, delta, method),
                       class_counts=count.class_counts, held_out=held_out, label=label, guarantee=guarantee,
                       model=model_record, frozen_parts=frozen_parts(model, domain.names))


def certify_all(model: nn.Module, candidates: Sequence, spec_on_heldout: Specification,
                method: BoundMethod | str = "CROWN", delta: float = 0.05, **kwargs) -> list[Certificate]:
    """Certify several candidates with ``δ/m`` each, so that all ``m`` statements hold together with
    probability ≥ 1 − δ (then any candidate may be chosen, even by its bound)."""
    if not candidates:
        raise InputError("no candidates to certify")
    m = len(candidates)
    return [certify(model, c, spec_on_heldout, method, delta / m,
                    label=getattr(c, "label", "") or f"candidate {i} of {m}", **kwargs)
            for i, c in enumerate(candidates)]


# ------------------------------------------------------------------------------- steps of certify
def _one_specification(spec_on_heldout: Specification) -> Specification:
    """The one specification certify takes (a list of several is an error)."""
    spec = as_spec_list(spec_on_heldout)
    if len(spec) != 1:
        raise SpecificationError("certify takes one specification (certify each one separately)")
    return spec[0]


def _sampling(spec: Specification, guarantee: Guarantee, delta: float,
              exclude: DataLike | Tensor | None) -> tuple[float, str]:
    """``(delta, held_out)`` to record: δ (0 without sampling) and what was checked about the held-out
    items (shared with ``exclude``, the optimisation data)."""
    if guarantee is Guarantee.DETERMINISTIC:
        if exclude is not None:
            raise InputError(f"{spec.name}: 'exclude' checks held-out items; a VNN-LIB specification has none")
        return 0.0, _NO_SAMPLING
    delta = check_delta(delta)
    if exclude is None:
        return delta, "not checked"
    return delta, _check_disjoint(spec, exclude)


def _check_disjoint(spec: Specification, exclude: DataLike | Tensor) -> str:
    """SpecificationError when a held-out input also occurs in ``exclude``; else what was checked."""
    ex = exclude if isinstance(exclude, Tensor) else as_data(exclude)[0]
    shared = _row_keys(spec.x) & _row_keys(ex)
    if shared:
        raise SpecificationError(f"{len(shared)} held-out item(s) also occur in the optimisation data; a "
                                 "finite-sample certificate needs items the domain never saw")
    return f"checked: no input shared with the {int(ex.shape[0])} optimisation items"


def _row_keys(x: Tensor) -> set[bytes]:
    """The rows of ``x`` (float64 bytes), to find inputs that occur in two sets."""
    flat = x.detach().to("cpu", torch.float64).reshape(x.shape[0], -1).contiguous().numpy()
    return {row.tobytes() for row in flat}
