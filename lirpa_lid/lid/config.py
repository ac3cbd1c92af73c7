"""The LID optimiser's hyperparameters: one frozen, validated :class:`LIDConfig`.

Bound methods are parsed once, here (``"crown"``, ``"CROWN"`` and :attr:`BoundMethod.CROWN` give the same
config); everything downstream compares :class:`~lirpa_lid.bounds.core.BoundMethod` members, never strings.
What a config contributes to reports and cached runs is :meth:`LIDConfig.describe` (method names as
strings).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor

from lirpa_lid.bounds.core import BoundMethod
from lirpa_lid.errors import InputError

#: size measures the optimiser can maximise (see :class:`LIDConfig`)
OBJECTIVES = ("mean_width", "log_volume")


@dataclass(frozen=True)
class LIDConfig:
    """Hyperparameters of :func:`~lirpa_lid.lid.solve.compute_lid` (defaults: the authors' MNIST settings).

    ``method`` (a :class:`BoundMethod`, or its name: parsed on construction) bounds the margins while the
    box grows. ``objective`` is the size maximised: ``"mean_width"`` (mean of ``l + u`` over the free
    elements) or ``"log_volume"`` (mean of ``log(l + u + log_floor)``). ``weights`` optionally maps
    parameter names to non-negative floats or tensors (broadcastable to the parameter) that weight each
    element's width in the objective (default 1). ``max_width`` caps each offset (``l`` and ``u``
    separately, as in the authors' code). ``eval_dtype`` is the arithmetic of the final evaluation of the
    candidates (float64 by default; optimisation itself runs in the model's dtype). ``time_limit``
    (seconds, optional) makes the growth anytime: the loop stops at the first iteration after the limit and
    keeps a snapshot of where it got to (the evaluation of the snapshots, which makes every candidate
    sound, still runs after it).

    ``certify_method`` (a :class:`BoundMethod`, its name, or ``None``: the same as ``method``) bounds the
    final evaluation of the snapshots, so a box shaped by a cheap method (IBP: one bound per iteration) can
    be certified by a tighter one (CROWN: a few bounds per snapshot). ``grow`` > 1 then tries to enlarge
    every snapshot that meets its thresholds: its offsets are scaled by the largest factor in ``[1, grow]``
    that still meets every threshold (:func:`~lirpa_lid.margin.largest_scale`: a ladder of factors, then
    ``shrink_steps`` bisection steps), clipped to ``max_width`` and the outer box. With float64
    evaluation, these searches (and the shrinking of snapshots below a threshold) run in float32 and the
    factor found is bounded in float64.

    Raises:
        InputError: on construction, naming the field at fault (and the valid choices).
    """

    iterations: int = 200
    primal_lr: float = 0.33
    dual_lr: float = 0.01
    penalty: float = 1.0
    penalty_growth: float = 1.01
    penalty_tolerance: float = 0.05
    penalty_max: float = 1e3
    penalty_restart: bool = True
    snapshot_every: int = 20
    batch_size: int = 500
    method: BoundMethod = BoundMethod.CROWN
    objective: str = "mean_width"
    log_floor: float = 1e-6
    max_width: float = 10.0
    seed: int = 0
    progress: bool = True
    weights: Mapping[str, float | Tensor] | None = field(default=None, compare=False, hash=False)
    adaptive_lr: bool = True
    lr_factor: float = 1.1
    lr_multiplier_range: tuple[float, float] = (1 / 20, 20.0)
    lr_decrease_above: float = 0.05
    shrink_steps: int = 8
    rollback_defect: float | None = 0.2
    dual_violation: str = "hard"
    eval_dtype: torch.dtype = torch.float64
    time_limit: float | None = None
    certify_method: BoundMethod | None = None
    grow: float = 1.0

    def __post_init__(self) -> None:
        self._check_counts()
        self._check_rates()
        self._check_choices()
        self._parse_methods()
        self._check_growth_and_time()
        self._check_weights()

    # ------------------------------------------------------------------ validation, one concern each
    def _bad(self, name: str, why: str) -> InputError:
        return InputError(f"LIDConfig.{name} {why}, got {getattr(self, name)!r}")

    def _check_counts(self) -> None:
        for name in ("iterations", "snapshot_every", "batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise self._bad(name, "must be a positive integer")
        if not isinstance(self.shrink_steps, int) or self.shrink_steps < 0:
            raise self._bad("shrink_steps", "must be a non-negative integer")

    def _check_rates(self) -> None:
        for name in ("primal_lr", "dual_lr", "penalty", "penalty_max", "max_width", "log_floor"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise self._bad(name, "must be a positive finite number")
        if not (self.penalty_growth >= 1 and math.isfinite(self.penalty_growth)):
            raise self._bad("penalty_growth", "must be >= 1")
        if not (self.lr_factor >= 1 and math.isfinite(self.lr_factor)):
            raise self._bad("lr_factor", "must be >= 1")
        if self.rollback_defect is not None and not (0 < self.rollback_defect <= 1):
            raise self._bad("rollback_defect", "must be in (0, 1] or None")
        if not (self.penalty_tolerance >= 0 and self.lr_decrease_above >= 0):
            raise InputError("LIDConfig.penalty_tolerance and lr_decrease_above must be >= 0")
        lo, hi = self.lr_multiplier_range
        if not (0 < lo <= 1 <= hi < math.inf):
            raise self._bad("lr_multiplier_range", "must satisfy 0 < low <= 1 <= high")

    def _check_choices(self) -> None:
        if self.dual_violation not in ("hard", "soft"):
            raise self._bad("dual_violation", "must be 'hard' (the authors' choice) or 'soft'")
        if self.objective not in OBJECTIVES:
            raise self._bad("objective", f"must be one of {OBJECTIVES}")

    def _parse_methods(self) -> None:
        """Names become :class:`BoundMethod` members (``InputError`` lists the choices); frozen, hence
        ``object.__setattr__``."""
        object.__setattr__(self, "method", BoundMethod.parse(self.method))
        if self.certify_method is not None:
            object.__setattr__(self, "certify_method", BoundMethod.parse(self.certify_method))

    def _check_growth_and_time(self) -> None:
        if not (isinstance(self.grow, (int, float)) and not isinstance(self.grow, bool)
                and math.isfinite(self.grow) and self.grow >= 1):
            raise self._bad("grow", "must be a finite number >= 1 (1: snapshots are not enlarged)")
        if self.eval_dtype not in (torch.float32, torch.float64):
            raise self._bad("eval_dtype", "must be torch.float32 or torch.float64")
        if self.time_limit is not None and not (isinstance(self.time_limit, (int, float))
                                                and not isinstance(self.time_limit, bool)
                                                and math.isfinite(self.time_limit) and self.time_limit > 0):
            raise self._bad("time_limit", "must be a positive number of seconds or None")

    def _check_weights(self) -> None:
        if self.weights is None:
            return
        if not isinstance(self.weights, Mapping):
            raise self._bad("weights", "must map parameter names to weights")
        for n, w in self.weights.items():
            w = torch.as_tensor(w, dtype=torch.float64)
            if not torch.isfinite(w).all() or (w < 0).any():
                raise InputError(f"LIDConfig.weights[{n!r}] must be finite and >= 0")

    # ------------------------------------------------------------------ derived
    @property
    def final_method(self) -> BoundMethod:
        """The method that certifies the candidates (``certify_method``, else ``method``)."""
        return self.method if self.certify_method is None else self.certify_method

    def describe(self) -> dict:
        """The settings a report records, JSON-ready (bound methods by name, e.g. ``"CROWN"``)."""
        return {"method": self.method.value, "certify_method": self.final_method.value,
                "grow": self.grow, "iterations": self.iterations,
                "primal_lr": self.primal_lr, "dual_lr": self.dual_lr, "objective": self.objective,
                "batch_size": self.batch_size, "seed": self.seed, "time_limit": self.time_limit}
