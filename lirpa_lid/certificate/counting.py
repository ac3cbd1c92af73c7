"""Counting what a domain certifies: margin lower bounds over the whole domain, read by the specification.

Shared by :func:`~lirpa_lid.certificate.certify.certify` (which states a bound from the count) and
:func:`~lirpa_lid.certificate.check.recheck` (which recounts instead of trusting a recorded count),
so both count in the same way: the backend from :func:`~lirpa_lid.bounds.resolve.resolve_backend`,
float64 wherever the backend follows the inputs' dtype.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lirpa_lid.bounds.core import BoundBackend, BoundMethod
from lirpa_lid.bounds.resolve import resolve_backend
from lirpa_lid.digest import digest_data
from lirpa_lid.domains.base import WeightDomain
from lirpa_lid.errors import InputError
from lirpa_lid.margin import compute_margins
from lirpa_lid.specification.base import Specification

#: labelled data as certify and the checks accept it: a specification (with ``.x``, ``.y``) or ``(x, y)``
DataLike = Specification | tuple[Tensor, Tensor]


@dataclass(frozen=True)
class Count:
    """How many items a domain certifies: ``k`` of ``n``; ``class_counts`` maps class → ``(k_c, n_c)``
    for balanced specifications (else None); ``dtype`` is the name of the dtype the bounds were
    computed in (``"float64"``)."""

    k: int
    n: int
    class_counts: dict[int, tuple[int, int]] | None
    dtype: str


def as_data(data: DataLike) -> tuple[Tensor, Tensor]:
    """``(x, y)`` from a specification, an ``(x, y)`` pair or anything with ``.x`` and ``.y``."""
    if isinstance(data, Tensor):
        raise InputError("data must be an (x, y) pair or a specification, not a single tensor")
    if hasattr(data, "x") and hasattr(data, "y"):
        return data.x, data.y
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return torch.as_tensor(data[0]), torch.as_tensor(data[1])
    raise InputError("data must be a CertifiedAccuracy specification or an (x, y) pair")


def data_digest(data: DataLike) -> str:
    """The digest a certificate records for its data: ``spec.digest()``, or ``digest_data(x, y)``."""
    if hasattr(data, "digest") and callable(data.digest):
        return data.digest()
    return digest_data(*as_data(data))


def backend_and_dtype(model: nn.Module, domain: WeightDomain,
                      backend: BoundBackend | str | None) -> tuple[BoundBackend, torch.dtype]:
    """The backend, and float64 wherever the backend follows the inputs' dtype (else the model's)."""
    backend = resolve_backend(model, backend, domain.names)
    return backend, torch.float64 if backend.follows_input_dtype else next(model.parameters()).dtype


def count_certified(model: nn.Module, domain: WeightDomain, spec: Specification, method: BoundMethod | str,
                    backend: BoundBackend | str | None) -> Count:
    """Bound ``spec``'s margins over all of ``domain`` with ``method`` and count the certified items
    (per class too when the specification is balanced). ``model`` supplies the other parameters."""
    backend, dtype = backend_and_dtype(model, domain, backend)
    with torch.no_grad():
        lower = compute_margins(backend, spec, domain, method, dtype=dtype)
    ok = spec.certified(lower)
    return Count(int(ok.sum()), len(spec), _class_counts(spec, ok), str(dtype).replace("torch.", ""))


def _class_counts(spec: Specification, ok: Tensor) -> dict[int, tuple[int, int]] | None:
    """Class → ``(certified, items)`` for a balanced specification; None otherwise."""
    if not getattr(spec, "balanced", False):
        return None
    return {int(c): (int(ok[spec.y == c].sum()), int((spec.y == c).sum())) for c in torch.unique(spec.y).tolist()}
