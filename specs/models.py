"""Customized models and data loaders for the shipped specification files.

Written as α,β-CROWN users write them (``Customized("models.py", "function", **kwargs)`` in a config):
a model function returns an ``nn.Module``; a data function takes the ``specification`` section as
``spec`` and returns ``X, labels, data_max, data_min, eps``. lirpa_lid ships no trained weights, so
the model functions train small networks on the fly (seeded, a few seconds on one core): the
architectures come from lirpa_lid's model zoo, the training loop is lirpa_lid's own.
"""
import torch

from lirpa_lid.continual.training import TrainConfig, fit
from lirpa_lid.datasets import Split, blobs_tasks, data_dir, load_mnist
from lirpa_lid.models.zoo import blobs_mlp as blobs_architecture
from lirpa_lid.models.zoo import mnist_mlp as mnist_architecture


def _fit(model, x, y, epochs, lr, batch_size, seed):
    """``epochs`` of seeded minibatch SGD on ``(x, y)`` (momentum 0.9 for small learning rates)."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9 if lr < 0.1 else 0.0)
    fit(model, Split(x, y), TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, optimizer="sgd"),
        seed=seed, optimizer=opt)
    return model.eval()


def blobs_mlp(hidden=32, epochs=10, seed=0):
    """The demo's MLP 2-hidden-6, trained with SGD on blobs task 0 (classes 0 and 1)."""
    model = blobs_architecture(hidden, seed=seed)
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
    x, y = load_mnist("train", "mnist", data_dir())
    model = mnist_architecture(10, (hidden,), seed=seed)
    return _fit(model, x[:n_train], y[:n_train], epochs, lr=0.05, batch_size=128, seed=seed)
