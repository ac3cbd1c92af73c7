"""Training one task: the optimiser settings (:class:`TrainConfig`), the loop over minibatches
(:func:`fit`), and the losses it adds up — cross-entropy through a masked head
(:mod:`~lirpa_lid.continual.heads`), the paper's regularisers (:func:`regulariser`), a learner's
penalty, and a replay loss on buffered items of earlier tasks (:func:`replay_loss`).

Every learner (the LID learner and each baseline) trains through :func:`fit`; what differs between
them is a penalty, a step hook (A-GEM's gradient projection) or an after-step hook (projection into
a LID or a box).

The loop over tasks and the metrics moved to :mod:`~lirpa_lid.continual.loop` and
:mod:`~lirpa_lid.continual.metrics`; their names stay importable from here (``reproductions/`` and
``benchmarks/`` import them from this module).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lirpa_lid.continual.heads import Head, head_logits, head_loss, head_targets
from lirpa_lid.continual.loop import ContinualResult, Learner, run_continual
from lirpa_lid.continual.metrics import (
                                         accuracy,
                                         average_accuracy,
                                         backward_transfer,
                                         correct,
                                         forgetting,
                                         negative_flip_rate,
)
from lirpa_lid.continual.replay import ReplayBuffer
from lirpa_lid.datasets import Split
from lirpa_lid.errors import InputError

__all__ = [
    # this module
    "Penalty", "TrainConfig", "fit", "regulariser", "replay_loss",
    # heads (continual.heads), the loop (continual.loop) and metrics (continual.metrics), importable from here
    "ContinualResult", "Head", "Learner", "accuracy", "average_accuracy", "backward_transfer", "correct",
    "forgetting", "head_logits", "head_loss", "head_targets", "negative_flip_rate", "run_continual",
]

#: a learner's extra loss term ``penalty(model, x, y) → scalar`` (e.g. EWC's quadratic anchor)
Penalty = Callable[[nn.Module, Tensor, Tensor], Tensor]


# ------------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class TrainConfig:
    """Training one task: Adam (the paper's default optimiser; ``optimizer="sgd"`` for plain SGD),
    ``epochs`` passes of shuffled minibatches, optional L2 / "unbias" regularisers."""

    epochs: int = 5
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    l2: float = 0.0
    unbias: float = 0.0
    replay_batch: int | None = None

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1 or not (self.lr > 0 and math.isfinite(self.lr)):
            raise InputError(f"bad training configuration {self}")
        if self.optimizer not in ("adam", "sgd"):
            raise InputError(f"TrainConfig.optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")

    def make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """A fresh optimiser over ``model``'s parameters: Adam or plain SGD at ``lr``."""
        cls = torch.optim.Adam if self.optimizer == "adam" else torch.optim.SGD
        return cls(model.parameters(), lr=self.lr)


# ------------------------------------------------------------------------------- losses
def regulariser(model: nn.Module, x: Tensor, l2: float = 0.0, unbias: float = 0.0, head: Head = None,
                input_range: tuple[float, float] = (0.0, 1.0), generator: torch.Generator | None = None) -> Tensor:
    """The paper's training regularisers for the nominal model (they make LIDs larger).

    ``l2 · Σ_tensors ‖θ‖₂`` (the norm, not its square) plus ``unbias · Σ_items ‖softmax(f(r)) − 1/K‖₂``
    on uniform random inputs ``r`` in ``input_range`` (one per item of ``x``): predictions away from the
    data are pushed towards uniform.
    """
    total = x.new_zeros(())
    if l2:
        total = total + l2 * sum(torch.linalg.vector_norm(p) for p in model.parameters())
    if unbias:
        lo, hi = input_range
        r = torch.rand(x.shape, generator=generator, dtype=x.dtype) * (hi - lo) + lo
        probs = torch.softmax(head_logits(model(r), head), dim=-1)
        total = total + unbias * (probs - probs.mean(dim=-1, keepdim=True)).norm(dim=-1).sum()
    return total


def replay_loss(model: nn.Module, buffer: ReplayBuffer, n: int, heads: Callable[[int], Head],
                generator: torch.Generator) -> Tensor:
    """Cross-entropy on ``n`` items sampled from ``buffer``, each through its own task's head."""
    x, y, ids = buffer.sample(n, generator)
    logits = model(x)
    losses = []
    for t in ids.unique().tolist():
        sel = ids == t
        losses.append(head_loss(logits[sel], y[sel], heads(t)) * sel.sum())
    return torch.stack(losses).sum() / len(ids)


# ------------------------------------------------------------------------------- the loop over minibatches
def fit(model: nn.Module, data: Split, config: TrainConfig, *, head: Head = None, seed: int = 0,
        optimizer: torch.optim.Optimizer | None = None, penalty: Penalty | None = None,
        before_step: Callable[[], None] | None = None,
        after_step: Callable[[Tensor, Tensor], None] | None = None,
        replay: ReplayBuffer | None = None, replay_heads: Callable[[int], Head] | None = None) -> list[float]:
    """Train ``model`` on one task; returns the mean loss of each epoch.

    Per minibatch: loss = cross-entropy over ``head`` + regularisers + ``penalty(model, x, y)`` (+ the
    replay loss on a buffer batch of the same size, if ``replay`` is given); backward;
    ``before_step()`` (e.g. A-GEM's gradient projection); ``optimizer.step()``; ``after_step(x, y)``
    (e.g. projection into a LID). Shuffling and the regularisers' random inputs are seeded.
    ``optimizer``: default ``config.make_optimizer(model)``; pass one to keep its state across tasks
    or to train with other settings. The model is left in eval mode.

    Raises:
        InputError: ``data`` is empty.
    """
    if len(data) == 0:
        raise InputError("cannot train on an empty split")
    opt = optimizer or config.make_optimizer(model)
    g = torch.Generator().manual_seed(int(seed))
    heads = replay_heads or (lambda t: None)
    model.train()
    history = []
    for _ in range(config.epochs):
        perm = torch.randperm(len(data), generator=g)
        total, batches = 0.0, 0
        for start in range(0, len(data), config.batch_size):
            idx = perm[start:start + config.batch_size]
            xb, yb = data.x[idx], data.y[idx]
            opt.zero_grad(set_to_none=True)
            loss = _minibatch_loss(model, xb, yb, config, head, penalty, replay, heads, g)
            loss.backward()
            if before_step is not None:
                before_step()
            opt.step()
            if after_step is not None:
                after_step(xb, yb)
            total += float(loss.detach())
            batches += 1
        history.append(total / max(batches, 1))
    model.eval()
    return history


def _minibatch_loss(model: nn.Module, xb: Tensor, yb: Tensor, config: TrainConfig, head: Head,
                    penalty: Penalty | None, replay: ReplayBuffer | None, heads: Callable[[int], Head],
                    g: torch.Generator) -> Tensor:
    """Cross-entropy over ``head`` + regularisers + penalty + replay loss (in this order: they share ``g``)."""
    loss = head_loss(model(xb), yb, head)
    if config.l2 or config.unbias:
        loss = loss + regulariser(model, xb, config.l2, config.unbias, head, generator=g)
    if penalty is not None:
        loss = loss + penalty(model, xb, yb)
    if replay is not None and len(replay):
        loss = loss + replay_loss(model, replay, config.replay_batch or len(xb), heads, g)
    return loss
