"""Replay buffers: per-task capacities, seeded subsets of the given items, sampling with task indices."""
from __future__ import annotations

import pytest
import torch

from lirpa_lid import InputError
from lirpa_lid.continual.replay import ReplayBuffer


def _items(task, n=50):
    x = torch.arange(n * 3, dtype=torch.float32).reshape(n, 3) + 1000 * task
    return x, torch.full((n,), task)


def test_capacity_per_task_and_subsets_of_the_given_items():
    buf = ReplayBuffer([10, 0, 60], seed=1)
    assert buf.add(0, *_items(0)) == 10 and buf.add(1, *_items(1)) == 0 and buf.add(2, *_items(2)) == 50
    assert buf.add(3, *_items(3)) == 0            # beyond the list: capacity 0
    assert buf.tasks == [0, 2] and len(buf) == 60 and buf.size(1) == 0
    x, y = buf.items(0)
    given = {tuple(r.tolist()) for r in _items(0)[0]}
    assert all(tuple(r.tolist()) in given for r in x) and len({tuple(r.tolist()) for r in x}) == 10
    assert (y == 0).all()
    assert buf.items(2, 5)[0].shape == (5, 3)
    with pytest.raises(InputError, match="no items of task 1"):
        buf.items(1)


def test_sampling_keeps_task_indices_and_is_seeded():
    def fill(seed):
        buf = ReplayBuffer(20, seed=seed)
        for t in range(3):
            buf.add(t, *_items(t))
        return buf

    a, b = fill(0), fill(0)
    xa, ya, ia = a.sample(25, torch.Generator().manual_seed(3))
    xb, yb, ib = b.sample(25, torch.Generator().manual_seed(3))
    assert torch.equal(xa, xb) and torch.equal(ia, ib)
    assert torch.equal(ya, ia)                     # the labels here are the task indices
    assert ((xa // 1000) == ia.unsqueeze(1)).all()  # every item comes with its own task index
    x, y, ids = a.all()
    assert len(x) == 60 and sorted(ids.unique().tolist()) == [0, 1, 2]
    assert a.sample(1000)[0].shape[0] == 60        # never more than stored
    x, y, ids = a.all(tasks=[2])
    assert (ids == 2).all()


def test_unbounded_and_errors():
    buf = ReplayBuffer(None)
    assert buf.add(0, *_items(0, 7)) == 7
    with pytest.raises(InputError, match="empty"):
        ReplayBuffer(3).all()
    with pytest.raises(InputError, match="non-negative"):
        ReplayBuffer([-1])
    with pytest.raises(InputError, match="labels"):
        buf.add(1, torch.zeros(3, 2), torch.zeros(4))
