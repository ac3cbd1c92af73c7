"""Parameter importance (diagonal Fisher, Synaptic Intelligence), the freeze masks built from it, and
the freezing policies that choose them (:class:`FreezingPolicy`).

The paper's "regularisation-inspired biases" steer the volume of a LID: a chosen fraction of the
parameter elements is frozen (width 0, via ``compute_lid(free=...)``), so the optimiser spends the
volume on the others. A :class:`FreezingPolicy` is such a bias (``Bias`` is its former name, kept as
an alias).

* **EWC-like**: importance on the *current* task's data; the *most* important elements are frozen
  (they are what the current task relies on).
* **Look-ahead**: importance on the *next* task's data; the *least* important elements are frozen
  (the next task will not need to move them), so the box is wide where the next task needs room.

Importance scores:

* :func:`fisher_diagonal` — empirical diagonal Fisher ``E[(∂ log p(y|x; θ) / ∂θ)²]`` over items
  (``mode="empirical"``, what the paper's bias uses), or the square of the gradient of the mean loss
  over the batch (``mode="batch"``, what the paper's EWC baseline uses).
* :func:`si_importance` — Synaptic Intelligence's path integral ``ω = Σ_steps g·(−Δθ)`` along a short
  training run on the data (a copy of the model is trained; the model is not changed).

Masks are dicts ``name -> bool tensor`` of parameter shape; :func:`freeze_mask` freezes *exactly*
``round(fraction · n)`` elements (ties broken by a seeded random order).
"""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from lirpa_lid.errors import InputError

ParamDict = dict[str, Tensor]
KINDS = ("fisher", "si")


def _restrict(logits: Tensor, y: Tensor, head: Sequence[int] | None) -> tuple[Tensor, Tensor]:
    """Logits and targets for a masked head (only ``head``'s classes compete) or unchanged."""
    if head is None:
        return logits, y
    cls = torch.as_tensor(list(head), device=logits.device)
    pos = (y.unsqueeze(-1) == cls).to(torch.int64).argmax(-1)
    return logits.index_select(-1, cls), pos


def fisher_diagonal(model: nn.Module, x: Tensor, y: Tensor, head: Sequence[int] | None = None,
                    mode: str = "empirical", chunk: int = 256) -> ParamDict:
    """Diagonal Fisher information of every parameter of ``model`` on ``(x, y)``.

    ``mode="empirical"``: mean over items of the squared per-item gradient of ``log p(y_i | x_i)``;
    ``mode="batch"``: squared gradient of the mean cross-entropy over all items. ``head``: classes a
    masked (task-incremental) head compares. Scores are ``≥ 0``, and exactly 0 for a parameter the
    outputs do not depend on.
    """
    if mode not in ("empirical", "batch"):
        raise InputError(f"unknown Fisher mode {mode!r}; choose 'empirical' or 'batch'")
    if x.shape[0] == 0 or x.shape[0] != y.shape[0]:
        raise InputError(f"Fisher needs a non-empty labelled batch, got {x.shape[0]} inputs and {y.shape[0]} labels")
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b.detach() for n, b in model.named_buffers()}
    if mode == "batch":
        model.zero_grad(set_to_none=True)
        logits, target = _restrict(model(x), y, head)
        grads = torch.autograd.grad(F.cross_entropy(logits, target), list(model.parameters()), allow_unused=True)
        return {n: (torch.zeros_like(p) if g is None else g.detach() ** 2)
                for (n, p), g in zip(model.named_parameters(), grads)}

    def log_lik(p: ParamDict, xi: Tensor, yi: Tensor) -> Tensor:
        out = functional_call(model, {**p, **buffers}, (xi.unsqueeze(0),))
        logits, target = _restrict(out, yi.unsqueeze(0), head)
        return F.log_softmax(logits, dim=-1).gather(-1, target.view(1, 1)).squeeze()

    per_item = vmap(grad(log_lik), in_dims=(None, 0, 0))
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    for s in range(0, x.shape[0], chunk):
        g = per_item(params, x[s:s + chunk], y[s:s + chunk])
        for n in total:
            total[n] += (g[n] ** 2).sum(0)
    return {n: t / x.shape[0] for n, t in total.items()}


def si_importance(model: nn.Module, x: Tensor, y: Tensor, head: Sequence[int] | None = None,
                  steps: int = 50, lr: float = 1e-3) -> ParamDict:
    """Synaptic Intelligence importance: train a copy of ``model`` with Adam (``lr``) for ``steps``
    full-batch steps on ``(x, y)`` and accumulate ``ω += g·(−Δθ)`` per step (``g`` the gradient that
    produced the step ``Δθ``), as the paper's ``SITracker``. ``model`` is not changed."""
    if steps < 1:
        raise InputError(f"SI needs at least one training step, got {steps}")
    work = copy.deepcopy(model)
    work.train()
    opt = torch.optim.Adam(work.parameters(), lr=lr)
    omega = {n: torch.zeros_like(p) for n, p in work.named_parameters()}
    for _ in range(steps):
        before = {n: p.detach().clone() for n, p in work.named_parameters()}
        opt.zero_grad(set_to_none=True)
        logits, target = _restrict(work(x), y, head)
        F.cross_entropy(logits, target).backward()
        grads = {n: (torch.zeros_like(p) if p.grad is None else p.grad.detach().clone())
                 for n, p in work.named_parameters()}
        opt.step()
        for n, p in work.named_parameters():
            omega[n] += grads[n] * (before[n] - p.detach())
    return omega


def importance(kind: str, model: nn.Module, x: Tensor, y: Tensor, head: Sequence[int] | None = None,
               si_steps: int = 50, si_lr: float = 1e-3) -> ParamDict:
    """``"fisher"`` (empirical) or ``"si"`` importance of every parameter element."""
    if kind == "fisher":
        return fisher_diagonal(model, x, y, head)
    if kind == "si":
        return si_importance(model, x, y, head, si_steps, si_lr)
    raise InputError(f"unknown importance kind {kind!r}; choose one of {KINDS}")


def freeze_mask(scores: Mapping[str, Tensor], fraction: float, which: str = "least",
                seed: int = 0) -> dict[str, Tensor]:
    """Boolean masks (True = frozen) of exactly ``round(fraction · n)`` of the ``n`` elements: the
    ``"least"`` or ``"most"`` important ones by ``scores`` (one global ranking over all tensors).
    Ties are broken by a random order drawn from ``seed``."""
    if not 0.0 <= float(fraction) <= 1.0:
        raise InputError(f"the frozen fraction must lie in [0, 1], got {fraction}")
    if which not in ("least", "most"):
        raise InputError(f"which must be 'least' or 'most', got {which!r}")
    names = list(scores)
    if not names:
        raise InputError("no importance scores given")
    flat = torch.cat([scores[n].detach().reshape(-1).double() for n in names])
    if not torch.isfinite(flat).all():
        raise InputError("importance scores contain NaN or inf")
    n = flat.numel()
    k = int(round(float(fraction) * n))
    g = torch.Generator().manual_seed(int(seed))
    shuffle = torch.randperm(n, generator=g)
    key = flat[shuffle] if which == "least" else -flat[shuffle]
    order = shuffle[torch.sort(key, stable=True).indices]
    frozen = torch.zeros(n, dtype=torch.bool)
    frozen[order[:k]] = True
    out, start = {}, 0
    for name in names:
        size = scores[name].numel()
        out[name] = frozen[start:start + size].reshape(scores[name].shape).to(scores[name].device)
        start += size
    return out


def free_from_frozen(frozen: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The ``free=`` masks of :func:`~lirpa_lid.lid.solve.compute_lid` (True = may move) from freeze masks."""
    return {n: ~m for n, m in frozen.items()}


@dataclass(frozen=True)
class FreezingPolicy:
    """Which parameter elements a LID freezes (the paper's "bias"): which importance, on which data,
    and whether the most or the least important elements are frozen.

    ``lookahead=True``: importance on the next task's training items, the ``fraction`` *least*
    important elements are frozen. ``lookahead=False`` (EWC-like): importance on the current task's
    training items, the ``fraction`` *most* important elements are frozen. ``n_items`` training items
    are used (the paper: 400).
    """

    kind: str = "fisher"
    lookahead: bool = True
    fraction: float = 0.825
    n_items: int = 400
    si_steps: int = 50
    si_lr: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InputError(f"unknown importance kind {self.kind!r}; choose one of {KINDS}")
        if not 0.0 <= self.fraction <= 1.0:
            raise InputError(f"FreezingPolicy.fraction must lie in [0, 1], got {self.fraction}")
        if self.n_items < 1:
            raise InputError(f"FreezingPolicy.n_items must be positive, got {self.n_items}")

    @property
    def label(self) -> str:
        """A short name for tables, e.g. ``"Fisher look-ahead q=0.825"`` or ``"SI (EWC-like) q=0.05"``."""
        name = {"fisher": "Fisher", "si": "SI"}[self.kind]
        return f"{name} {'look-ahead' if self.lookahead else '(EWC-like)'} q={self.fraction:g}"

    def frozen(self, model: nn.Module, x: Tensor, y: Tensor, head: Sequence[int] | None = None) -> dict[str, Tensor]:
        """Freeze masks from importance on ``(x, y)`` (the caller passes the next task's items for a
        look-ahead bias, the current task's otherwise)."""
        g = torch.Generator().manual_seed(self.seed)
        idx = torch.randperm(x.shape[0], generator=g)[:self.n_items]
        scores = importance(self.kind, model, x[idx], y[idx], head, self.si_steps, self.si_lr)
        return freeze_mask(scores, self.fraction, "least" if self.lookahead else "most", self.seed)


#: the former name of :class:`FreezingPolicy` (public API: ``from lirpa_lid import Bias`` keeps working)
Bias = FreezingPolicy
