"""Independent checks of a network against edit properties: never trust the LP alone.

:func:`check_properties` decides each property at the model's own weights by two methods that share
nothing with the editing LP:

* **proof**: native bound propagation (CROWN by default) in float64 with input splitting
  (:func:`lirpa_lid.certificate.refine.split_input_boxes`, within a budget of sub-boxes and seconds);
* **attack**: the float64 model on ``samples`` uniform inputs of the box, its corners (up to
  ``MAX_CORNER_DIMS`` inputs) and ``restarts`` runs of projected signed-gradient descent on the smallest
  margin (PGD), from a fixed seed. Any margin ≤ 0 found is a counterexample.

A property is ``certified`` when the proof verified it and the attack found nothing (the second can only
fail if the first is wrong: it is a guard against bugs and float64 rounding, not a second proof).
"""
from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lirpa_lid.bounds.core import BoundMethod
from lirpa_lid.certificate.refine import SplitStatus, split_input_boxes
from lirpa_lid.editing.properties import EditProperty

#: corners of the input box are evaluated when it has at most this many inputs
MAX_CORNER_DIMS = 12


@dataclass(frozen=True)
class CheckOptions:
    """Budgets of :func:`check_properties`: bound ``method``; per property at most ``max_boxes`` sub-boxes
    and ``time_limit`` seconds of input splitting; ``samples`` uniform inputs; ``restarts`` PGD runs of
    ``steps`` steps each; ``seed`` for sampling and PGD starts."""

    method: str = "CROWN"
    max_boxes: int = 4096
    time_limit: float | None = 60.0
    samples: int = 20_000
    restarts: int = 5
    steps: int = 50
    seed: int = 0


@dataclass(frozen=True)
class PropertyCheck:
    """How one property fared: the split's ``status`` (``SplitStatus`` value), its sub-boxes bounded,
    the smallest margin found by sampling and corners and by PGD (float64; > 0 satisfied), and a
    counterexample input ``[n_in]`` (from either method) or ``None``."""

    name: str
    proof: str
    sub_boxes: int
    sampled_margin: float
    attacked_margin: float
    counterexample: tuple[float, ...] | None

    @property
    def certified(self) -> bool:
        """Proved by bound propagation and not contradicted by the attack."""
        return (self.proof == SplitStatus.VERIFIED.value and self.counterexample is None
                and self.sampled_margin > 0 and self.attacked_margin > 0)

    def describe(self) -> dict:
        """A JSON record."""
        return {"name": self.name, "certified": self.certified, "proof": self.proof, "sub_boxes": self.sub_boxes,
                "sampled_margin": self.sampled_margin, "attacked_margin": self.attacked_margin,
                "counterexample": None if self.counterexample is None else list(self.counterexample)}


def check_properties(model: nn.Module, properties: Sequence[EditProperty], input_shape: tuple[int, ...],
                     options: CheckOptions = CheckOptions()) -> tuple[PropertyCheck, ...]:
    """One :class:`PropertyCheck` per property for ``model`` as it is (see the module docstring)."""
    method = BoundMethod.parse(options.method)
    split = split_input_boxes(model, [p.to_vnnlib() for p in properties], method=method, input_shape=input_shape,
                              max_boxes=options.max_boxes, time_limit=options.time_limit, branching="widest")
    model64 = copy.deepcopy(model).double().eval()
    for p in model64.parameters():
        p.requires_grad_(False)
    out = []
    for i, (prop, result) in enumerate(zip(properties, split.splits)):
        generator = torch.Generator().manual_seed(options.seed + i)
        sampled, x_s = _sampled(model64, prop, input_shape, options.samples, generator)
        attacked, x_a = _attacked(model64, prop, input_shape, options, generator)
        cex = result.counterexample.x if result.counterexample is not None else (
            x_s if sampled <= 0 else x_a if attacked <= 0 else None)
        out.append(PropertyCheck(prop.name, result.status.value, result.bounded, sampled, attacked,
                                 None if cex is None else tuple(float(v) for v in np.ravel(cex))))
    return tuple(out)


def _margins(model64: nn.Module, prop: EditProperty, x: torch.Tensor, input_shape: tuple[int, ...]) -> torch.Tensor:
    """Smallest row margin ``min_r (C f(x) − d)_r`` per input ``[N]`` (float64, differentiable in ``x``)."""
    y = model64(x.reshape(-1, *input_shape)).reshape(x.shape[0], -1)
    return (y @ torch.tensor(prop.C).T - torch.tensor(prop.d)).amin(dim=1)


def _sampled(model64: nn.Module, prop: EditProperty, input_shape: tuple[int, ...], n: int,
             generator: torch.Generator) -> tuple[float, np.ndarray]:
    """Smallest margin over ``n`` uniform inputs, the box's centre and corners, and where it is."""
    lo, hi = torch.tensor(prop.lower), torch.tensor(prop.upper)
    points = [lo + torch.rand(n, lo.numel(), generator=generator, dtype=torch.float64) * (hi - lo),
              ((lo + hi) / 2)[None]]
    if lo.numel() <= MAX_CORNER_DIMS:
        corners = torch.tensor(list(itertools.product((0.0, 1.0), repeat=lo.numel())), dtype=torch.float64)
        points.append(lo + corners * (hi - lo))
    x = torch.cat(points)
    with torch.no_grad():
        m = torch.cat([_margins(model64, prop, part, input_shape) for part in x.split(8192)])
    i = int(m.argmin())
    return float(m[i]), x[i].numpy()


def _attacked(model64: nn.Module, prop: EditProperty, input_shape: tuple[int, ...], options: CheckOptions,
              generator: torch.Generator) -> tuple[float, np.ndarray]:
    """Smallest margin PGD finds (signed-gradient steps of decaying size, projected onto the box)."""
    lo, hi = torch.tensor(prop.lower), torch.tensor(prop.upper)
    x = lo + torch.rand(options.restarts, lo.numel(), generator=generator, dtype=torch.float64) * (hi - lo)
    best, where = np.inf, x[0].numpy()
    for step in range(options.steps + 1):
        x = x.detach().requires_grad_(True)
        m = _margins(model64, prop, x, input_shape)
        i = int(m.argmin())
        if float(m[i].detach()) < best:
            best, where = float(m[i].detach()), x[i].detach().numpy().copy()
        if step == options.steps:
            break
        grad = torch.autograd.grad(m.sum(), x)[0]
        size = (hi - lo) * 0.25 * (1 - step / options.steps) + (hi - lo) * 1e-3
        x = torch.minimum(torch.maximum(x - size * grad.sign(), lo), hi)
    return best, where
