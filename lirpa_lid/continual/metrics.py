"""Continual-learning metrics: pure functions of a model's predictions or of an accuracy matrix.

Predictions: :func:`correct` (which items a model gets right, through a masked head) and
:func:`accuracy`; :func:`negative_flip_rate` compares two such vectors (RCAT's NFR: correct before,
wrong after).

On an accuracy matrix ``A[i][j]`` (test accuracy on task ``j`` after learning task ``i``; ``T`` rows
of at least ``T`` columns): :func:`average_accuracy` (mean over the tasks seen), :func:`forgetting`
(mean over ``j < T−1`` of ``max_{j ≤ i < T−1} A[i][j] − A[T−1][j]``, Chaudhry et al.),
:func:`backward_transfer` (mean over ``j < T−1`` of ``A[T−1][j] − A[j][j]``, Lopez-Paz & Ranzato).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lirpa_lid.continual.heads import Head, head_logits, head_targets
from lirpa_lid.datasets import Split
from lirpa_lid.errors import InputError


# ------------------------------------------------------------------------------- predictions
@torch.no_grad()
def correct(model: nn.Module, data: Split, head: Head = None, chunk: int = 2048) -> Tensor:
    """Bool ``[n]``: the model's prediction (argmax over the head) is the label.

    Puts ``model`` in eval mode; evaluates ``chunk`` items at a time.
    """
    model.eval()
    out = []
    for s in range(0, len(data), chunk):
        logits = head_logits(model(data.x[s:s + chunk]), head)
        out.append(logits.argmax(-1) == head_targets(data.y[s:s + chunk], head))
    return torch.cat(out)


def accuracy(model: nn.Module, data: Split, head: Head = None) -> float:
    """Fraction of ``data`` the model gets right through ``head`` (mean of :func:`correct`, in float64)."""
    return float(correct(model, data, head).double().mean())


def negative_flip_rate(before: Tensor, after: Tensor) -> float:
    """Fraction of items correct ``before`` and wrong ``after`` (RCAT's NFR), bool tensors ``[n]``.

    Raises:
        InputError: the tensors differ in shape or are empty.
    """
    if before.shape != after.shape or before.numel() == 0:
        raise InputError("negative flips need two non-empty bool tensors of the same shape")
    return float((before & ~after).double().mean())


# ------------------------------------------------------------------------------- accuracy matrices
def _check_matrix(A: Sequence[Sequence[float]]) -> int:
    """The number of stages ``T`` of a valid accuracy matrix (``T`` rows of equal length ``≥ T``)."""
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
