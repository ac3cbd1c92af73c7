"""Split-MNIST (and Split-Fashion-MNIST): five two-class tasks in three continual-learning settings.

Each task pairs one even and one odd digit; the pairing is random per seed (the evens and the odds
are permuted independently, task ``i`` = ``(even[i], odd[i])``, as in the paper's code). Settings:

* ``TIL`` (task-incremental): 10 outputs; at train and test time only the task's two logits compete
  (the paper's masked head), so a task's labels are its two digits;
* ``CIL`` (class-incremental): 10 outputs, all ten classes compete;
* ``DIL`` (domain-incremental): 2 outputs, the label is the digit's parity (``digit % 2``).

Every task has four disjoint splits (so that certificates are finite-sample statements):

* ``train`` — what learners train on (from MNIST's training split);
* ``lid`` — the items a LID is *optimised* on (``n_lid``; the paper's 400 certificate samples);
* ``cert`` — held-out items a LID is *certified* on (``n_cert``; never used to compute a domain);
* ``test`` — MNIST's test split, for the accuracy matrix.

``lid`` and ``cert`` come from a validation part of MNIST's training split (``val_fraction``, the
paper's 80/20 split) that no learner trains on. Data are read from IDX files
(:func:`lirpa_lid.datasets.load_mnist`); nothing is downloaded.

Models (:func:`make_model`) come from the model zoo (:mod:`lirpa_lid.models.zoo`): the paper's CNN
(:func:`paper_cnn`, 6,179 parameters) and an MLP (:func:`mlp`); both stay importable from here.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lirpa_lid.datasets import Split, load_mnist
from lirpa_lid.errors import InputError
from lirpa_lid.models.zoo import mnist_mlp, paper_cnn

SETTINGS = ("TIL", "CIL", "DIL")
ARCHITECTURES = ("cnn", "mlp")
# Bound plans the reproductions run by default: on the CNN a CROWN-optimised LID costs ≈ 25× IBP's, so
# CROWN certifies and grows IBP-shaped snapshots there; on the MLP CROWN also shapes.
DEFAULT_BOUND_PLANS = {"cnn": "IBP,IBP+CROWN", "mlp": "IBP,CROWN"}
EVENS, ODDS = (0, 2, 4, 6, 8), (1, 3, 5, 7, 9)


@dataclass(frozen=True)
class SplitTask:
    """One task of a split benchmark.

    ``digits``: the two original classes. ``classes``: the labels that compete for the decision
    (TIL: the two digits; CIL: ``0..9``; DIL: ``(0, 1)``). ``num_outputs``: the model's output size.
    Labels in every split are already mapped for the setting (DIL: parity).
    """

    index: int
    setting: str
    digits: tuple[int, int]
    classes: tuple[int, ...]
    num_outputs: int
    train: Split
    lid: Split
    cert: Split
    test: Split

    @property
    def name(self) -> str:
        """``"task i (a/b)"``: the index and the two digits (used in logs and tables)."""
        return f"task {self.index} ({self.digits[0]}/{self.digits[1]})"

    @property
    def head(self) -> tuple[int, ...] | None:
        """The classes a masked head restricts to (TIL), or None (all outputs compete)."""
        return self.classes if self.setting == "TIL" else None


def check_setting(setting: str) -> str:
    """``setting`` in upper case if it is one of :data:`SETTINGS` (``TIL``, ``CIL``, ``DIL``).

    Raises:
        InputError: an unknown setting (the message lists the valid ones).
    """
    s = str(setting).upper()
    if s not in SETTINGS:
        raise InputError(f"unknown continual-learning setting {setting!r}; choose one of {SETTINGS}")
    return s


def digit_pairs(seed: int, n_tasks: int = 5) -> list[tuple[int, int]]:
    """The task digit pairs of ``seed``: a random even and a random odd digit per task."""
    if not 1 <= n_tasks <= 5:
        raise InputError(f"Split-MNIST has 1 to 5 tasks, got {n_tasks}")
    g = torch.Generator().manual_seed(int(seed))
    evens = torch.tensor(EVENS)[torch.randperm(5, generator=g)].tolist()
    odds = torch.tensor(ODDS)[torch.randperm(5, generator=g)].tolist()
    return list(zip(evens, odds))[:n_tasks]


def _take(x: Tensor, y: Tensor, idx: Tensor, setting: str) -> Split:
    labels = y[idx] % 2 if setting == "DIL" else y[idx]
    return Split(x[idx].contiguous(), labels.contiguous())


def split_mnist_tasks(setting: str, seed: int = 0, *, n_tasks: int = 5, kind: str = "mnist",
                      data_dir: str | os.PathLike | None = None, n_train: int | None = None,
                      n_lid: int = 400, n_cert: int = 1000, n_test: int | None = None,
                      val_fraction: float = 0.2, data: tuple[Tensor, Tensor, Tensor, Tensor] | None = None
                      ) -> list[SplitTask]:
    """The tasks of Split-MNIST for ``setting`` and ``seed`` (see module docstring).

    Args:
        n_train: cap on training items per task (default: all, about 9,600 per task).
        n_lid, n_cert: LID optimisation / held-out certificate items per task, drawn without overlap
            from the validation part (``val_fraction`` of MNIST's training split, seeded).
        n_test: cap on test items per task (default: all, about 2,000).
        data: ``(x_train, y_train, x_test, y_test)`` instead of reading IDX files (for tests).

    Raises:
        InputError: unknown setting, too few validation items for ``n_lid + n_cert``, missing files.
    """
    setting = check_setting(setting)
    if not 0.0 < val_fraction < 1.0:
        raise InputError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    for name, v in (("n_lid", n_lid), ("n_cert", n_cert)):
        if not isinstance(v, int) or v < 1:
            raise InputError(f"{name} must be a positive integer, got {v!r}")
    if data is None:
        x_tr, y_tr = load_mnist("train", kind, data_dir)
        x_te, y_te = load_mnist("test", kind, data_dir)
    else:
        x_tr, y_tr, x_te, y_te = data
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(len(y_tr), generator=g)
    n_val = int(round(val_fraction * len(y_tr)))
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    tasks = []
    for i, digits in enumerate(digit_pairs(seed, n_tasks)):
        d = torch.tensor(digits)
        tr = train_idx[torch.isin(y_tr[train_idx], d)]
        va = val_idx[torch.isin(y_tr[val_idx], d)]
        te = torch.nonzero(torch.isin(y_te, d)).flatten()
        if len(va) < n_lid + n_cert:
            raise InputError(f"task {i} (digits {digits}) has {len(va)} validation items, fewer than "
                             f"n_lid + n_cert = {n_lid + n_cert}; lower them or raise val_fraction")
        if n_train is not None:
            tr = tr[torch.randperm(len(tr), generator=g)[:n_train]]
        if n_test is not None:
            te = te[torch.randperm(len(te), generator=g)[:n_test]].sort().values
        va = va[torch.randperm(len(va), generator=g)]
        if setting == "TIL":
            classes, outputs = tuple(sorted(digits)), 10
        elif setting == "CIL":
            classes, outputs = tuple(range(10)), 10
        else:
            classes, outputs = (0, 1), 2
        tasks.append(SplitTask(i, setting, tuple(digits), classes, outputs,
                               _take(x_tr, y_tr, tr, setting), _take(x_tr, y_tr, va[:n_lid], setting),
                               _take(x_tr, y_tr, va[n_lid:n_lid + n_cert], setting),
                               _take(x_te, y_te, te, setting)))
    return tasks


# ------------------------------------------------------------------------------- models
#: the Split-MNIST MLP, kept under its old name here (the architecture lives in the model zoo)
mlp = mnist_mlp


def make_model(arch: str, num_outputs: int, seed: int = 0) -> nn.Sequential:
    """The Split-MNIST model ``arch`` with ``num_outputs`` outputs, initialised from ``seed``.

    ``"cnn"``: :func:`~lirpa_lid.models.zoo.paper_cnn` (the paper's CNN); ``"mlp"``:
    :func:`~lirpa_lid.models.zoo.mnist_mlp` (one hidden layer of 100).

    Raises:
        InputError: unknown architecture (the message lists :data:`ARCHITECTURES`).
    """
    if arch == "cnn":
        return paper_cnn(num_outputs, seed)
    if arch == "mlp":
        return mnist_mlp(num_outputs, seed=seed)
    raise InputError(f"unknown architecture {arch!r}; choose one of {ARCHITECTURES}")
