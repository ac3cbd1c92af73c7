"""The weight-domain protocol: what backends, margins, the LID optimiser, certificates and projection
may ask of a domain, and the registry that saves and loads domains by kind.

A *weight domain* is a set of weight vectors around reference weights θ₀ over named parameters. Every
consumer goes through this protocol (never ``isinstance`` on a kind), so a new kind (zonotopes, say) is
one class plus one :func:`register_domain_kind` call.

Conventions: parameter tensors are keyed by the model's parameter names; membership and violations are
decided exactly (float64); ``center_radius`` is the enclosing box ``centre ± radius`` that bound backends
bound (for a box it is the box itself, up to a few ulps of slack); sizes are the paper's (mean width,
log-volume).
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from lirpa_lid.errors import DomainError

ParamDict = dict[str, Tensor]


@runtime_checkable
class WeightDomain(Protocol):
    """A region of weight space (see module docstring)."""

    #: the name under which the kind is registered and saved ("orthotope", ...)
    kind: ClassVar[str]
    #: θ₀ by parameter name
    reference: ParamDict

    @property
    def names(self) -> list[str]:
        """Parameter names the domain covers, in a fixed order (the order of ``reference``)."""

    def center_radius(self, dtype: torch.dtype) -> dict[str, tuple[Tensor, Tensor]]:
        """``name -> (centre, radius)`` in ``dtype``, each of the parameter's shape, ``radius >= 0``.

        Must guarantee that the box ``centre ± radius`` contains the whole domain despite rounding to
        ``dtype`` (add a few ulps of slack); bound backends bound this box, so certificates rest on it.
        Stays differentiable in the domain's tensors (the LID optimiser backpropagates through it).
        """

    def violations(self, params: nn.Module | Mapping[str, Tensor], atol: float = 0.0) -> list[str]:
        """Reasons, as human-readable strings, why ``params`` is not in the domain (enlarged by ``atol``).

        Must decide membership exactly, in float64: an empty list means ``params`` is inside. Missing
        parameters, wrong shapes and non-finite values are reasons, not exceptions.
        """

    def contains(self, params: nn.Module | Mapping[str, Tensor], atol: float = 0.0) -> bool:
        """Whether ``params`` lies in the domain; must agree with ``not violations(params, atol)``."""

    def project(self, params: nn.Module | Mapping[str, Tensor]) -> ParamDict:
        """A point of the domain near ``params`` (Euclidean projection where cheap), as new tensors.

        Must return every parameter of ``params`` (those outside the domain unchanged, in their dtype)
        such that :meth:`contains` holds for the result exactly, i.e. rounding inwards; never modifies
        ``params``.
        """

    def project_(self, model: nn.Module) -> nn.Module:
        """:meth:`project`, written into the model's parameters in place; returns ``model``."""

    def distance(self, params: nn.Module | Mapping[str, Tensor]) -> float:
        """Euclidean distance (float64) from ``params`` to the domain: 0 inside, the length of the move
        that :meth:`project` makes outside."""

    def mean_width(self) -> Tensor:
        """Scalar size measure: mean width over the free elements (the paper's); differentiable."""

    def log_volume(self) -> Tensor:
        """Scalar log-volume over the free elements (``-inf`` when the domain is flat in some direction)."""

    def numel(self) -> int:
        """Number of free (movable) weight elements."""

    def sample(self, n: int, generator: torch.Generator | None = None,
               corner_fraction: float = 0.5) -> ParamDict:
        """``n`` weight vectors inside the domain, ``name -> [n, *shape]``, for empirical checks.

        About ``corner_fraction`` of them are extreme points (vertices), the rest spread inside; every
        sample must satisfy :meth:`contains` exactly.
        """

    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> WeightDomain:
        """A new domain of the same kind with its tensors converted (``None`` keeps the current one)."""

    def detach(self) -> WeightDomain:
        """The same set, with tensors cut from the autograd graph (for storing a LID candidate)."""

    def state_dict(self) -> dict:
        """Detached tensors (and plain containers) describing the domain, loadable with ``weights_only``.

        Must round-trip: ``from_state_dict(state_dict())`` is the same set. The ``kind`` key is added
        by :func:`domain_state`, not here.
        """

    @classmethod
    def from_state_dict(cls, state: Mapping) -> WeightDomain:
        """The domain a :meth:`state_dict` describes, validated; raises ``DomainError`` on a bad state."""


_KINDS: dict[str, type] = {}
#: files written before domains recorded their kind hold orthotopes
LEGACY_KIND = "orthotope"


def register_domain_kind(cls: type) -> type:
    """Register a domain class under ``cls.kind`` (usable as a class decorator)."""
    kind = getattr(cls, "kind", None)
    if not isinstance(kind, str) or not kind:
        raise DomainError(f"{cls.__name__} has no 'kind' name to be registered under")
    _KINDS[kind] = cls
    return cls


def domain_kinds() -> list[str]:
    """Registered domain kind names, sorted (for error messages listing the valid kinds)."""
    return sorted(_KINDS)


def as_domain(obj: Any, what: str = "a domain") -> WeightDomain:
    """``obj`` itself or its ``.domain`` (a LID candidate), checked against the protocol."""
    domain = getattr(obj, "domain", obj)
    if not isinstance(domain, WeightDomain) or isinstance(domain, type):
        raise DomainError(f"{what} must be a weight domain ({', '.join(domain_kinds())}) or a candidate "
                          f"with a .domain, got {type(obj).__name__}")
    return domain


def domain_state(domain: WeightDomain) -> dict:
    """``domain.state_dict()`` with its kind recorded."""
    return {"kind": domain.kind, **domain.state_dict()}


def domain_from_state(state: Mapping) -> WeightDomain:
    """The domain a :func:`domain_state` dict describes (no ``kind``: an orthotope, as files written
    before kinds were recorded)."""
    if not isinstance(state, Mapping):
        raise DomainError(f"not a domain file: expected a dict, got {type(state).__name__}")
    kind = state.get("kind", LEGACY_KIND)
    if kind not in _KINDS:
        raise DomainError(f"unknown domain kind {kind!r}; known: {domain_kinds()}")
    return _KINDS[kind].from_state_dict({k: v for k, v in state.items() if k != "kind"})


def save_domain(domain: WeightDomain, path: str | Path) -> None:
    """Write ``domain`` with its kind (:func:`domain_state`) to ``path``; :func:`load_domain` reads it back."""
    torch.save(domain_state(domain), Path(path))


def load_domain(path: str | Path) -> WeightDomain:
    """A domain file of any registered kind (tensors only: ``weights_only`` loading)."""
    return domain_from_state(torch.load(Path(path), map_location="cpu", weights_only=True))
