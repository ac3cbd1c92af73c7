"""The reduction of a box over one Linear layer with a fixed input to an input box of the network's tail
(``lirpa_lid.bounds.exact.reduce_to_tail``): the box contains the layer's output for 10,000 sampled weight
vectors and the tail reproduces the network from there, the box is attained at the weight box's corners,
and the exact margin of the reduced problem equals the original one."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import random_domain
from torch import nn
from torch.func import functional_call, vmap

from lirpa_lid import ElementwiseAffine, Orthotope
from lirpa_lid.bounds.exact import ExactOptions, exact_margins, reduce_to_tail
from lirpa_lid.errors import DomainError


class DivideShift(nn.Module):
    def forward(self, x):
        return x / 3.0 + 1.0


def mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(ElementwiseAffine(torch.tensor([2.0, -0.5, 1.0]), torch.tensor([0.1, 0.3, 0.0])),
                         nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 5), DivideShift(), nn.ReLU(), nn.Linear(5, 3)).double().eval()


def conv_tail(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.Unflatten(1, (1, 4, 4)), nn.Conv2d(1, 2, 3, padding=1), nn.Tanh(),
                         nn.Flatten(), nn.Linear(32, 3)).double().eval()


CASES = [(mlp, 3, 1), (mlp, 3, 3), (conv_tail, 4, 0)]  # (network, input size, index of the boxed Linear)


def layer_outputs(model: nn.Sequential, k: int, x: torch.Tensor, weights: dict[str, torch.Tensor]) -> torch.Tensor:
    """``[n, B, O]``: the output of layer ``k`` for each sampled weight vector (``x`` fixed)."""
    h = model[:k](x)
    w, b = weights[f"{k}.weight"], weights[f"{k}.bias"]
    return vmap(lambda ww, bb: F.linear(h, ww, bb))(w, b)


@pytest.mark.parametrize("make, n_in, k", CASES)
def test_tail_box_contains_every_sampled_layer_output_and_the_tail_reproduces_the_network(make, n_in, k):
    model = make()
    box = random_domain(model, [f"{k}.weight", f"{k}.bias"], 0.2)
    x = torch.randn(3, n_in, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    problem = reduce_to_tail(model, x, box)
    assert problem.layer == str(k)
    weights = box.sample(10_000, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        z = layer_outputs(model, k, x, weights)
        assert bool((problem.input_box.lower <= z).all() and (z <= problem.input_box.upper).all())
        full = vmap(lambda p: functional_call(model, p, (x,)))(weights)
        tail = vmap(problem.tail)(z)
    torch.testing.assert_close(tail, full, rtol=0, atol=1e-12)


@pytest.mark.parametrize("make, n_in, k", CASES)
def test_tail_box_is_attained_at_the_weight_box_corners(make, n_in, k):
    model = make()
    box = random_domain(model, [f"{k}.weight", f"{k}.bias"], 0.2)
    x = torch.randn(2, n_in, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    problem = reduce_to_tail(model, x, box)
    (w_lo, w_hi), (b_lo, b_hi) = box.exact_bounds([f"{k}.weight"])[f"{k}.weight"], box.exact_bounds([f"{k}.bias"])[f"{k}.bias"]
    with torch.no_grad():
        h = model[:k](x)
        for item in range(len(x)):
            positive = (h[item] >= 0).unsqueeze(0)  # the minimising corner: W_lo where h ≥ 0, W_hi elsewhere
            lowest = F.linear(h[item], torch.where(positive, w_lo, w_hi), b_lo)
            highest = F.linear(h[item], torch.where(positive, w_hi, w_lo), b_hi)
            lower, upper = problem.input_box.lower[item], problem.input_box.upper[item]
            assert bool((lower <= lowest).all() and (highest <= upper).all())
            torch.testing.assert_close(lower, lowest, rtol=1e-14, atol=1e-14)
            torch.testing.assert_close(upper, highest, rtol=1e-14, atol=1e-14)


def test_exact_margin_of_the_tail_equals_the_exact_margin_over_the_weight_box():
    model = mlp(1)
    box = random_domain(model, ["3.weight", "3.bias"], 0.3)
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    C = torch.tensor([[1.0, -1.0, 0.0], [0.0, 1.0, -1.0]], dtype=torch.float64)
    options = ExactOptions(mip_rel_gap=0.0, mip_abs_gap=0.0, cutoff=False)
    problem = reduce_to_tail(model, x, box)
    over_weights = exact_margins(model, x, box, C, options=options)
    over_inputs = exact_margins(problem.tail, problem.input_box.center(), None, C, input_box=problem.input_box,
                                options=options)
    for b in range(len(x)):
        for s in range(len(C)):
            assert over_weights[b][s].exact and over_inputs[b][s].exact
            assert over_inputs[b][s].bound == pytest.approx(over_weights[b][s].bound, abs=1e-6)
            assert over_inputs[b][s].status is over_weights[b][s].status


def test_float32_model_gets_an_outward_rounded_float32_box():
    model = mlp(2).float()
    box = random_domain(model, ["1.weight", "1.bias"], 0.2)
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(8))
    problem = reduce_to_tail(model, x, box)
    assert problem.input_box.lower.dtype == torch.float32 and next(problem.tail.parameters()).dtype == torch.float32
    (w_lo, w_hi), (b_lo, b_hi) = box.exact_bounds()["1.weight"], box.exact_bounds()["1.bias"]
    with torch.no_grad():
        h = model[:1](x).double()
        positive = (h >= 0).unsqueeze(1)
        lowest = (torch.where(positive, w_lo, w_hi) * h.unsqueeze(1)).sum(-1) + b_lo
        highest = (torch.where(positive, w_hi, w_lo) * h.unsqueeze(1)).sum(-1) + b_hi
    assert bool((problem.input_box.lower.double() <= lowest).all() and (highest <= problem.input_box.upper.double()).all())
    torch.testing.assert_close(problem.input_box.lower.double(), lowest, rtol=1e-6, atol=1e-6)


def test_zero_width_boxes_of_other_layers_are_allowed_and_use_the_domain_values():
    model = mlp(3)
    reference = {n: p.detach().clone() for n, p in model.named_parameters()}
    reference["6.bias"] = reference["6.bias"] + 0.5  # θ₀ of the domain differs from the model here
    box = Orthotope({n: reference[n] for n in ["3.weight", "3.bias", "6.bias"]},
                    lower={"3.weight": torch.full((5, 6), 0.1, dtype=torch.float64)})
    x = torch.randn(2, 3, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    problem = reduce_to_tail(model, x, box)
    torch.testing.assert_close(problem.tail[-1].bias, reference["6.bias"])


def test_domains_that_move_several_layers_or_none_are_refused():
    model = mlp()
    x = torch.zeros(1, 3, dtype=torch.float64)
    with pytest.raises(DomainError, match=r"moves \['1', '3'\]"):
        reduce_to_tail(model, x, Orthotope.around(model, ["1.weight", "3.weight"], lower=0.1))
    with pytest.raises(DomainError, match="no layer"):
        reduce_to_tail(model, x, Orthotope.around(model, ["1.weight"], lower=0.0))
