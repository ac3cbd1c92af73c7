"""Customized model and data loaders written the way alpha,beta-CROWN users write them
(``complete_verifier/custom/custom_model_data.py``): model functions take keyword arguments and return
an ``nn.Module``; data functions take the ``specification`` section as ``spec`` and return
``X, labels, data_max, data_min, eps`` (or more, or a dict).

Used by tests/test_customized.py and tests/test_cli.py through ``Customized("abcrown_custom", ...)``.
"""
import torch
from torch import nn


def two_relu_toy_model(in_dim=2, out_dim=2):
    """A very simple model, 2 inputs, 2 ReLUs, 2 outputs (the alpha,beta-CROWN tutorial's)."""
    model = nn.Sequential(nn.Linear(in_dim, 2), nn.ReLU(), nn.Linear(2, out_dim))
    model[0].weight.data = torch.tensor([[1., 2.], [2., 1.]])
    model[0].bias.data = torch.tensor([0., 0.])
    model[2].weight.data = torch.tensor([[1., -1.], [0., 0.]])
    model[2].bias.data = torch.tensor([2., 0.])
    return model


def simple_box_data(spec):
    """One point at the origin, label 0, box [-10, 10]; eps from the config."""
    eps = spec["epsilon"]
    if eps is None:
        eps = 2.
    X = torch.tensor([[0., 0.]]).float()
    labels = torch.tensor([0]).long()
    eps_temp = torch.tensor(eps).reshape(1, -1)
    data_max = torch.tensor(10.).reshape(1, -1)
    data_min = torch.tensor(-10.).reshape(1, -1)
    return X, labels, data_max, data_min, eps_temp


def separable_model(seed=0, width=16):
    """An MLP 2-width-2 that separates the two clusters of separable_data (fixed weights)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(2, width), nn.ReLU(), nn.Linear(width, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.cat([torch.eye(2), -torch.eye(2)] * (width // 4)))
        model[0].bias.zero_()
        w = torch.zeros(2, width)
        w[0, 0::4], w[1, 0::4] = 1.0, -1.0   # x0 > 0 votes for class 0
        w[0, 2::4], w[1, 2::4] = -1.0, 1.0
        model[2].weight.copy_(w)
        model[2].bias.zero_()
    return model


def separable_data(spec, n=200, seed=0, with_runnerup=False, as_dict=False):
    """Two well-separated clusters in [0, 1]^2 shifted to x0 = ±0.5; clipped to [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    X = torch.rand(n, 2, generator=g) * 0.2 - 0.1
    X[:, 0] += torch.where(labels == 0, 0.5, -0.5)
    data_max = torch.ones(1, 2)
    data_min = -torch.ones(1, 2)
    eps = None if spec["epsilon"] is None else torch.tensor(spec["epsilon"])
    if as_dict:
        return {"X": X, "labels": labels, "data_max": data_max, "data_min": data_min, "eps": eps}
    if with_runnerup:
        return X, labels, data_max, data_min, eps, 1 - labels
    return X, labels, data_max, data_min, eps


def broken_model():
    raise RuntimeError("the weights file is corrupt")


def not_a_model():
    return "a string"


def bn_model():
    """A model with a BatchNorm layer (eval mode): its affine parameters cannot carry a weight box."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)).eval()
