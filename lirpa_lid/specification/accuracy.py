"""Certified (balanced) accuracy and local robustness of labelled items: the :class:`CertifiedAccuracy`
specification (see ``base.py`` for the protocol and the sign conventions)."""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lirpa_lid.digest import digest_data
from lirpa_lid.errors import SpecificationError
from lirpa_lid.specification.base import BoundQuery, Guarantee, SpecificationKind, check_margins, round_outward


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


def _as_bound(value: float | Tensor | None, x: Tensor, what: str, name: str) -> Tensor | None:
    """A scalar or a tensor broadcastable to one item ``[1, *input_shape]`` (α,β-CROWN's shapes)."""
    if value is None:
        return None
    # float64: the balls are built exactly and rounded outwards to the items' dtype (see _set_boxes)
    if isinstance(value, Tensor):
        t = value.detach().to(x.device)
        t = t.to(torch.float64) if t.is_floating_point() or t.dtype in (torch.int64, torch.int32) else t
    else:
        try:
            t = torch.as_tensor(value, dtype=torch.float64, device=x.device)
        except (TypeError, ValueError, RuntimeError):
            raise SpecificationError(f"{name}: {what} must be a number or a tensor, got {value!r}") from None
    if not t.is_floating_point():
        raise SpecificationError(f"{name}: {what} must be a number or a floating-point tensor")
    if not torch.isfinite(t).all():
        raise SpecificationError(f"{name}: {what} contains NaN or inf")
    try:
        torch.broadcast_shapes(t.shape, x.shape)
    except RuntimeError:
        raise SpecificationError(f"{name}: {what} has shape {tuple(t.shape)}, not broadcastable to the "
                                 f"inputs' shape {tuple(x.shape)}") from None
    if torch.broadcast_shapes(t.shape, x.shape) != x.shape or (t.dim() == x.dim() and t.shape[0] != 1):
        raise SpecificationError(f"{name}: {what} has shape {tuple(t.shape)}; it must be a number or "
                                 f"broadcastable to one item [1, {', '.join(map(str, x.shape[1:]))}] (per-item "
                                 "boxes, α,β-CROWN's 'box' specification, are not supported)")
    return t


def _record_value(t: Tensor | None) -> float | list | None:
    """JSON form of a scalar-or-tensor setting (a float when all elements are equal)."""
    if t is None:
        return None
    if t.numel() == 1 or bool((t == t.flatten()[0]).all()):
        return float(t.flatten()[0])
    return t.detach().cpu().double().tolist()


def log_soft_scores(lower: Tensor, temperature: float) -> Tensor:
    """``log`` of the per-item soft score ``1 / (1 + Σ_j exp(−T·m_j))`` from margin lower bounds ``[n, R]``:
    ``[n]``, computed in log space (no underflow for very negative margins). The one copy of the
    surrogate: :meth:`CertifiedAccuracy.soft_scores` is its ``exp``, interval baselines minimise its
    negation (the cross-entropy of the worst-case logits)."""
    z = torch.cat([torch.zeros_like(lower[:, :1]), -temperature * lower], dim=1)
    return -torch.logsumexp(z, dim=1)


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

        epsilon: local robustness: the radius of an L∞ ball around each item (a number, or a tensor
            broadcastable to one item ``[1, *input_shape]``, e.g. per channel after normalisation, as
            α,β-CROWN's data loaders return it). ``None``: the items themselves (certified accuracy).
        data_min, data_max: the ball is clipped to ``[data_min, data_max]`` (valid input range, same
            shapes as ``epsilon``); every item must lie in that range.

    Margins: for item ``i`` with label ``y_i`` the rows of ``C`` are ``e_{y_i} − e_j`` for the
    ``R = |classes| − 1`` classes ``j ≠ y_i`` (in increasing ``j``), so ``m_ij = f_{y_i} − f_j``; the
    item is certified when every margin lower bound is ``> 0`` (strict: ties are not certified). With
    ``epsilon`` the lower bounds hold over the item's whole ball as well as the weight domain.

    Finite-sample statement (see ``lirpa_lid.certificate``): certified on held-out items drawn i.i.d.,
    ``k`` of ``n`` give, with probability ``≥ 1 − δ``, expected (robust) accuracy ``≥`` the
    Clopper–Pearson bound for *every* weight vector of the domain at once.
    """

    guarantee = Guarantee.FINITE_SAMPLE

    def __init__(self, x: Tensor, y: Tensor | Sequence[int], num_classes: int, threshold: float,
                 balanced: bool = False, temperature: float = 10.0, name: str = "certified accuracy",
                 classes: Sequence[int] | None = None, epsilon: float | Tensor | None = None,
                 data_min: float | Tensor | None = None, data_max: float | Tensor | None = None):
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
        self.epsilon = _as_bound(epsilon, self.x, "epsilon", name)
        self.data_min = _as_bound(data_min, self.x, "data_min", name)
        self.data_max = _as_bound(data_max, self.x, "data_max", name)
        self.lower = self.upper = None
        if self.epsilon is None:
            if self.data_min is not None or self.data_max is not None:
                raise SpecificationError(f"{name}: data_min/data_max clip an epsilon ball; without epsilon "
                                         "they mean nothing")
        else:
            self._set_boxes()

    def _set_boxes(self) -> None:
        eps, lo_clip, hi_clip, x = self.epsilon, self.data_min, self.data_max, self.x
        if (eps < 0).any():
            raise SpecificationError(f"{self.name}: epsilon must be >= 0, got {_record_value(eps)}")
        x = x.double()
        for bound, bad, what in ((lo_clip, lambda b: x < b, "below data_min"), (hi_clip, lambda b: x > b,
                                                                                 "above data_max")):
            if bound is not None and bad(bound).any():
                item = int(bad(bound).flatten(1).any(1).nonzero()[0])
                raise SpecificationError(f"{self.name}: item {item} lies {what}; the clip range must contain "
                                         "every item (check data mean/std and data_min/data_max)")
        # x ∓ ε in float64, one more float64 ulp outwards (covers its rounding), clipped, then rounded
        # outwards to the items' dtype: the box that is bounded always contains the exact ball
        lower = torch.nextafter(x - eps, torch.full_like(x, -math.inf))
        upper = torch.nextafter(x + eps, torch.full_like(x, math.inf))
        if lo_clip is not None:
            lower = torch.maximum(lower, lo_clip)
        if hi_clip is not None:
            upper = torch.minimum(upper, hi_clip)
        dtype = self.x.dtype
        self.lower, self.upper = round_outward(lower, dtype, -1), round_outward(upper, dtype, +1)

    @property
    def kind(self) -> SpecificationKind:
        """Certified accuracy, or local robustness with an epsilon ball."""
        return SpecificationKind.CERTIFIED_ACCURACY if self.epsilon is None else SpecificationKind.LOCAL_ROBUSTNESS

    # ------------------------------------------------------------------ structure
    def __len__(self) -> int:
        return int(self.x.shape[0])

    def subset(self, index: Tensor) -> CertifiedAccuracy:
        """The same specification restricted to the items ``index`` (a minibatch)."""
        out = object.__new__(CertifiedAccuracy)
        out.__dict__.update(self.__dict__)
        out.x, out.y = self.x[index], self.y[index]
        if self.lower is not None:
            out.lower, out.upper = self.lower[index], self.upper[index]
        return out

    def with_threshold(self, threshold: float) -> CertifiedAccuracy:
        """A new specification on the same items and options with ``threshold`` (re-validated)."""
        return CertifiedAccuracy(self.x, self.y, self.num_classes, threshold, self.balanced,
                                 self.temperature, self.name, self.classes.tolist(), self.epsilon,
                                 self.data_min, self.data_max)

    def query(self, dtype: torch.dtype | None = None) -> BoundQuery:
        """One query row per item: the item (or its clipped ε-ball), ``C = spec_matrix()``, ``d = 0``."""
        C = self.spec_matrix()
        q = BoundQuery(self.x, C, torch.zeros(C.shape[:2], dtype=C.dtype, device=C.device), self.lower,
                       self.upper)
        return q if dtype is None else q.to(dtype)

    def digest(self) -> str:
        """SHA-256 of the items and labels (``digest_data(x, y)``; ε and the clip range are in
        :meth:`describe`)."""
        return digest_data(self.x, self.y)

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
        check_margins(self.name, lower, (len(self), self.rows))

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
        return torch.exp(log_soft_scores(lower, self.temperature))

    def soft_value(self, lower: Tensor) -> Tensor:
        """Mean (or class-balanced mean) of :meth:`soft_scores`, a differentiable scalar."""
        return self._per_item_mean(self.soft_scores(lower))

    def defect(self, value: Tensor | float) -> Tensor | float:
        """``threshold − value``: the constraint ``value ≥ threshold`` is violated when positive."""
        return self.threshold - value

    def violated(self, value: Tensor | float) -> bool:
        """Whether ``value`` falls short of the threshold (:meth:`defect` ``> 0``)."""
        return float(self.defect(value)) > 0

    # ------------------------------------------------------------------ records
    def describe(self) -> dict:
        """JSON-able description (for certificates and logs)."""
        out = {"kind": self.kind, "name": self.name, "n": len(self), "num_classes": self.num_classes,
               "classes": self.classes.tolist(), "balanced": self.balanced, "threshold": self.threshold,
               "temperature": self.temperature, "input_shape": list(self.x.shape[1:])}
        if self.epsilon is not None:
            out.update({"epsilon": _record_value(self.epsilon), "norm": "inf",
                        "data_min": _record_value(self.data_min), "data_max": _record_value(self.data_max)})
        return out

    def __repr__(self) -> str:
        what = "balanced accuracy" if self.balanced else "accuracy"
        if self.epsilon is not None:
            what = f"robust {what} (L-inf eps={_record_value(self.epsilon)})"
        return (f"CertifiedAccuracy({self.name!r}: certified {what} >= {self.threshold:.4g} on "
                f"{len(self)} items, {self.num_classes} classes)")
