"""The continual-learning loop, shared training code, and the metrics.

A *learner* owns a model and learns tasks one after another (``learn(t, tasks)``); it may hold
certificates (:class:`~lirpa_lid.certificate.certify.Certificate`) for earlier tasks whose domains contain
its current weights. :func:`run_continual` drives any learner through a task sequence and records:

* the accuracy matrix ``A[i][j]`` — test accuracy on task ``j`` after learning task ``i``;
* certified bounds ``C[i][j]`` — the finite-sample (Clopper–Pearson) lower bound of the certificate
  for task ``j`` in force after task ``i`` (None: no certificate), and the certified fraction of the
  held-out items behind it;
* negative flips — the fraction of task ``j``'s test items that were correct right after task ``j``
  was learned and are wrong at the end.

The loop checks what makes a certificate apply: after every task, the learner's weights must lie in
the domain of every certificate it reports (exact float64 check; a violation raises).

Metrics on an accuracy matrix (``T`` tasks): :func:`average_accuracy` (mean over the tasks seen),
:func:`forgetting` (mean over ``j < T−1`` of ``max_{j ≤ i < T−1} A[i][j] − A[T−1][j]``, Chaudhry et
al.), :func:`backward_transfer` (mean over ``j < T−1`` of ``A[T−1][j] − A[j][j]``, Lopez-Paz &
Ranzato), :func:`negative_flip_rate`.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lirpa_lid.certificate.certify import Certificate
from lirpa_lid.continual.replay import ReplayBuffer
from lirpa_lid.continual.tasks import SplitTask
from lirpa_lid.datasets import Split
from lirpa_lid.errors import CertificateError, InputError

Head = Sequence[int] | None


# ------------------------------------------------------------------------------- heads and losses
def head_logits(logits: Tensor, head: Head) -> Tensor:
    """The logits of a masked head's classes (all logits without a head): ``[B, |head|]``."""
    if head is None:
        return logits
    return logits.index_select(-1, torch.as_tensor(list(head), device=logits.device))


def head_targets(y: Tensor, head: Head) -> Tensor:
    """Labels as positions within the head (unchanged without a head)."""
    if head is None:
        return y
    cls = torch.as_tensor(list(head), device=y.device)
    hit = y.unsqueeze(-1) == cls
    if not bool(hit.any(-1).all()):
        raise InputError(f"labels {sorted(set(y.tolist()) - set(cls.tolist()))} are not in the head {list(head)}")
    return hit.to(torch.int64).argmax(-1)


def head_loss(logits: Tensor, y: Tensor, head: Head) -> Tensor:
    """Cross-entropy over the head's classes."""
    return F.cross_entropy(head_logits(logits, head), head_targets(y, head))


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


# ------------------------------------------------------------------------------- training
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
        cls = torch.optim.Adam if self.optimizer == "adam" else torch.optim.SGD
        return cls(model.parameters(), lr=self.lr)


Penalty = Callable[[nn.Module, Tensor, Tensor], Tensor]


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
    """
    if len(data) == 0:
        raise InputError("cannot train on an empty split")
    opt = optimizer or config.make_optimizer(model)
    g = torch.Generator().manual_seed(int(seed))
    model.train()
    history = []
    for _ in range(config.epochs):
        perm = torch.randperm(len(data), generator=g)
        total, batches = 0.0, 0
        for start in range(0, len(data), config.batch_size):
            idx = perm[start:start + config.batch_size]
            xb, yb = data.x[idx], data.y[idx]
            opt.zero_grad(set_to_none=True)
            loss = head_loss(model(xb), yb, head)
            if config.l2 or config.unbias:
                loss = loss + regulariser(model, xb, config.l2, config.unbias, head, generator=g)
            if penalty is not None:
                loss = loss + penalty(model, xb, yb)
            if replay is not None and len(replay):
                heads = replay_heads or (lambda t: None)
                loss = loss + replay_loss(model, replay, config.replay_batch or len(idx), heads, g)
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


@torch.no_grad()
def correct(model: nn.Module, data: Split, head: Head = None, chunk: int = 2048) -> Tensor:
    """Bool ``[n]``: the model's prediction (argmax over the head) is the label."""
    model.eval()
    out = []
    for s in range(0, len(data), chunk):
        logits = head_logits(model(data.x[s:s + chunk]), head)
        out.append(logits.argmax(-1) == head_targets(data.y[s:s + chunk], head))
    return torch.cat(out)


def accuracy(model: nn.Module, data: Split, head: Head = None) -> float:
    return float(correct(model, data, head).double().mean())


# ------------------------------------------------------------------------------- metrics
def _check_matrix(A: Sequence[Sequence[float]]) -> int:
    T = len(A)
    if T == 0 or any(len(row) != len(A[0]) for row in A) or len(A[0]) < T:
        raise InputError("an accuracy matrix needs T rows (stages) of at least T columns (tasks)")
    return T


def average_accuracy(A: Sequence[Sequence[float]], stage: int = -1) -> float:
    """Mean accuracy over the tasks seen after ``stage`` (default: the last): ``mean_{j ≤ i} A[i][j]``."""
    T = _check_matrix(A)
    i = stage % T
    return sum(A[i][: i + 1]) / (i + 1)


def forgetting(A: Sequence[Sequence[float]]) -> float:
    """Average forgetting: mean over ``j < T−1`` of ``max_{j ≤ i < T−1} A[i][j] − A[T−1][j]`` (0 if T = 1)."""
    T = _check_matrix(A)
    if T == 1:
        return 0.0
    return sum(max(A[i][j] for i in range(j, T - 1)) - A[T - 1][j] for j in range(T - 1)) / (T - 1)


def backward_transfer(A: Sequence[Sequence[float]]) -> float:
    """Backward transfer: mean over ``j < T−1`` of ``A[T−1][j] − A[j][j]`` (negative: forgetting)."""
    T = _check_matrix(A)
    if T == 1:
        return 0.0
    return sum(A[T - 1][j] - A[j][j] for j in range(T - 1)) / (T - 1)


def negative_flip_rate(before: Tensor, after: Tensor) -> float:
    """Fraction of items correct ``before`` and wrong ``after`` (RCAT's NFR), bool tensors ``[n]``."""
    if before.shape != after.shape or before.numel() == 0:
        raise InputError("negative flips need two non-empty bool tensors of the same shape")
    return float((before & ~after).double().mean())


# ------------------------------------------------------------------------------- the loop
class Learner(Protocol):
    """A continual learner: ``learn(t, tasks)`` trains on ``tasks[t]`` (and may prepare for the next,
    e.g. compute a LID); ``certificates()`` maps earlier tasks to certificates whose domains contain
    the current weights (empty for uncertified learners)."""

    name: str
    model: nn.Module

    def learn(self, t: int, tasks: Sequence[SplitTask]) -> None: ...

    def certificates(self) -> dict[int, Certificate]: ...


@dataclass
class ContinualResult:
    """What :func:`run_continual` records (see module docstring); ``details`` is learner-specific."""

    learner: str
    accuracy: list[list[float]]
    certified: list[list[float | None]]
    certified_fraction: list[list[float | None]]
    negative_flips: list[float | None]
    stage_seconds: list[float]
    details: dict = field(default_factory=dict)

    @property
    def final_accuracy(self) -> list[float]:
        return self.accuracy[-1]

    def summary(self) -> dict:
        certs = [c for c in self.certified[-1] if c is not None]
        flips = [f for f in self.negative_flips if f is not None]
        return {"learner": self.learner, "average_accuracy": average_accuracy(self.accuracy),
                "forgetting": forgetting(self.accuracy), "backward_transfer": backward_transfer(self.accuracy),
                "mean_certified_bound": sum(certs) / len(certs) if certs else None,
                "mean_negative_flips": sum(flips) / len(flips) if flips else None,
                "seconds": sum(self.stage_seconds)}

    def as_dict(self) -> dict:
        return {"learner": self.learner, "accuracy": self.accuracy, "certified": self.certified,
                "certified_fraction": self.certified_fraction, "negative_flips": self.negative_flips,
                "stage_seconds": self.stage_seconds, "summary": self.summary(), "details": self.details}


def run_continual(learner: Learner, tasks: Sequence[SplitTask], log: Callable[[str], None] | None = None
                  ) -> ContinualResult:
    """Drive ``learner`` through ``tasks``; evaluate every task after every stage (see module docstring).

    Raises:
        CertificateError: a certificate the learner reports does not contain its current weights.
    """

    if not tasks:
        raise InputError("no tasks")
    T = len(tasks)
    A, C, K, seconds = [], [], [], []
    right_after: list[Tensor] = []
    for t in range(T):
        started = time.perf_counter()
        learner.learn(t, tasks)
        seconds.append(time.perf_counter() - started)
        A.append([accuracy(learner.model, task.test, task.head) for task in tasks])
        right_after.append(correct(learner.model, tasks[t].test, tasks[t].head))
        certs = learner.certificates()
        row_b: list[float | None] = [None] * T
        row_k: list[float | None] = [None] * T
        for j, cert in certs.items():
            outside = cert.domain.violations(learner.model)
            if outside:
                raise CertificateError(f"{learner.name}: the certificate for task {j} does not cover the "
                                       f"weights after task {t}: " + "; ".join(outside))
            row_b[j], row_k[j] = cert.bound, cert.empirical
        C.append(row_b)
        K.append(row_k)
        if log is not None:
            log(f"{learner.name}: after {tasks[t].name}: acc " + " ".join(f"{a:.3f}" for a in A[-1]) +
                ("; cert " + " ".join("-" if b is None else f"{b:.3f}" for b in row_b) if certs else "") +
                f" ({seconds[-1]:.0f}s)")
    final = [correct(learner.model, task.test, task.head) for task in tasks]
    flips = [negative_flip_rate(right_after[j], final[j]) if j < T - 1 else None for j in range(T)]
    details = getattr(learner, "details", lambda: {})()
    return ContinualResult(learner.name, A, C, K, flips, seconds, details)
