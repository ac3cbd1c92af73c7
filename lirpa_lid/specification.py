"""Specifications: what a locally invariant domain must preserve, computed from margin bounds.

A specification never propagates bounds itself. It supplies the specification matrix ``C`` (one row
per margin) and turns lower bounds of the margins ``C·f(x; θ)`` — valid for every θ in a weight
domain, computed by a bound backend — into values:

* **margin** ``m = C·f(x; θ)``; sign convention: ``m > 0`` means the property holds;
* **hard value**: the fraction of reference items whose margins are all certified positive
  (certified accuracy), or its class-balanced version;
* **soft value**: a differentiable surrogate of the hard value, used as the LID constraint;
* **defect** ``threshold − value`` (Cooper's convention: positive means violated).

Several specifications (one per earlier task) are handled by passing a list to the optimiser; each
has its own threshold.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .errors import SpecificationError


def threshold_from_accuracy(accuracy: float, increment: float | None = None,
                            limit: float | None = None) -> float:
    """The paper's threshold rule ``τ = min(max(a − increment, a/2), limit)``.

    Only the given parts apply: without ``increment`` τ starts from ``a``; without ``limit`` there is
    no cap. ``accuracy`` is the nominal (width-0) accuracy on the reference set.
    """
    for label, value in (("accuracy", accuracy), ("limit", limit)):
        if value is not None and not (0.0 <= float(value) <= 1.0):
            raise SpecificationError(f"{label} must lie in [0, 1], got {value}")
    if increment is not None and not (0.0 <= float(increment) <= 1.0):
        raise SpecificationError(f"increment must lie in [0, 1], got {increment}")
    tau = float(accuracy)
    if increment is not None:
        tau = max(tau - float(increment), tau / 2)
    if limit is not None:
        tau = min(tau, float(limit))
    return tau


def _as_labels(y: Tensor | Sequence[int], num_classes: int, name: str) -> Tensor:
    y = torch.as_tensor(y)
    if y.dim() == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.dim() != 1:
        raise SpecificationError(f"{name}: labels must be a 1-D tensor, got shape {tuple(y.shape)}")
    if y.is_floating_point():
        if not torch.isfinite(y).all():
            raise SpecificationError(f"{name}: labels contain NaN or inf")
        if (y != y.round()).any():
            raise SpecificationError(f"{name}: labels must be integers, got non-integral values")
    elif y.dtype == torch.bool or y.is_complex():
        raise SpecificationError(f"{name}: labels must be integers, got dtype {y.dtype}")
    y = y.to(torch.int64)
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        bad = y[(y < 0) | (y >= num_classes)][0].item()
        raise SpecificationError(f"{name}: label {bad} is out of range for {num_classes} classes "
                                 f"(labels must lie in 0..{num_classes - 1})")
    return y


class CertifiedAccuracy:
    """Certified (balanced) accuracy on a labelled reference set must stay ``≥ threshold``.

    Args:
        x: reference inputs ``[n, *input_shape]`` (finite floats, ``n ≥ 1``).
        y: labels ``[n]`` in ``0..num_classes−1``.
        num_classes: ``K ≥ 2``, the number of model outputs.
        threshold: τ in ``[0, 1]``.
        balanced: use the mean over the classes present of the per-class certified rate.
        temperature: ``T > 0`` of the soft surrogate.
        name: used in messages, logs and certificates.
        classes: the classes competing for the decision (default: all ``K``). Task-incremental
            learning compares only the current task's classes (the paper's masked head); every label
            must be one of them.

    Margins: for item ``i`` with label ``y_i`` the rows of ``C`` are ``e_{y_i} − e_j`` for the
    ``R = |classes| − 1`` classes ``j ≠ y_i`` (in increasing ``j``), so ``m_ij = f_{y_i} − f_j``; the
    item is certified when every margin lower bound is ``> 0`` (strict: ties are not certified).
    """

    kind = "certified_accuracy"

    def __init__(self, x: Tensor, y: Tensor | Sequence[int], num_classes: int, threshold: float,
                 balanced: bool = False, temperature: float = 10.0, name: str = "certified accuracy",
                 classes: Sequence[int] | None = None):
        if not isinstance(name, str) or not name:
            raise SpecificationError("a specification needs a non-empty name")
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
            raise SpecificationError(f"{name}: num_classes must be an integer >= 2, got {num_classes!r}")
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise SpecificationError(f"{name}: inputs must be a floating-point tensor")
        if x.dim() < 1 or x.shape[0] == 0:
            raise SpecificationError(f"{name}: the reference set is empty")
        if not torch.isfinite(x).all():
            raise SpecificationError(f"{name}: reference inputs contain NaN or inf")
        y = _as_labels(y, num_classes, name)
        if y.shape[0] != x.shape[0]:
            raise SpecificationError(f"{name}: {x.shape[0]} inputs but {y.shape[0]} labels")
        threshold = float(threshold)
        if not (0.0 <= threshold <= 1.0):  # also rejects NaN
            raise SpecificationError(f"{name}: threshold must lie in [0, 1], got {threshold}")
        temperature = float(temperature)
        if not (temperature > 0.0 and math.isfinite(temperature)):
            raise SpecificationError(f"{name}: temperature must be a positive number, got {temperature}")
        if classes is None:
            classes_t = torch.arange(num_classes)
        else:
            classes_t = torch.as_tensor(list(classes), dtype=torch.int64).unique()
            if classes_t.numel() < 2 or int(classes_t.min()) < 0 or int(classes_t.max()) >= num_classes:
                raise SpecificationError(f"{name}: classes must be at least two distinct labels in "
                                         f"0..{num_classes - 1}, got {list(classes)}")
            outside = ~torch.isin(y, classes_t)
            if outside.any():
                raise SpecificationError(f"{name}: label {int(y[outside][0])} is not among the competing "
                                         f"classes {classes_t.tolist()}")
        self.x, self.y = x.detach(), y.to(x.device)
        self.num_classes, self.threshold = num_classes, threshold
        self.balanced, self.temperature, self.name = bool(balanced), temperature, name
        self.classes = classes_t.to(x.device)

    # ------------------------------------------------------------------ structure
    def __len__(self) -> int:
        return int(self.x.shape[0])

    def subset(self, index: Tensor) -> CertifiedAccuracy:
        """The same specification restricted to the items ``index`` (a minibatch)."""
        out = object.__new__(CertifiedAccuracy)
        out.__dict__.update(self.__dict__)
        out.x, out.y = self.x[index], self.y[index]
        return out

    def with_threshold(self, threshold: float) -> CertifiedAccuracy:
        return CertifiedAccuracy(self.x, self.y, self.num_classes, threshold, self.balanced,
                                 self.temperature, self.name, self.classes.tolist())

    @property
    def rows(self) -> int:
        """Margins per item: the number of competing classes minus one."""
        return int(self.classes.numel()) - 1

    def spec_matrix(self) -> Tensor:
        """``C`` of shape ``[n, R, K]`` with rows ``e_y − e_j`` (``j ≠ y`` among ``classes``), in the
        inputs' dtype."""
        n, K, R = len(self), self.num_classes, self.rows
        others = self.classes.expand(n, R + 1)
        others = others[others != self.y.unsqueeze(1)].reshape(n, R)
        C = torch.zeros(n, R, K, dtype=self.x.dtype, device=self.x.device)
        rows = torch.arange(R, device=self.y.device).expand(n, R)
        C.scatter_(2, self.y.view(n, 1, 1).expand(n, R, 1), 1.0)
        C[torch.arange(n).unsqueeze(1), rows, others] = -1.0
        return C

    def margins(self, outputs: Tensor) -> Tensor:
        """Exact margins ``[n, R]`` from model outputs ``[n, K]`` (no weight domain)."""
        if outputs.shape != (len(self), self.num_classes):
            raise SpecificationError(f"{self.name}: outputs have shape {tuple(outputs.shape)}, expected "
                                     f"[{len(self)}, {self.num_classes}]")
        return torch.einsum("nsk,nk->ns", self.spec_matrix().to(outputs.dtype), outputs)

    @torch.no_grad()
    def nominal_value(self, model: nn.Module) -> float:
        """Hard value of the model's own weights (its (balanced) accuracy on the reference set)."""
        p = next(model.parameters(), None)
        x = self.x if p is None else self.x.to(p.dtype)
        return float(self.hard_value(self.margins(model(x))))

    def _check(self, lower: Tensor) -> None:
        if lower.shape != (len(self), self.rows):
            raise SpecificationError(f"{self.name}: margin bounds have shape {tuple(lower.shape)}, expected "
                                     f"[{len(self)}, {self.rows}]")
        if torch.isnan(lower).any():
            raise SpecificationError(f"{self.name}: margin bounds contain NaN")

    # ------------------------------------------------------------------ values
    def certified(self, lower: Tensor) -> Tensor:
        """Bool ``[n]``: every margin lower bound of the item is ``> 0``."""
        self._check(lower)
        return (lower > 0).all(dim=1)

    def _per_item_mean(self, per_item: Tensor) -> Tensor:
        if not self.balanced:
            return per_item.mean()
        counts = torch.bincount(self.y, minlength=self.num_classes)
        sums = torch.zeros(self.num_classes, dtype=per_item.dtype, device=per_item.device)
        sums = sums.index_add(0, self.y, per_item)
        present = counts > 0
        return (sums[present] / counts[present].to(per_item.dtype)).mean()

    def hard_value(self, lower: Tensor) -> Tensor:
        """Certified accuracy (or certified balanced accuracy), a scalar in ``[0, 1]``."""
        return self._per_item_mean(self.certified(lower).to(torch.float64))

    def soft_scores(self, lower: Tensor) -> Tensor:
        """Per-item surrogate ``[n]``: ``1 / (1 + Σ_j exp(−T·m_j))`` (differentiable).

        With IBP margins ``m_j = z_y^low − z_j^up`` this is the paper's softmax of the temperature-
        scaled worst-case logits at the true class; tighter (CROWN) margins give larger scores.
        """
        self._check(lower)
        z = torch.cat([torch.zeros_like(lower[:, :1]), -self.temperature * lower], dim=1)
        return torch.exp(-torch.logsumexp(z, dim=1))

    def soft_value(self, lower: Tensor) -> Tensor:
        """Mean (or class-balanced mean) of :meth:`soft_scores`, a differentiable scalar."""
        return self._per_item_mean(self.soft_scores(lower))

    def defect(self, value: Tensor | float) -> Tensor | float:
        """``threshold − value``: the constraint ``value ≥ threshold`` is violated when positive."""
        return self.threshold - value

    def violated(self, value: Tensor | float) -> bool:
        return float(self.defect(value)) > 0

    # ------------------------------------------------------------------ records
    def describe(self) -> dict:
        """JSON-able description (for certificates and logs)."""
        return {"kind": self.kind, "name": self.name, "n": len(self), "num_classes": self.num_classes,
                "classes": self.classes.tolist(), "balanced": self.balanced, "threshold": self.threshold,
                "temperature": self.temperature, "input_shape": list(self.x.shape[1:])}

    def __repr__(self) -> str:
        what = "balanced accuracy" if self.balanced else "accuracy"
        return (f"CertifiedAccuracy({self.name!r}: certified {what} >= {self.threshold:.4g} on "
                f"{len(self)} items, {self.num_classes} classes)")


Specification = CertifiedAccuracy
"""The specification type the optimiser accepts (one kind for now; a Protocol when there are more)."""


def as_spec_list(specs: CertifiedAccuracy | Sequence[CertifiedAccuracy]) -> list[CertifiedAccuracy]:
    """A single specification or a sequence of them as a list, with unique names."""
    items = [specs] if isinstance(specs, CertifiedAccuracy) else list(specs)
    if not items:
        raise SpecificationError("at least one specification is needed")
    for s in items:
        if not isinstance(s, CertifiedAccuracy):
            raise SpecificationError(f"not a specification: {type(s).__name__}")
    names = [s.name for s in items]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SpecificationError(f"specification names must be unique; repeated: {dupes}")
    return items
