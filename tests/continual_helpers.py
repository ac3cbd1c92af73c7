"""Fixtures of the continual-learning tests: a synthetic, learnable 10-class "digits" set (tiny images, no
files needed) split like Split-MNIST, a small MLP, and a sampling oracle for certified items."""
from __future__ import annotations

import copy
import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vmap

from lirpa_lid.continual.tasks import split_mnist_tasks
from lirpa_lid.continual.training import head_logits, head_targets
from lirpa_lid.domains.orthotope import Orthotope

SIDE = 5  # images 1 x 5 x 5


@functools.lru_cache(maxsize=None)
def synthetic_data(seed: int = 0, per_class_train: int = 150, per_class_test: int = 30):
    """``(x_train, y_train, x_test, y_test)``: class prototypes in [0, 1]^25 plus noise, clamped."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.rand(10, 1, SIDE, SIDE, generator=g)

    def draw(n):
        y = torch.arange(10).repeat_interleave(n)
        x = (protos[y] + 0.15 * torch.randn(len(y), 1, SIDE, SIDE, generator=g)).clamp(0, 1)
        perm = torch.randperm(len(y), generator=g)
        return x[perm], y[perm]

    return (*draw(per_class_train), *draw(per_class_test))


def tasks(setting: str, seed: int = 0, n_tasks: int = 3, n_lid: int = 16, n_cert: int = 24):
    return split_mnist_tasks(setting, seed, n_tasks=n_tasks, n_lid=n_lid, n_cert=n_cert, data=synthetic_data())


def small_mlp(outputs: int, seed: int = 0, hidden: int = 12) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(SIDE * SIDE, hidden), nn.ReLU(), nn.Linear(hidden, outputs))


def misclassified_certified(model: nn.Module, domain: Orthotope, x: Tensor, y: Tensor, head, n: int = 400,
                            seed: int = 0) -> int:
    """How many (sample, item) pairs are misclassified, over ``n`` weight vectors sampled from ``domain``
    (half of them corners), for the items ``(x, y)`` (float64)."""
    model64 = copy.deepcopy(model).double()
    dom = domain.to(dtype=torch.float64)
    weights = dom.sample(n, generator=torch.Generator().manual_seed(seed), corner_fraction=0.5)
    for name, p in model64.named_parameters():
        weights.setdefault(name, p.detach().unsqueeze(0).expand(n, *p.shape))
    out = vmap(lambda p: functional_call(model64, p, (x.double(),)))(weights)  # [n, m, K]
    pred = head_logits(out, head).argmax(-1)
    return int((pred != head_targets(y, head).unsqueeze(0)).sum())


def train_quick(model: nn.Module, x: Tensor, y: Tensor, steps: int = 200, lr: float = 0.05) -> nn.Module:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model
