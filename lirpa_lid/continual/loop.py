"""The continual-learning loop: a :class:`Learner` protocol and :func:`run_continual`, which drives any
learner through a task sequence and records what happened.

A *learner* owns a model and learns tasks one after another (``learn(t, tasks)``); it may hold
certificates (:class:`~lirpa_lid.certificate.certify.Certificate`) for earlier tasks whose domains contain
its current weights. :func:`run_continual` records (:class:`ContinualResult`):

* the accuracy matrix ``A[i][j]`` — test accuracy on task ``j`` after learning task ``i``;
* certified bounds ``C[i][j]`` — the finite-sample (Clopper–Pearson) lower bound of the certificate
  for task ``j`` in force after task ``i`` (None: no certificate), and the certified fraction of the
  held-out items behind it;
* negative flips — the fraction of task ``j``'s test items that were correct right after task ``j``
  was learned and are wrong at the end.

The loop checks what makes a certificate apply: after every task, the learner's weights must lie in
the domain of every certificate it reports (exact float64 check; a violation raises). The metrics
themselves are the pure functions of :mod:`~lirpa_lid.continual.metrics`.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from torch import Tensor, nn

from lirpa_lid.certificate.certify import Certificate
from lirpa_lid.continual.metrics import (
                                         accuracy,
                                         average_accuracy,
                                         backward_transfer,
                                         correct,
                                         forgetting,
                                         negative_flip_rate,
)
from lirpa_lid.continual.tasks import SplitTask
from lirpa_lid.errors import CertificateError, InputError


class Learner(Protocol):
    """A continual learner: ``learn(t, tasks)`` trains on ``tasks[t]`` (and may prepare for the next,
    e.g. compute a LID); ``certificates()`` maps earlier tasks to certificates whose domains contain
    the current weights (empty for uncertified learners). An optional ``details()`` returns a JSON-able
    dict of learner-specific records (kept in :attr:`ContinualResult.details`)."""

    name: str
    model: nn.Module

    def learn(self, t: int, tasks: Sequence[SplitTask]) -> None:
        """Learn task ``t`` of ``tasks`` (the learner may look at the others, e.g. for a look-ahead)."""
        ...

    def certificates(self) -> dict[int, Certificate]:
        """Task index → the certificate in force for it; every domain contains the current weights."""
        ...


@dataclass
class ContinualResult:
    """What :func:`run_continual` records (see module docstring); ``details`` is learner-specific.

    ``accuracy``, ``certified``, ``certified_fraction``: ``[T][T]`` (row: after task ``i``; column:
    task ``j``). ``negative_flips``: ``[T]`` (None for the last task). ``stage_seconds``: ``[T]``.
    """

    learner: str
    accuracy: list[list[float]]
    certified: list[list[float | None]]
    certified_fraction: list[list[float | None]]
    negative_flips: list[float | None]
    stage_seconds: list[float]
    details: dict = field(default_factory=dict)

    @property
    def final_accuracy(self) -> list[float]:
        """Test accuracy on every task after the last one (the last row of the accuracy matrix)."""
        return self.accuracy[-1]

    def summary(self) -> dict:
        """Average accuracy, forgetting, backward transfer, mean certified bound and negative flips, time."""
        certs = [c for c in self.certified[-1] if c is not None]
        flips = [f for f in self.negative_flips if f is not None]
        return {"learner": self.learner, "average_accuracy": average_accuracy(self.accuracy),
                "forgetting": forgetting(self.accuracy), "backward_transfer": backward_transfer(self.accuracy),
                "mean_certified_bound": sum(certs) / len(certs) if certs else None,
                "mean_negative_flips": sum(flips) / len(flips) if flips else None,
                "seconds": sum(self.stage_seconds)}

    def as_dict(self) -> dict:
        """JSON-able form: every recorded field, the :meth:`summary` and the details."""
        return {"learner": self.learner, "accuracy": self.accuracy, "certified": self.certified,
                "certified_fraction": self.certified_fraction, "negative_flips": self.negative_flips,
                "stage_seconds": self.stage_seconds, "summary": self.summary(), "details": self.details}


def run_continual(learner: Learner, tasks: Sequence[SplitTask], log: Callable[[str], None] | None = None
                  ) -> ContinualResult:
    """Drive ``learner`` through ``tasks``; evaluate every task after every stage (see module docstring).

    Raises:
        InputError: no tasks.
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
        row_b, row_k = _certified_row(learner, certs, t, T)
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


def _certified_row(learner: Learner, certs: dict[int, Certificate], t: int, T: int
                   ) -> tuple[list[float | None], list[float | None]]:
    """Bounds and certified fractions per task after stage ``t``; checks every domain holds the weights."""
    row_b: list[float | None] = [None] * T
    row_k: list[float | None] = [None] * T
    for j, cert in certs.items():
        outside = cert.domain.violations(learner.model)
        if outside:
            raise CertificateError(f"{learner.name}: the certificate for task {j} does not cover the "
                                   f"weights after task {t}: " + "; ".join(outside))
        row_b[j], row_k[j] = cert.bound, cert.empirical
    return row_b, row_k
