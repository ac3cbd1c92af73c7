"""The model zoo: shapes, parameter counts, validation, and the same weights (and outputs) for a seed as
the builders it replaced (written out here as they were in tasks.py, problems.py, demo.py and
specs/models.py)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from lirpa_lid import ModelError
from lirpa_lid.continual import tasks as split_tasks
from lirpa_lid.models import KNOWN_MODELS, blobs_mlp, mlp, mnist_mlp, paper_cnn


# ------------------------------------------------------------------------------- the builders replaced
def _old_paper_cnn(num_outputs=10, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 8, 5, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 5, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(576, num_outputs))


def _old_split_mlp(num_outputs=10, hidden=(100,), seed=0):
    torch.manual_seed(seed)
    layers = [nn.Flatten()]
    width = 784
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, num_outputs))
    return nn.Sequential(*layers)


def _old_problems_mlp(sizes):
    layers = [nn.Flatten()]
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
    return nn.Sequential(*layers)


def _old_blobs_mlp(hidden=32, seed=None):
    if seed is not None:
        torch.manual_seed(seed)  # demo.make_model and specs/models.py seeded; problems.py did not
    return nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, 6))


def _same(a: nn.Module, b: nn.Module, x: torch.Tensor) -> None:
    assert [type(m) for m in a] == [type(m) for m in b]
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


def _n(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("seed", [0, 7])
def test_paper_cnn_is_the_papers_cnn(seed):
    model = paper_cnn(10, seed)
    assert _n(model) == 6179
    x = torch.rand(3, 1, 28, 28)
    assert model(x).shape == (3, 10)
    _same(model, _old_paper_cnn(10, seed), x)
    _same(paper_cnn(2, seed), _old_paper_cnn(2, seed), x)
    assert split_tasks.paper_cnn is paper_cnn


@pytest.mark.parametrize("seed", [0, 3])
def test_mnist_mlp_is_the_split_mnist_mlp(seed):
    model = mnist_mlp(10, seed=seed)
    assert _n(model) == 784 * 100 + 100 + 100 * 10 + 10
    x = torch.rand(4, 1, 28, 28)
    assert model(x).shape == (4, 10)
    _same(model, _old_split_mlp(10, seed=seed), x)
    _same(mnist_mlp(2, (30, 20), seed), _old_split_mlp(2, (30, 20), seed), x)
    _same(split_tasks.mlp(10, seed=seed), _old_split_mlp(10, seed=seed), x)
    _same(split_tasks.make_model("mlp", 2, seed), _old_split_mlp(2, seed=seed), x)
    _same(split_tasks.make_model("cnn", 10, seed), _old_paper_cnn(10, seed), x)


def test_mlp_of_layer_sizes_is_the_yaml_mlp():
    torch.manual_seed(5)
    model = mlp([4, 7, 3])
    torch.manual_seed(5)
    old = _old_problems_mlp([4, 7, 3])
    _same(model, old, torch.rand(2, 4))
    assert _n(model) == 4 * 7 + 7 + 7 * 3 + 3
    assert [type(m) for m in model] == [nn.Flatten, nn.Linear, nn.ReLU, nn.Linear]  # no ReLU at the end
    _same(mlp([4, 7, 3], seed=5), old, torch.rand(2, 4))
    assert mlp([6, 2])(torch.rand(5, 2, 3)).shape == (5, 2)
    for bad in ([4], [4, 0], [4, 2.5], "4,2", 3):
        with pytest.raises(ModelError, match="needs a list of at least two positive layer sizes"):
            mlp(bad)


@pytest.mark.parametrize("seed", [None, 0, 2])
def test_blobs_mlp_is_the_demo_mlp(seed):
    torch.manual_seed(11)
    model = blobs_mlp(32, seed=seed)
    torch.manual_seed(11)
    old = _old_blobs_mlp(32, seed)
    x = torch.randn(8, 2)
    _same(model, old, x)
    assert model(x).shape == (8, 6) and _n(model) == 294
    assert _n(blobs_mlp("16")) == 2 * 16 + 16 + 16 * 6 + 6  # the width goes through int(), as in problems.py


def test_known_models_are_the_yaml_names():
    assert KNOWN_MODELS == {"mlp": mlp, "blobs_mlp": blobs_mlp}
