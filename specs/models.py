"""Customized models and data loaders for the shipped specification files.

Written as α,β-CROWN users write them (``Customized("models.py", "function", **kwargs)`` in a config):
a model function returns an ``nn.Module``; a data function takes the ``specification`` section as
``spec`` and returns ``X, labels, data_max, data_min, eps``. lirpa_lid ships no trained weights, so
the model functions train small networks on the fly (seeded, a few seconds on one core).
"""
import torch
import torch.nn.functional as F
from torch import nn

from lirpa_lid.datasets import blobs_tasks, data_dir, load_mnist


def _fit(model, x, y, epochs, lr, batch_size, seed):
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9 if lr < 0.1 else 0.0)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=g)
        for start in range(0, len(y), batch_size):
            idx = perm[start:start + batch_size]
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


def blobs_mlp(hidden=32, epochs=10, seed=0):
    """The demo's MLP 2-hidden-6, trained with SGD on blobs task 0 (classes 0 and 1)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, 6))
    task = blobs_tasks(seed)[0]
    return _fit(model, task.train.x, task.train.y, epochs, lr=0.1, batch_size=64, seed=seed)


def blobs_task(spec, task=0, seed=0):
    """Blobs task ``task``: its training and validation items (the test split stays untouched)."""
    t = blobs_tasks(seed)[task]
    X = torch.cat([t.train.x, t.val.x])
    labels = torch.cat([t.train.y, t.val.y])
    return X, labels, None, None, spec["epsilon"]


def mnist_mlp(hidden=64, epochs=2, n_train=20000, seed=0):
    """MLP 784-hidden-10 trained on the first ``n_train`` MNIST training images (pixels in [0, 1])."""
    torch.manual_seed(seed)
    x, y = load_mnist("train", "mnist", data_dir())
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 10))
    return _fit(model, x[:n_train], y[:n_train], epochs, lr=0.05, batch_size=128, seed=seed)
