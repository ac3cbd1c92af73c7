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
    def names(self) -> list[str]: ...

    def center_radius(self, dtype: torch.dtype) -> dict[str, tuple[Tensor, Tensor]]: ...

    def violations(self, params: nn.Module | Mapping[str, Tensor], atol: float = 0.0) -> list[str]: ...

    def contains(self, params: nn.Module | Mapping[str, Tensor], atol: float = 0.0) -> bool: ...

    def project(self, params: nn.Module | Mapping[str, Tensor]) -> ParamDict: ...

    def project_(self, model: nn.Module) -> nn.Module: ...

    def mean_width(self) -> Tensor: ...

    def log_volume(self) -> Tensor: ...

    def numel(self) -> int: ...

    def sample(self, n: int, generator: torch.Generator | None = None,
               corner_fraction: float = 0.5) -> ParamDict: ...

    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> WeightDomain: ...

    def detach(self) -> WeightDomain: ...

    def state_dict(self) -> dict: ...

    @classmethod
    def from_state_dict(cls, state: Mapping) -> WeightDomain: ...


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
    torch.save(domain_state(domain), Path(path))


def load_domain(path: str | Path) -> WeightDomain:
    """A domain file of any registered kind (tensors only: ``weights_only`` loading)."""
    return domain_from_state(torch.load(Path(path), map_location="cpu", weights_only=True))
