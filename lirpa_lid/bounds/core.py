"""What every bound backend shares: methods, input boxes, results and validation.

A *bound backend* computes, for a batch of inputs ``x`` and a weight domain, lower and upper bounds of
specification rows ``C·f(x; θ)`` valid for every θ in the domain (and every input in the input box,
if one is given). Shapes: ``x`` is ``[B, *input_shape]``; ``C`` is ``[B, S, n_out]`` or ``[S, n_out]``;
bounds are ``[B, S]`` (``[B, n_out]`` without ``C``). Bounds are differentiable with respect to the
domain's offsets. The LID optimiser only sees this interface (it never knows which method is used).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn

from lirpa_lid.domains.base import WeightDomain
from lirpa_lid.errors import InputError, ModelError


class BoundMethod(enum.StrEnum):
    """Bound propagation methods (names as in auto_LiRPA / α,β-CROWN)."""

    IBP = "IBP"
    CROWN = "CROWN"
    CROWN_IBP = "CROWN-IBP"
    ALPHA_CROWN = "alpha-CROWN"

    @classmethod
    def parse(cls, value: str | BoundMethod) -> BoundMethod:
        """The method named by ``value`` (case-insensitive; aliases such as ``"backward"``, ``"crown-optimized"``,
        ``"α-CROWN"``); ``InputError`` listing the valid names otherwise."""
        if isinstance(value, BoundMethod):
            return value
        key = str(value).strip().lower().replace("_", "-").replace("α", "alpha")
        aliases = {"ibp": cls.IBP, "crown": cls.CROWN, "backward": cls.CROWN, "crown-ibp": cls.CROWN_IBP,
                   "alpha-crown": cls.ALPHA_CROWN, "crown-optimized": cls.ALPHA_CROWN,
                   "alphacrown": cls.ALPHA_CROWN}
        if key not in aliases:
            raise InputError(f"unknown bound method {value!r}; choose one of "
                             f"{[m.value for m in cls]}")
        return aliases[key]


@dataclass(frozen=True)
class InputBox:
    """Element-wise input box ``lower ≤ x ≤ upper``, each ``[B, *input_shape]``."""

    lower: Tensor
    upper: Tensor

    def __post_init__(self) -> None:
        if self.lower.shape != self.upper.shape:
            raise InputError(f"input box bounds have shapes {tuple(self.lower.shape)} and "
                             f"{tuple(self.upper.shape)}")
        if not (torch.isfinite(self.lower).all() and torch.isfinite(self.upper).all()):
            raise InputError("input box contains NaN or inf")
        if (self.lower > self.upper).any():
            raise InputError("input box has lower > upper")

    @classmethod
    def linf(cls, x: Tensor, eps: float | Tensor, clip: tuple[float, float] | None = None) -> InputBox:
        """L∞ ball of radius ``eps`` around ``x``, optionally clipped to a valid input range."""
        lo, hi = x - eps, x + eps
        if clip is not None:
            lo, hi = lo.clamp(*clip), hi.clamp(*clip)
        return cls(lo, hi)

    def center(self) -> Tensor:
        """The midpoint ``(lower + upper) / 2`` of the box, ``[B, *input_shape]``."""
        return (self.lower + self.upper) / 2


@dataclass(frozen=True)
class AlphaOptions:
    """Settings of α-CROWN's slope optimisation."""

    iterations: int = 20
    lr: float = 0.1


@dataclass(frozen=True)
class Bounds:
    """``lower ≤ C·f(x; θ) ≤ upper`` for all θ in the domain (and x in the input box); ``[B, S]``."""

    lower: Tensor
    upper: Tensor | None


class BoundBackend(Protocol):
    """A model prepared once for bounding over weight domains (re-used across domains).

    Callers (the LID optimiser, certify, the CLI) never test which backend they hold; what they need to
    know is an attribute:

    * ``follows_input_dtype``: bounds are computed in the dtype of the inputs given (so float64 inputs
      give float64 bounds of a float32 model); otherwise in the dtype the backend was built for;
    * ``bounds_convolution_weights``: boxes may cover ``nn.Conv2d`` weights and biases;
    * ``differentiable``: bounds carry gradients with respect to the domain's offsets.
    """

    model: nn.Module
    follows_input_dtype: bool
    bounds_convolution_weights: bool
    differentiable: bool

    def compute_bounds(self, x: Tensor, domain: WeightDomain | None = None, C: Tensor | None = None,
                       method: BoundMethod | str = BoundMethod.CROWN, input_box: InputBox | None = None,
                       bound_upper: bool = True, alpha: AlphaOptions = AlphaOptions()) -> Bounds:
        """Bounds of ``C·f(x; θ)`` valid for every θ in ``domain`` and every input in ``input_box``.

        ``x`` ``[B, *input_shape]`` (the point, or any point of the box); ``C`` ``[B, S, n_out]`` or
        ``[S, n_out]`` (``None``: identity); ``domain=None`` means the model's own weights. Returns
        ``[B, S]`` bounds (``upper`` None unless ``bound_upper``), differentiable in the domain's tensors
        where ``differentiable`` is set.
        """


def check_batch(x: Tensor, input_box: InputBox | None) -> None:
    """Reject empty, non-finite or mis-shaped inputs with a message naming the problem."""
    if not isinstance(x, Tensor):
        raise InputError(f"inputs must be a tensor, got {type(x).__name__}")
    if x.dim() == 0 or x.shape[0] == 0:
        raise InputError("empty batch: the inputs have no rows")
    if not torch.isfinite(x).all():
        raise InputError("inputs contain NaN or inf")
    if input_box is not None and input_box.lower.shape != x.shape:
        raise InputError(f"input box has shape {tuple(input_box.lower.shape)}, inputs have "
                         f"{tuple(x.shape)}")


def check_model_finite(model: nn.Module) -> None:
    """Raise ``ModelError`` naming the first parameter or floating-point buffer that holds NaN or inf."""
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            raise ModelError(f"parameter {name!r} of the model contains NaN or inf")
    for name, b in model.named_buffers():
        if b.is_floating_point() and not torch.isfinite(b).all():
            raise ModelError(f"buffer {name!r} of the model contains NaN or inf")


def spec_matrix(C: Tensor | None, batch: int, n_out: int, like: Tensor) -> Tensor:
    """``C`` as ``[B, S, n_out]`` (identity if None), validated."""
    if C is None:
        return torch.eye(n_out, dtype=like.dtype, device=like.device).expand(batch, n_out, n_out)
    if C.dim() == 2:
        C = C.unsqueeze(0).expand(batch, *C.shape)
    if C.dim() != 3 or C.shape[0] != batch or C.shape[2] != n_out:
        raise InputError(f"specification matrix C has shape {tuple(C.shape)}; expected "
                         f"[{batch}, S, {n_out}] or [S, {n_out}]")
    if not torch.isfinite(C).all():
        raise InputError("specification matrix C contains NaN or inf")
    return C.to(like.dtype)
