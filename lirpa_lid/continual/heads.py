"""Masked heads: which of a model's outputs compete for a task's decision.

In task-incremental learning (the paper's masked head) only the current task's classes compete: the
logits are restricted to those classes and the labels become positions within them. ``head=None``
means every output competes (class- and domain-incremental learning). Training
(:mod:`~lirpa_lid.continual.training`), evaluation (:mod:`~lirpa_lid.continual.metrics`) and the
baselines all read heads through these three functions.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from lirpa_lid.errors import InputError

#: the classes of a masked head, in increasing order of the outputs they index, or None (all outputs)
Head = Sequence[int] | None


def head_logits(logits: Tensor, head: Head) -> Tensor:
    """The logits of a masked head's classes (all logits without a head): ``[..., K] → [..., |head|]``."""
    if head is None:
        return logits
    return logits.index_select(-1, torch.as_tensor(list(head), device=logits.device))


def head_targets(y: Tensor, head: Head) -> Tensor:
    """Labels as positions within the head (unchanged without a head).

    Raises:
        InputError: a label is not one of the head's classes.
    """
    if head is None:
        return y
    cls = torch.as_tensor(list(head), device=y.device)
    hit = y.unsqueeze(-1) == cls
    if not bool(hit.any(-1).all()):
        raise InputError(f"labels {sorted(set(y.tolist()) - set(cls.tolist()))} are not in the head {list(head)}")
    return hit.to(torch.int64).argmax(-1)


def head_loss(logits: Tensor, y: Tensor, head: Head) -> Tensor:
    """Mean cross-entropy over the head's classes: logits ``[B, K]``, labels ``[B]`` → a scalar."""
    return F.cross_entropy(head_logits(logits, head), head_targets(y, head))
