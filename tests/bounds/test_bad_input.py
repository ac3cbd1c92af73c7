"""Bad input to the bound backends gets one clear error naming the problem."""
from __future__ import annotations

import pytest
import torch
from helpers import make_net
from torch import nn

from lirpa_lid import DomainError, InputBox, InputError, ModelError, Orthotope, bounded_network

BACKENDS = ["native", "auto_lirpa"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_or_inf_weights(backend):
    model = make_net("relu")
    with torch.no_grad():
        model[3].weight[0, 0] = float("nan")
    x = torch.randn(2, 6, dtype=torch.float64)
    with pytest.raises(ModelError, match=r"'3.weight'.*NaN"):
        bounded_network(model, backend=backend).compute_bounds(x, Orthotope.around(model, ["1.weight"]))
    with pytest.raises(DomainError, match="NaN"):
        Orthotope.around(model)


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_or_non_finite_batch(backend):
    model = make_net("relu")
    net = bounded_network(model, backend=backend)
    domain = Orthotope.around(model, ["1.weight"])
    with pytest.raises(InputError, match="empty batch"):
        net.compute_bounds(torch.zeros(0, 6, dtype=torch.float64), domain)
    with pytest.raises(InputError, match="NaN"):
        net.compute_bounds(torch.full((2, 6), float("nan"), dtype=torch.float64), domain)


def test_box_with_lower_above_upper():
    with pytest.raises(DomainError, match="negative"):
        Orthotope({"w": torch.zeros(3)}, lower={"w": torch.tensor([0.1, -0.2, 0.0])})
    x = torch.zeros(2, 6)
    with pytest.raises(InputError, match="lower > upper"):
        InputBox(x + 1, x)


@pytest.mark.parametrize("backend", BACKENDS)
def test_mismatched_shapes(backend):
    model = make_net("relu")
    x = torch.randn(2, 6, dtype=torch.float64)
    net = bounded_network(model, backend=backend)
    domain = Orthotope.around(model, ["1.weight"])
    with pytest.raises(InputError, match="specification matrix C"):
        net.compute_bounds(x, domain, C=torch.randn(3, 5, dtype=torch.float64))
    with pytest.raises(InputError, match="input box"):
        net.compute_bounds(x, domain, input_box=InputBox.linf(torch.zeros(3, 6, dtype=torch.float64), 0.1))
    with pytest.raises(InputError, match="unknown bound method"):
        net.compute_bounds(x, domain, method="CROWN++")


def test_wrong_input_shape_for_the_model():
    model = make_net("relu")
    with pytest.raises(ModelError, match="does not accept inputs"):
        bounded_network(model).compute_bounds(torch.randn(2, 7, dtype=torch.float64), Orthotope.around(model))


def test_domain_over_parameters_the_backend_cannot_box():
    model = make_net("relu")
    other = nn.Sequential(nn.Linear(6, 2)).double()
    x = torch.randn(2, 6, dtype=torch.float64)
    with pytest.raises(DomainError, match="not weights or biases"):
        bounded_network(model).compute_bounds(x, Orthotope.around(other))
    bigger = Orthotope({"1.weight": torch.zeros(3, 3, dtype=torch.float64)})
    with pytest.raises(DomainError, match="shape"):
        bounded_network(model).compute_bounds(x, bigger)


def test_unsupported_layer_is_named():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2 * 3 * 3, 2)).double()
    with pytest.raises(ModelError, match=r"MaxPool2d.*backend='auto_lirpa'"):
        bounded_network(model).compute_bounds(torch.randn(1, 1, 8, 8, dtype=torch.float64), Orthotope.around(model))


def test_non_chain_model_is_refused_by_the_native_backend():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            return self.b(torch.relu(self.a(x)) + x)

    model = Residual().double()
    with pytest.raises(ModelError, match="chain"):
        bounded_network(model).compute_bounds(torch.randn(2, 4, dtype=torch.float64), Orthotope.around(model))


def test_unknown_backend():
    with pytest.raises(InputError, match="unknown bound backend"):
        bounded_network(make_net("relu"), backend="gpu-magic")
