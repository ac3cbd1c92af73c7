"""Base class of the native bound operators, and the boxed-parameter record they read.

Every operator implements two passes:

* ``interval(lo, hi, p)``: interval bounds of its output from interval bounds of its input (IBP);
* ``backward(A, lo, hi, p, relax)``: one step of a backward linear bound (CROWN). Given coefficients
  ``A`` of shape ``[B, S, *out_shape]`` on the operator's output ``z``, it returns ``(A_in, const)``
  such that ``A·z ≥ A_in·h + const`` for every input ``h`` in ``[lo, hi]`` and every parameter in the
  box; ``const`` is ``[B, S]``. Only this *lower* direction is implemented: an upper bound of ``A·z``
  is ``−(lower bound of (−A)·z)``, and the propagation stacks ``A`` and ``−A`` into one pass.

Boxed parameters never get a coefficient tensor of their own: operators concretise the parameter
terms on the spot (they are independent of everything else), which keeps memory at the size of the
activations.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class ParamBox:
    """A layer parameter in the box ``center ± radius`` (``radius`` None: not perturbed)."""

    center: Tensor
    radius: Tensor | None = None

    @property
    def lower(self) -> Tensor:
        """``center − radius`` (the centre itself when not perturbed)."""
        return self.center if self.radius is None else self.center - self.radius

    @property
    def upper(self) -> Tensor:
        """``center + radius`` (the centre itself when not perturbed)."""
        return self.center if self.radius is None else self.center + self.radius


Params = dict[str, ParamBox]


def pos_neg(t: Tensor) -> tuple[Tensor, Tensor]:
    """``(max(t, 0), min(t, 0))``, same shape as ``t``: the split that picks lower or upper bounds per sign."""
    return t.clamp(min=0), t.clamp(max=0)


class Op(ABC):
    """A bound operator for one layer of a chain network.

    ``param_names`` maps the operator's roles (``"weight"``, ``"bias"``) to the model's parameter
    names; ``module`` is the torch module whose current parameter values are used when a parameter
    is not part of the weight domain.
    """

    param_names: dict[str, str] = {}
    #: elementwise operators map a box with independent coordinates to such a box
    elementwise: bool = False
    #: each output coordinate has parameters of its own (dense layers): with a fixed input the output
    #: set is a box with independent coordinates
    independent_rows: bool = False
    #: needs the bounds of its input to relax (activations)
    nonlinear: bool = False

    def __init__(self, name: str):
        self.name = name

    @abstractmethod
    def forward(self, x: Tensor, p: Params) -> Tensor:
        """The layer at the parameter centres (used for shape inference and checks)."""

    @abstractmethod
    def interval(self, lo: Tensor, hi: Tensor, p: Params) -> tuple[Tensor, Tensor]:
        """Sound interval bounds of the output over the input interval and the parameter box."""

    @abstractmethod
    def backward(self, A: Tensor, lo: Tensor, hi: Tensor, p: Params,
                 relax: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(A_in, const)`` with ``A·z ≥ A_in·h + const`` (see module docstring)."""

    def concretise(self, A: Tensor, x: Tensor, p: Params) -> Tensor | None:
        """Lower bound ``[B, S]`` of ``A·op(x)`` for a *fixed* input ``x`` over the parameter box, when the
        operator can give it more cheaply than a backward step and a concretisation (``None``: it cannot)."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"


def batch_dot(A: Tensor, t: Tensor) -> Tensor:
    """``Σ A[b, s, ...] * t[b, ...]`` over the non-leading dimensions: ``[B, S]``."""
    return torch.bmm(A.flatten(2), t.reshape(t.shape[0], -1, 1)).squeeze(-1)
