"""The native backend against auto_LiRPA on ReLU networks (where auto_LiRPA's CROWN runs).

IBP is identical. CROWN-IBP (both use IBP intermediate bounds, hence the same relaxations) is never
looser per element. CROWN uses tighter intermediate bounds than auto_LiRPA's; CROWN's *adaptive* ReLU
lower slope (1 if u > −l else 0) depends on them and neither choice dominates, so a few rows can come
out looser even though the bounds are tighter on average: native CROWN is tighter on average and
native α-CROWN (which optimises that slope) is never looser per element."""
from __future__ import annotations

import pytest
import torch
from helpers import make_net, random_domain, weight_names
from torch import nn

from lirpa_lid import InputBox, bounded_network


def _nets():
    torch.manual_seed(11)
    deep = nn.Sequential(nn.Linear(5, 12), nn.ReLU(), nn.Linear(12, 12), nn.ReLU(), nn.Linear(12, 12),
                         nn.ReLU(), nn.Linear(12, 3)).double()
    return {"relu": (make_net("relu"), (6,)), "deep": (deep, (5,)), "cnn": (make_net("cnn"), (1, 8, 8))}


@pytest.mark.parametrize("net_name", ["relu", "deep", "cnn"])
@pytest.mark.parametrize("with_input", [False, True], ids=["weights", "weights+input"])
@pytest.mark.parametrize("scale", [0.01, 0.05])
def test_native_is_at_least_as_tight_as_auto_lirpa(net_name, with_input, scale):
    model, shape = _nets()[net_name]
    torch.manual_seed(1)
    x = torch.randn(4, *shape, dtype=torch.float64)
    domain = random_domain(model, weight_names(model, bias=True, convs=False), scale=scale)
    box = InputBox.linf(x, 0.02) if with_input else None
    n_out = model(x).shape[1]
    C = torch.randn(6, n_out, dtype=torch.float64)
    native, lirpa = bounded_network(model), bounded_network(model, backend="auto_lirpa")

    def both(method, native_method=None):
        return (native.compute_bounds(x, domain, C=C, method=native_method or method, input_box=box),
                lirpa.compute_bounds(x, domain, C=C, method=method, input_box=box))

    a, b = both("IBP")
    torch.testing.assert_close(a.lower, b.lower, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(a.upper, b.upper, atol=1e-9, rtol=1e-9)
    for method, native_method in (("CROWN-IBP", None), ("CROWN", "alpha-CROWN")):
        a, b = both(method, native_method)
        assert (a.lower >= b.lower - 1e-5).all(), f"native {native_method or method} lower looser than {method}"
        assert (a.upper <= b.upper + 1e-5).all(), f"native {native_method or method} upper looser than {method}"
    a, b = both("CROWN")
    assert (a.upper - a.lower).mean() <= (b.upper - b.lower).mean() + 1e-9
