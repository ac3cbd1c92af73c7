"""Replay buffers: a few stored items per earlier task.

Used by the LID learner (when a new task falls short of its target accuracy, the domain is recomputed
from the current weights with one constraint per stored task, and the task is retrained with the
buffer replayed) and by A-GEM (its episodic memory). Items are stored with their task index, so a
task-incremental learner can use each item's own head.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lirpa_lid.errors import InputError


class ReplayBuffer:
    """Per-task stores of labelled items.

    ``capacity`` is the number of items kept per task: an int (every task), a sequence (task ``i``
    keeps ``capacity[i]``; tasks beyond its end keep 0) or None (everything). :meth:`add` keeps a
    seeded random subset. Inputs ``[n, *shape]``, labels ``[n]`` (already mapped for the setting).
    """

    def __init__(self, capacity: int | Sequence[int] | None = None, seed: int = 0):
        if capacity is not None:
            caps = [capacity] if isinstance(capacity, int) else list(capacity)
            if any(not isinstance(c, int) or c < 0 for c in caps):
                raise InputError(f"buffer capacities must be non-negative integers, got {capacity!r}")
        self.capacity = capacity
        self.generator = torch.Generator().manual_seed(int(seed))
        self._x: dict[int, Tensor] = {}
        self._y: dict[int, Tensor] = {}

    def capacity_of(self, task: int) -> int | None:
        """How many items of ``task`` the buffer keeps (None: all; 0 for tasks beyond a per-task list)."""
        if self.capacity is None:
            return None
        if isinstance(self.capacity, int):
            return self.capacity
        return self.capacity[task] if task < len(self.capacity) else 0

    def add(self, task: int, x: Tensor, y: Tensor) -> int:
        """Store a random subset (up to the task's capacity) of ``(x, y)`` for ``task``, replacing what
        was stored for it. Returns the number of items kept."""
        if x.shape[0] != y.shape[0]:
            raise InputError(f"{x.shape[0]} inputs but {y.shape[0]} labels")
        cap = self.capacity_of(task)
        n = x.shape[0] if cap is None else min(cap, x.shape[0])
        if n == 0:
            self._x.pop(task, None)
            self._y.pop(task, None)
            return 0
        idx = torch.randperm(x.shape[0], generator=self.generator)[:n]
        self._x[task], self._y[task] = x[idx].clone(), y[idx].clone()
        return n

    @property
    def tasks(self) -> list[int]:
        """Tasks with at least one stored item, in increasing order."""
        return sorted(self._x)

    def __len__(self) -> int:
        return sum(int(v.shape[0]) for v in self._y.values())

    def size(self, task: int) -> int:
        """The number of items stored for ``task`` (0 if none)."""
        return int(self._y[task].shape[0]) if task in self._y else 0

    def items(self, task: int, k: int | None = None) -> tuple[Tensor, Tensor]:
        """The first ``k`` (default: all) stored items of ``task``."""
        if task not in self._x:
            raise InputError(f"the buffer holds no items of task {task}")
        return self._x[task][:k], self._y[task][:k]

    def all(self, tasks: Sequence[int] | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Every stored item of ``tasks`` (default: all): inputs, labels, task indices."""
        tasks = self.tasks if tasks is None else [t for t in tasks if t in self._x]
        if not tasks:
            raise InputError("the buffer is empty")
        xs = [self._x[t] for t in tasks]
        ys = [self._y[t] for t in tasks]
        ids = [torch.full((self.size(t),), t, dtype=torch.int64) for t in tasks]
        return torch.cat(xs), torch.cat(ys), torch.cat(ids)

    def sample(self, n: int, generator: torch.Generator | None = None,
               tasks: Sequence[int] | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``n`` items drawn uniformly without replacement (all of them if fewer are stored)."""
        x, y, ids = self.all(tasks)
        idx = torch.randperm(x.shape[0], generator=generator or self.generator)[:n]
        return x[idx], y[idx], ids[idx]
