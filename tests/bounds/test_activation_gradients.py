"""Gradients of Tanh/Sigmoid CROWN bounds with respect to the box offsets are finite, also for the
degenerate neurons of the relaxation (intervals of width 0, very narrow intervals, intervals that do
not cross zero, saturated pre-activations), and growing a LID on a trained Tanh MLP with CROWN works.

Regression: ``SShapedOp._tangent_through`` divided ``g`` by ``∂g/∂d`` clamped to ``finfo.tiny`` on every
neuron, also on those whose tangent is not used (not crossing zero: ``d_lo = d_hi = 0``, so
``∂g/∂d = 0``). Once ``|g| > 4`` (an interval endpoint beyond about ±5 for Tanh, ±18 for Sigmoid) the
quotient overflowed, the tangent point became ``inf − inf = nan``, and ``torch.where`` turned the zero
gradient of the unselected branch into ``0 · nan = nan`` — ``compute_lid`` then stopped with "lower
offsets of '0.weight' contain NaN or inf".
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from lid_helpers import certified_items, sampled_min_margin
from torch import nn

from lirpa_lid import CertifiedAccuracy, LIDConfig, Orthotope, bounded_network, compute_lid, threshold_from_accuracy
from lirpa_lid.bounds.native.activation import SigmoidOp, TanhOp
from lirpa_lid.margin import compute_margins

ACTS = {"tanh": (nn.Tanh, TanhOp), "sigmoid": (nn.Sigmoid, SigmoidOp)}
DTYPES = {"float32": torch.float32, "float64": torch.float64}

# (lo, hi) input intervals of one activation, one per kind of neuron
INTERVALS = [
    (-1.0, 1.0), (-2.0, 0.05), (-0.1, 3.0), (-8.0, 8.0), (-40.0, 30.0),   # crossing zero
    (0.5, 2.0), (-3.0, -1.0), (-1.0, 0.0), (0.0, 1.0),                    # not crossing, moderate
    (-30.0, -20.0), (20.0, 40.0), (3.0, 6.0), (-6.0, -3.0),               # not crossing, saturated
    (-1e-6, 1e-6), (0.3, 0.3 + 1e-9), (-1.5e-4, 1.5e-4), (2.0, 2.0003),   # (very) narrow
    (0.7, 0.7), (25.0, 25.0), (0.0, 0.0),                                 # width 0
]


@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
@pytest.mark.parametrize("act", ACTS, ids=ACTS.keys())
def test_relaxation_gradients_are_finite_for_every_kind_of_interval(act, dtype):
    """The relaxation lines and their gradients w.r.t. the interval bounds are finite, and the lines
    still enclose the activation on the interval."""
    op = ACTS[act][1](act)
    lo = torch.tensor([i[0] for i in INTERVALS], dtype=dtype, requires_grad=True)
    hi = torch.tensor([i[1] for i in INTERVALS], dtype=dtype, requires_grad=True)
    lines = op.relaxation(lo, hi, None)
    for line in lines:
        assert torch.isfinite(line).all()
    weights = torch.linspace(1.0, 2.0, 4, dtype=dtype)
    grad_lo, grad_hi = torch.autograd.grad(sum(w * t.sum() for w, t in zip(weights, lines)), [lo, hi])
    bad = [INTERVALS[i] for i in (~torch.isfinite(grad_lo) | ~torch.isfinite(grad_hi)).nonzero().flatten()]
    assert not bad, f"non-finite gradients for the intervals {bad}"
    kl, bl, ku, bu = (t.detach().double() for t in lines)
    lo64, hi64 = lo.detach().double()[:, None], hi.detach().double()[:, None]
    z = lo64 + torch.linspace(0, 1, 101, dtype=torch.float64) * (hi64 - lo64)
    fz = op.f(z)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert (kl[:, None] * z + bl[:, None] <= fz + tol * (1 + z.abs())).all()
    assert (ku[:, None] * z + bu[:, None] >= fz - tol * (1 + z.abs())).all()


def _degenerate_net(act: type[nn.Module], dtype: torch.dtype) -> tuple[nn.Module, Orthotope]:
    """4-8-8-8-3 net whose second activation sees every kind of interval, and a box with frozen
    (width-0) and very narrow elements. Row by row, the input of the second activation is
    0: saturated positive, 1: saturated negative, 2: moderate, not crossing zero, 3: width ~1e-9,
    4: narrow, crossing zero, 5: crossing zero, 6: width 0, 7: crossing zero with large endpoints;
    the third layer has rows scaled up so that the third activation saturates too."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 8), act(), nn.Linear(8, 8), act(), nn.Linear(8, 8), act(),
                          nn.Linear(8, 3)).to(dtype)
    with torch.no_grad():
        w, b = model[2].weight, model[2].bias
        w[0], b[0] = 1.0, 30.0
        w[1], b[1] = -1.0, -30.0
        w[2], b[2] = 0.1, 2.0
        w[3], b[3] = 0.0, 0.3
        w[4], b[4] = 0.0, 0.0
        w[6], b[6] = 0.0, 0.7
        w[7], b[7] = 1.0, 0.0
        model[4].weight[:3] *= 40
        model[4].bias[3:5] += torch.tensor([12.0, -25.0], dtype=dtype)
    g = torch.Generator().manual_seed(1)
    base = Orthotope.around(model)

    def offsets():
        off = {n: (torch.rand(t.shape, generator=g, dtype=torch.float64) * 0.02).to(dtype)
               for n, t in base.reference.items()}
        off["0.weight"][torch.rand(off["0.weight"].shape, generator=g) < 0.3] = 0.0   # width 0
        off["2.weight"][[3, 4, 6]] = 0.0
        off["2.bias"][3] = 5e-10                                                     # very narrow
        off["2.bias"][4] = 1.5e-4                                                    # narrow, crossing
        off["2.bias"][6] = 0.0                                                       # width 0
        return off

    return model, base.with_offsets(offsets(), offsets())


@pytest.mark.parametrize("method", ["CROWN", "CROWN-IBP"])
@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
@pytest.mark.parametrize("act", ACTS, ids=ACTS.keys())
def test_bound_gradients_wrt_offsets_are_finite_on_degenerate_neurons(act, dtype, method):
    model, box = _degenerate_net(ACTS[act][0], dtype)
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(2)).to(dtype)
    C = torch.tensor([[1.0, -1.0, 0.0], [1.0, 0.0, -1.0], [0.0, 1.0, -1.0]], dtype=dtype)
    lower = {n: t.clone().requires_grad_() for n, t in box.lower.items()}
    upper = {n: t.clone().requires_grad_() for n, t in box.upper.items()}
    b = bounded_network(model).compute_bounds(x, box.with_offsets(lower, upper), C=C, method=method)
    assert torch.isfinite(b.lower).all() and torch.isfinite(b.upper).all()
    assert (b.lower <= b.upper).all()
    (b.lower.sum() - b.upper.sum()).backward()
    for side, offs in (("lower", lower), ("upper", upper)):
        for name, t in offs.items():
            assert t.grad is not None and torch.isfinite(t.grad).all(), f"{side} offsets of {name}"
    # the bounds do react to the box (the test is not vacuous)
    assert any(t.grad.abs().sum() > 0 for t in lower.values())


def _trained_tanh_mlp(dtype: torch.dtype, seed: int = 0):
    """8-32-32-4 Tanh MLP, a few epochs of SGD with a large step on four Gaussian blobs: large enough
    second-layer pre-activations that the growing box makes saturated intervals not crossing zero
    (each of seeds 0-5, in float32 and float64, stopped the growth before the fix)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(4, 8, generator=g) * 3
    y = torch.randint(0, 4, (200,), generator=g)
    x = (centres[y] + torch.randn(200, 8, generator=g)).to(dtype)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 4)).to(dtype)
    opt = torch.optim.SGD(model.parameters(), lr=3.0)
    for _ in range(5):
        for idx in torch.randperm(len(x), generator=g).split(32):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model, x, y


@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
def test_crown_lid_of_a_trained_tanh_mlp_completes_and_its_candidates_hold(dtype):
    model, x, y = _trained_tanh_mlp(dtype)
    spec = CertifiedAccuracy(x, y, 4, 0.0, name="blobs")
    spec = spec.with_threshold(threshold_from_accuracy(spec.nominal_value(model), increment=0.1, limit=0.9))
    result = compute_lid(model, spec, LIDConfig(iterations=30, primal_lr=0.5, dual_lr=0.1, snapshot_every=10,
                                                method="CROWN", progress=False))
    assert len(result.history["mean_width"]) == 30
    assert result.candidates
    assert result.largest().mean_width > 0
    net = bounded_network(model)
    for cand in result.candidates:
        # recomputed independently in float64, not read from the candidate
        margins = compute_margins(net, spec, cand.domain, "CROWN", dtype=torch.float64)
        assert torch.isfinite(margins).all()
        value = float(spec.hard_value(margins))
        assert value == pytest.approx(cand.hard_values[0])
        assert value >= spec.threshold
    dom = result.largest().domain
    ok = certified_items(model, dom, spec, "CROWN")
    assert ok.float().mean() >= spec.threshold
    assert sampled_min_margin(model, dom, x[ok], y[ok], 2000) > 0
