"""Every bound method, backend, layer type and perturbation case is checked against 10,000 sampled
weight vectors (half of them box corners), and inputs when the input is perturbed too, and against a
projected-gradient attack on the weights (and inputs) inside the box, which finds the extremes that
sampling misses. Constant arithmetic (``x ± c``, ``x · c``, ``x / c``, scalar and vector
``ElementwiseAffine``, zero constants) sits in front of, between and after the boxed layers."""
from __future__ import annotations

import pytest
import torch
from helpers import (
    ARITH_NETS,
    INPUT_SHAPES,
    attack_extremes,
    make_any_net,
    make_net,
    random_domain,
    sampled_outputs,
    weight_names,
)
from torch import nn

from lirpa_lid import InputBox, bounded_network

METHODS = ["IBP", "CROWN", "CROWN-IBP", "alpha-CROWN"]
CASES = ["weights", "weights+bias", "weights+input"]
NETS = ["relu", "tanh", "sigmoid", "cnn", "norm_cnn", *ARITH_NETS]
N_SAMPLES = 10_000
TOL = 1e-9  # float64 throughout: only rounding separates a sound bound from the sampled outputs


def _setup(kind: str, case: str, backend: str):
    model = make_any_net(kind)
    torch.manual_seed(3)
    x = torch.randn(3, *INPUT_SHAPES[kind], dtype=torch.float64)
    # auto_LiRPA has no weight perturbation for convolutions: box only the Linear layers there
    names = weight_names(model, bias=case != "weights", convs=backend == "native")
    domain = random_domain(model, names, scale=0.02 if "cnn" in kind else 0.03)
    input_box = InputBox.linf(x, 0.05) if case == "weights+input" else None
    C = torch.randn(5, 4, dtype=torch.float64)
    return model, x, domain, input_box, C


@pytest.mark.parametrize("backend", ["native", "auto_lirpa"])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("kind", NETS)
def test_bounds_contain_sampled_outputs(kind, case, backend):
    model, x, domain, input_box, C = _setup(kind, case, backend)
    outs = sampled_outputs(model, domain, x, C, N_SAMPLES, input_box)
    low_found, high_found = attack_extremes(model, domain, x, C, input_box)
    net = bounded_network(model, backend=backend)
    ibp = None
    for method in METHODS:
        b = net.compute_bounds(x, domain, C=C, method=method, input_box=input_box)
        assert b.lower.shape == b.upper.shape == (3, 5)
        assert (outs >= b.lower - TOL).all(), f"{method}: lower bound above a sampled output"
        assert (outs <= b.upper + TOL).all(), f"{method}: upper bound below a sampled output"
        assert (low_found >= b.lower - TOL).all(), f"{method}: lower bound above an attacked output"
        assert (high_found <= b.upper + TOL).all(), f"{method}: upper bound below an attacked output"
        if method == "IBP":
            ibp = b
        else:  # final bounds are never looser than IBP (the tighter of the two is kept)
            assert (b.lower >= ibp.lower - TOL).all() and (b.upper <= ibp.upper + TOL).all()
    # the sample is informative: the bounds are not absurdly loose (IBP within 100x of the sampled spread)
    spread = (outs.amax(0) - outs.amin(0)).mean()
    assert (ibp.upper - ibp.lower).mean() < 100 * spread
    # the attack is at least as strong as the sample: it reaches every sampled extreme (up to 1 %)
    slack = 0.01 * spread
    assert (low_found <= outs.amin(0) + slack).all() and (high_found >= outs.amax(0) - slack).all()


@pytest.mark.parametrize("methods", [pytest.param(["IBP", "CROWN-IBP"], id="fast"),
                                     pytest.param(METHODS, id="all", marks=pytest.mark.slow)])
def test_paper_cnn_all_parameters_boxed(methods):
    """The Split-MNIST CNN (6,179 parameters, every one boxed) is bounded soundly by the native backend."""
    model = make_net("paper_cnn")
    assert sum(p.numel() for p in model.parameters()) == 6179
    torch.manual_seed(0)
    x = torch.rand(2, 1, 28, 28, dtype=torch.float64)
    domain = random_domain(model, weight_names(model, bias=True), scale=2e-3)
    assert domain.numel() == 6179
    C = torch.randn(9, 10, dtype=torch.float64)
    outs = sampled_outputs(model, domain, x, C, 2_000)
    net = bounded_network(model, backend="native")
    for method in methods:
        b = net.compute_bounds(x, domain, C=C, method=method)
        assert (outs >= b.lower - TOL).all() and (outs <= b.upper + TOL).all(), method


@pytest.mark.parametrize("layer", ["linear", "conv"])
def test_a_bare_layer_is_bounded_soundly(layer):
    """A single ``nn.Linear`` / ``nn.Conv2d`` (not inside a container: torch.fx would trace its
    functional forward) is bounded by the native backend over its own parameter names."""
    torch.manual_seed(5)
    if layer == "linear":
        model, x = nn.Linear(5, 3).double(), torch.randn(4, 5, dtype=torch.float64)
    else:
        model, x = nn.Conv2d(2, 3, 3, padding=1).double(), torch.randn(4, 2, 5, 5, dtype=torch.float64)
    domain = random_domain(model, ["weight", "bias"], scale=0.05)
    out_dim = 3 if layer == "linear" else 75
    C = torch.randn(4, out_dim, dtype=torch.float64)
    outs = sampled_outputs(model, domain, x, C, N_SAMPLES, InputBox.linf(x, 0.05))
    net = bounded_network(model, backend="native")
    for method in METHODS:
        b = net.compute_bounds(x, domain, C=C, method=method, input_box=InputBox.linf(x, 0.05))
        assert (outs >= b.lower - TOL).all() and (outs <= b.upper + TOL).all(), method
        assert (b.upper - b.lower).mean() < 100 * (outs.amax(0) - outs.amin(0)).mean()
