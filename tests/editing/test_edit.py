"""``lirpa_lid.editing.edit``: a closed-form optimum, independent checks of edited networks, the
already-holds / infeasible paths, edits inside a LID that keep an old certificate valid, and bad input.

Closed form (``closed_form_net``): ``x ∈ [1, 2]``, hidden ``h = (ReLU(x), ReLU(2x − 1)) = (x, 2x − 1)`` (both
active on the box, so the box of ``h`` is exact: ``[1, 2] × [1, 3]``), last layer ``W = [[1, 1], [0, 0.5]]``,
``b = 0``: ``f_0 − f_1 = 2x − 0.5``, smallest at ``x = 1`` (1.5). The property ``f_0 − f_1 − 3 > 0`` fails
there by 1.5. Any edit with ``‖Δ‖∞ ≤ t`` raises ``f_0 − f_1`` at ``x = 1`` by at most
``2t (h_1 + h_2 + 1) = 6t`` (each of ``W_0j``, ``b_0`` up by ``t``, ``W_1j``, ``b_1`` down by ``t``), so with
the LP's margin ``μ`` the optimum is ``t* = (1.5 + μ) / 6``, reached by that edit: it raises the slope too,
so ``x = 1`` stays the minimum.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lirpa_lid.certificate import certify, verify_update
from lirpa_lid.certificate.refine import split_input_boxes
from lirpa_lid.domains.orthotope import Orthotope
from lirpa_lid.editing import CheckOptions, EditProperty, EditStatus, edit
from lirpa_lid.errors import LirpaLidError, ModelError, SpecificationError
from lirpa_lid.specification.vnnlib.spec import VnnlibSpecification

MARGIN = 1e-5
FAST = CheckOptions(samples=2000, restarts=3, steps=20, time_limit=20.0)


def closed_form_net() -> nn.Module:
    net = nn.Sequential(nn.Linear(1, 2), nn.ReLU(), nn.Linear(2, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0], [2.0]]))
        net[0].bias.copy_(torch.tensor([0.0, -1.0]))
        net[2].weight.copy_(torch.tensor([[1.0, 1.0], [0.0, 0.5]]))
        net[2].bias.zero_()
    return net


def random_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))


def margins64(net: nn.Module, prop: EditProperty, x: torch.Tensor) -> np.ndarray:
    """``min_r (C f(x) − d)_r`` of the float64 copy of ``net`` at ``x`` ``[N, n_in]``."""
    with torch.no_grad():
        y = torch.func.functional_call(net, {n: p.double() for n, p in net.named_parameters()}, (x,))
    return prop.margins(y.numpy()).min(axis=1)


def uniform(prop: EditProperty, n: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    lo, hi = torch.tensor(prop.lower), torch.tensor(prop.upper)
    return lo + torch.rand(n, lo.numel(), generator=g, dtype=torch.float64) * (hi - lo)


def diff_property(net: nn.Module, d_quantile: float, box=((-1.0, 1.0), (-1.0, 1.0))) -> tuple[EditProperty, float]:
    """``f_0 − f_1 − d > 0`` on ``box`` with ``d`` the given quantile of sampled ``f_0 − f_1``."""
    lo, hi = np.array([b[0] for b in box]), np.array([b[1] for b in box])
    probe = EditProperty(lo, hi, [[1.0, -1.0]], [0.0])
    values = margins64(net, probe, uniform(probe, 5000, seed=3))
    d = float(np.quantile(values, d_quantile))
    return EditProperty(lo, hi, [[1.0, -1.0]], [d], "diff"), d


# ------------------------------------------------------------------------------- closed form
def test_linf_optimum_matches_closed_form():
    net = closed_form_net()
    prop = EditProperty([1.0], [2.0], [[1.0, -1.0]], [3.0], "closed form")
    x = torch.linspace(1.0, 2.0, 10_001, dtype=torch.float64)[:, None]
    assert margins64(net, prop, x).min() == pytest.approx(-1.5)
    result = edit(net, prop, margin=MARGIN, check=FAST)
    assert result.status is EditStatus.EDITED, result.reason
    assert result.linf == pytest.approx((1.5 + MARGIN) / 6, abs=1e-6)
    assert margins64(result.model, prop, x).min() > 0
    w, b = result.model[2].weight.detach().double(), result.model[2].bias.detach().double()
    t = (1.5 + MARGIN) / 6
    torch.testing.assert_close(w - net[2].weight.double(), torch.tensor([[t, t], [-t, -t]], dtype=torch.float64),
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(b, torch.tensor([t, -t], dtype=torch.float64), atol=1e-6, rtol=0)


def test_l1_objective_is_no_larger_in_mean():
    net = closed_form_net()
    prop = EditProperty([1.0], [2.0], [[1.0, -1.0]], [3.0])
    linf = edit(net, prop, margin=MARGIN, check=FAST)
    l1 = edit(net, prop, margin=MARGIN, objective="l1", check=FAST)
    assert l1.status is EditStatus.EDITED
    assert l1.mean_abs <= linf.mean_abs + 1e-6 and l1.linf >= linf.linf - 1e-6


# ------------------------------------------------------------------------------- splitting
def abs_net() -> nn.Module:
    """``h = (ReLU(x), ReLU(−x))``, ``f_0 = 0.5 h_1 + 0.5 h_2`` on ``x ∈ [−1, 1]``: the box of ``h`` over the
    whole interval is ``[0, 1]²``, but ``h_1 h_2 = 0``."""
    net = nn.Sequential(nn.Linear(1, 2), nn.ReLU(), nn.Linear(2, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0], [-1.0]]))
        net[0].bias.zero_()
        net[2].weight.copy_(torch.tensor([[0.5, 0.5], [0.0, 0.0]]))
        net[2].bias.zero_()
    return net


def abs_properties() -> list[EditProperty]:
    """``f_0 ≤ 1.2`` on ``[−1, 1]``, ``f_0 ≥ 0.9`` on ``[0.9, 1]`` and on ``[−1, −0.9]``: with the bias frozen
    they need ``W_00, W_01 ∈ [1, 1.2]``, which the box of ``h`` over ``[−1, 1]`` cannot show (it needs
    ``W_00 + W_01 ≤ 1.2``); halving at 0 makes each half's box exact."""
    return [EditProperty([-1.0], [1.0], [[-1.0, 0.0]], [-1.2], "upper"),
            EditProperty([0.9], [1.0], [[1.0, 0.0]], [0.9], "right"),
            EditProperty([-1.0], [-0.9], [[1.0, 0.0]], [0.9], "left")]


def test_splitting_makes_the_relaxation_feasible():
    net, props = abs_net(), abs_properties()
    unsplit = edit(net, props, params=["2.weight"], max_splits=1, check=FAST)
    assert unsplit.status is EditStatus.INFEASIBLE and "more sub-boxes" in unsplit.reason
    split = edit(net, props, params=["2.weight"], max_splits=2, check=FAST)
    assert split.status is EditStatus.EDITED, split.reason
    assert split.sub_boxes == 6 and all(c.certified for c in split.checks)
    w = split.model[2].weight.detach().double()
    assert 1.0 < w[0, 0] < 1.2 and 1.0 < w[0, 1] < 1.2
    x = torch.linspace(-1.0, 1.0, 20_001, dtype=torch.float64)[:, None]
    for prop in props:
        inside = x[(x[:, 0] >= prop.lower[0]) & (x[:, 0] <= prop.upper[0])]
        assert margins64(split.model, prop, inside).min() > 0


def test_tightening_never_enlarges_the_edit():
    net = random_net()
    prop, _ = diff_property(net, 0.5)
    coarse = edit(net, prop, check=FAST)
    fine = edit(net, prop, tighten=3, check=FAST)
    assert fine.status is EditStatus.EDITED and fine.sub_boxes >= coarse.sub_boxes
    assert fine.linf <= coarse.linf + 1e-6


# ------------------------------------------------------------------------------- random network
@pytest.fixture(scope="module")
def repaired():
    net = random_net()
    prop, _ = diff_property(net, 0.5)
    return net, prop, edit(net, prop, check=FAST)


def test_violated_property_is_edited_and_independently_certified(repaired):
    net, prop, result = repaired
    assert margins64(net, prop, uniform(prop, 20_000)).min() < 0  # violated before
    assert result.status is EditStatus.EDITED and result.edited, result.reason
    assert result.linf > 0 and 0 < result.mean_abs <= result.linf and result.checks[0].certified
    split = split_input_boxes(result.model, prop.to_vnnlib(), method="CROWN", max_boxes=4096, branching="widest")
    assert split.verified
    assert margins64(result.model, prop, uniform(prop, 20_000, seed=7)).min() > 0
    assert result.checks[0].attacked_margin > 0 and result.checks[0].sampled_margin > 0


def test_only_the_last_layer_changes(repaired):
    net, _, result = repaired
    old, new = dict(net.named_parameters()), dict(result.model.named_parameters())
    assert set(result.params) == {"4.weight", "4.bias"}
    for name in old:
        assert torch.equal(old[name], new[name]) == (name not in result.params)


def test_already_holding_property_is_not_changed():
    net = random_net()
    prop, _ = diff_property(net, 0.0)
    holding = EditProperty(prop.lower, prop.upper, prop.C, prop.d - 1.0, "holds")
    result = edit(net, holding, check=FAST)
    assert result.status is EditStatus.ALREADY_HOLDS and result.linf == 0.0 and result.lp_solves == 0
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), result.model.parameters()))


def test_contradictory_properties_are_infeasible():
    net = random_net()
    box = (np.array([-1.0, -1.0]), np.array([1.0, 1.0]))
    both = [EditProperty(*box, [[1.0, -1.0]], [1.0]), EditProperty(*box, [[-1.0, 1.0]], [1.0])]
    result = edit(net, both, max_splits=2, check=FAST)
    assert result.status is EditStatus.INFEASIBLE and result.model is None
    assert "even at the" in result.reason


def test_weight_only_edit_keeps_the_bias():
    net = random_net()
    prop, _ = diff_property(net, 0.3)
    result = edit(net, prop, params=["4.weight"], check=FAST)
    assert result.status is EditStatus.EDITED, result.reason
    assert torch.equal(result.model[4].bias, net[4].bias)


# ------------------------------------------------------------------------------- inside a LID
def test_edit_inside_a_lid_keeps_the_old_certificate():
    net = random_net()
    prop, d = diff_property(net, 0.05)
    old = EditProperty(prop.lower, prop.upper, [[0.0, 1.0]], [-50.0], "old")  # f_1 > -50: holds with room
    box = Orthotope.around(net, ["4.weight", "4.bias"], 0.05)
    spec = VnnlibSpecification(old.to_vnnlib(), (2,), dtype=torch.float64)
    cert = certify(net, box, spec, method="CROWN")
    assert cert.k == cert.n == 1
    result = edit(net, prop, within=box, check=FAST)
    assert result.status is EditStatus.EDITED, result.reason
    assert box.contains(result.model) and result.linf <= 0.05 + 1e-12
    assert verify_update(result.model, cert)


def test_too_small_lid_is_infeasible():
    net = random_net()
    prop, _ = diff_property(net, 0.9)
    box = Orthotope.around(net, ["4.weight", "4.bias"], 1e-4)
    result = edit(net, prop, within=box, max_splits=4, check=FAST)
    assert result.status is EditStatus.INFEASIBLE and "inside the LID" in result.reason


# ------------------------------------------------------------------------------- bad input
def test_bad_input_raises_one_clear_error():
    net = random_net()
    three = EditProperty(np.zeros(3), np.ones(3), [[1.0, -1.0]], [0.0])
    with pytest.raises(SpecificationError, match="3 inputs"):
        edit(net, three)
    nan = random_net()
    with torch.no_grad():
        nan[2].weight[0, 0] = float("nan")
    prop, _ = diff_property(net, 0.5)
    with pytest.raises(ModelError, match="NaN"):
        edit(nan, prop)
    with pytest.raises(LirpaLidError, match="last Linear layer"):
        edit(net, prop, params=["0.weight"])
    with pytest.raises(LirpaLidError, match="not in the LID"):
        edit(net, prop, within=Orthotope.around(net, ["4.bias"], 0.1))
