"""Specifications: C matrices, hard and soft values (against the paper's formulas), thresholds, and
input validation."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from lirpa_lid import Orthotope, bounded_network
from lirpa_lid.errors import SpecificationError
from lirpa_lid.specification.accuracy import CertifiedAccuracy
from lirpa_lid.specification.base import as_spec_list, threshold_from_accuracy


def _spec(n=6, K=4, threshold=0.5, **kw):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g)
    y = torch.arange(n) % K
    return CertifiedAccuracy(x, y, K, threshold, **kw)


def test_spec_matrix_rows_are_true_minus_other():
    spec = _spec()
    C = spec.spec_matrix()
    assert C.shape == (6, 3, 4)
    for i in range(6):
        y = int(spec.y[i])
        others = [j for j in range(4) if j != y]
        for s, j in enumerate(others):
            expected = torch.zeros(4)
            expected[y], expected[j] = 1.0, -1.0
            assert torch.equal(C[i, s], expected)


def test_margins_certified_and_hard_values():
    spec = _spec(n=4, K=3, threshold=0.5)
    outputs = torch.tensor([[3.0, 1.0, 0.0], [0.0, 1.0, 1.0], [0.0, 0.0, 2.0], [1.0, 0.0, 0.0]])
    m = spec.margins(outputs)  # labels 0, 1, 2, 0
    assert torch.equal(m, torch.tensor([[2.0, 3.0], [1.0, 0.0], [2.0, 2.0], [1.0, 1.0]]))
    ok = spec.certified(m)
    assert ok.tolist() == [True, False, True, True]  # a tie (margin 0) is not certified
    assert float(spec.hard_value(m)) == pytest.approx(0.75)
    balanced = CertifiedAccuracy(spec.x, spec.y, 3, 0.5, balanced=True)
    assert float(balanced.hard_value(m)) == pytest.approx((1.0 + 0.0 + 1.0) / 3)


def test_soft_value_equals_the_paper_softmax_of_worst_case_logits_under_ibp():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 4)).double()
    spec = CertifiedAccuracy(torch.randn(10, 3, dtype=torch.float64), torch.arange(10) % 4, 4, 0.5,
                             temperature=10.0)
    dom = Orthotope.around(model, lower=0.02)
    net = bounded_network(model)
    logits = net.compute_bounds(spec.x, dom, method="IBP")
    onehot = torch.nn.functional.one_hot(spec.y, 4).bool()
    worst = torch.where(onehot, logits.lower, logits.upper)
    paper = torch.softmax(10.0 * worst, dim=1)[torch.arange(10), spec.y].mean()
    margins = net.compute_bounds(spec.x, dom, C=spec.spec_matrix(), method="IBP", bound_upper=False).lower
    assert float(spec.soft_value(margins)) == pytest.approx(float(paper), rel=1e-12)
    # and the hard value is the paper's argmax of the worst-case logits
    assert float(spec.hard_value(margins)) == pytest.approx(float((worst.argmax(1) == spec.y).double().mean()))


def test_soft_value_is_differentiable_and_stable():
    spec = _spec(n=3, K=3)
    m = torch.tensor([[1e4, 2.0], [-1e4, 0.5], [0.0, 0.0]], requires_grad=True)
    v = spec.soft_value(m)
    v.backward()
    assert torch.isfinite(v) and torch.isfinite(m.grad).all()
    scores = spec.soft_scores(m.detach())
    assert float(scores[0]) == pytest.approx(1 / (1 + float(torch.exp(torch.tensor(-20.0)))), rel=1e-6)
    assert float(scores[1]) == 0.0 and float(scores[2]) == pytest.approx(1 / 3)


def test_soft_balanced_is_mean_of_class_means():
    spec = CertifiedAccuracy(torch.zeros(3, 1), torch.tensor([0, 0, 1]), 2, 0.5, balanced=True)
    m = torch.tensor([[10.0], [-10.0], [10.0]])
    s = spec.soft_scores(m)
    assert float(spec.soft_value(m)) == pytest.approx(float(((s[0] + s[1]) / 2 + s[2]) / 2))


def test_defect_sign_convention():
    spec = _spec(threshold=0.8)
    assert spec.defect(0.9) == pytest.approx(-0.1) and not spec.violated(0.9)
    assert spec.violated(0.7)


def test_subset_and_nominal_value():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4))
    spec = _spec()
    sub = spec.subset(torch.tensor([0, 2]))
    assert len(sub) == 2 and torch.equal(sub.y, spec.y[[0, 2]]) and sub.threshold == spec.threshold
    with torch.no_grad():
        acc = float((model(spec.x).argmax(1) == spec.y).float().mean())
    assert spec.nominal_value(model) == pytest.approx(acc)


@pytest.mark.parametrize("acc, inc, lim, expected", [
    (0.95, 0.1, 0.9, 0.85), (0.99, 0.05, 0.9, 0.9), (0.3, 0.2, None, 0.15), (0.8, None, 0.7, 0.7),
    (0.8, None, None, 0.8), (1.0, 0.12, 1.0, 0.88),
])
def test_threshold_from_accuracy(acc, inc, lim, expected):
    assert threshold_from_accuracy(acc, inc, lim) == pytest.approx(expected)


@pytest.mark.parametrize("kwargs, message", [
    (dict(x=torch.zeros(0, 2), y=torch.zeros(0, dtype=torch.long)), "empty"),
    (dict(y=torch.tensor([0, 5])), "label 5 is out of range"),
    (dict(y=torch.tensor([0, -1])), "out of range"),
    (dict(y=torch.tensor([0.0, float("nan")])), "NaN"),
    (dict(y=torch.tensor([0.5, 1.0])), "integers"),
    (dict(x=torch.tensor([[float("nan"), 0.0], [0.0, 0.0]])), "NaN"),
    (dict(threshold=1.5), "threshold"),
    (dict(threshold=-0.1), "threshold"),
    (dict(threshold=float("nan")), "threshold"),
    (dict(num_classes=1), "num_classes"),
    (dict(y=torch.tensor([0, 1, 1])), "2 inputs but 3 labels"),
    (dict(temperature=0.0), "temperature"),
    (dict(x=torch.zeros(2, 2, dtype=torch.long)), "floating-point"),
])
def test_bad_specifications(kwargs, message):
    args = dict(x=torch.zeros(2, 2), y=torch.tensor([0, 1]), num_classes=3, threshold=0.5) | kwargs
    with pytest.raises(SpecificationError, match=message):
        CertifiedAccuracy(**args)


def test_bad_thresholds_and_lists():
    with pytest.raises(SpecificationError):
        threshold_from_accuracy(1.2)
    with pytest.raises(SpecificationError, match="unique"):
        as_spec_list([_spec(name="a"), _spec(name="a")])
    with pytest.raises(SpecificationError, match="at least one"):
        as_spec_list([])
    with pytest.raises(SpecificationError, match="margin bounds have shape"):
        _spec().certified(torch.zeros(6, 2))


def test_competing_classes_restrict_the_margins():
    """Task-incremental learning: only the task's classes compete (the paper's masked head)."""
    x = torch.randn(4, 3)
    y = torch.tensor([2, 3, 3, 2])
    spec = CertifiedAccuracy(x, y, num_classes=6, threshold=0.5, classes=[3, 2])
    C = spec.spec_matrix()
    assert C.shape == (4, 1, 6) and spec.rows == 1
    torch.testing.assert_close(C[0, 0], torch.tensor([0, 0, 1, -1, 0, 0], dtype=x.dtype))
    torch.testing.assert_close(C[1, 0], torch.tensor([0, 0, -1, 1, 0, 0], dtype=x.dtype))
    # logits of other classes do not matter: class 5 wins overall, yet items are correct within the task
    outputs = torch.tensor([[0, 0, 2.0, 1, 0, 9], [0, 0, 1, 2.0, 0, 9], [0, 0, 3, 1.0, 0, 9], [0, 0, 0, 1.0, 0, 9]])
    assert spec.hard_value(spec.margins(outputs)).item() == 0.5
    assert spec.with_threshold(0.7).classes.tolist() == [2, 3]
    with pytest.raises(SpecificationError, match="not among the competing classes"):
        CertifiedAccuracy(x, torch.tensor([2, 3, 4, 2]), 6, 0.5, classes=[2, 3])
    with pytest.raises(SpecificationError, match="at least two distinct"):
        CertifiedAccuracy(x, torch.tensor([2, 2, 2, 2]), 6, 0.5, classes=[2])


# ------------------------------------------------------------------------------ local robustness
def test_epsilon_balls_contain_the_exact_clipped_ball_in_float32():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(50, 4, generator=g)
    spec = CertifiedAccuracy(x, torch.arange(50) % 3, 3, 0.5, epsilon=0.01, data_min=0.0, data_max=1.0)
    exact_lo, exact_up = (x.double() - 0.01).clamp(min=0), (x.double() + 0.01).clamp(max=1)
    assert spec.lower.dtype == torch.float32
    assert (spec.lower.double() <= exact_lo).all() and (spec.upper.double() >= exact_up).all()
    assert (spec.lower.double() - exact_lo).abs().max() < 1e-6 and (spec.upper >= spec.lower).all()
    assert spec.kind == "local_robustness" and spec.describe()["epsilon"] == 0.01
    q = spec.query()
    assert torch.equal(q.lower, spec.lower) and torch.equal(q.x, x) and not q.d.any()
    sub = spec.subset(torch.tensor([3, 7]))
    assert torch.equal(sub.lower, spec.lower[[3, 7]]) and sub.with_threshold(0.9).epsilon is not None


def test_per_channel_epsilon_like_abcrown_loaders():
    x = torch.rand(5, 3, 2, 2)
    eps = torch.tensor([0.1, 0.2, 0.3]).reshape(1, 3, 1, 1)
    spec = CertifiedAccuracy(x, torch.zeros(5, dtype=torch.long), 2, 0.5, epsilon=eps)
    width = (spec.upper - spec.lower).double()
    torch.testing.assert_close(width[:, 1], torch.full((5, 2, 2), 0.4, dtype=torch.float64), atol=1e-6, rtol=0)
    recorded = torch.tensor(spec.describe()["epsilon"])
    assert recorded.shape == (1, 3, 1, 1) and recorded.flatten().tolist() == pytest.approx([0.1, 0.2, 0.3])


@pytest.mark.parametrize("kwargs, message", [
    (dict(epsilon=-0.1), "epsilon must be >= 0"),
    (dict(epsilon=0.1, data_min=0.5), "item 0 lies below data_min"),
    (dict(epsilon=0.1, data_max=-1.0), "above data_max"),
    (dict(epsilon=torch.full((2, 2), 0.1)), "per-item boxes"),
    (dict(epsilon=torch.full((3,), 0.1)), "not broadcastable"),
    (dict(data_min=0.0), "without epsilon"),
    (dict(epsilon=float("nan")), "NaN"),
])
def test_bad_local_robustness_settings(kwargs, message):
    with pytest.raises(SpecificationError, match=message):
        CertifiedAccuracy(torch.zeros(2, 2), torch.tensor([0, 1]), 2, 0.5, **kwargs)


def test_robust_margins_are_sound_over_balls_and_weights():
    """Certified items stay correct for sampled weights of the box *and* sampled inputs of the ball."""
    from torch.func import functional_call, vmap

    from lirpa_lid.margin import compute_margins
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 3)).double()
    x = torch.randn(40, 3, dtype=torch.float64)
    with torch.no_grad():
        y = model(x).argmax(1)
    spec = CertifiedAccuracy(x, y, 3, 0.5, epsilon=0.05)
    dom = Orthotope.around(model, lower=0.005)
    with torch.no_grad():
        ok = spec.certified(compute_margins(bounded_network(model), spec, dom, "CROWN"))
    assert 0 < int(ok.sum()) < 40   # a meaningful mix
    g = torch.Generator().manual_seed(0)
    n = 2000
    weights = dom.sample(n, generator=g)
    u = torch.rand(n, *x.shape, generator=g, dtype=torch.float64)
    u[: n // 2] = (u[: n // 2] > 0.5).double()
    xs = spec.lower + u * (spec.upper - spec.lower)
    out = vmap(lambda p, xx: functional_call(model, p, (xx,)))(weights, xs)      # [n, 40, 3]
    assert (out.argmax(2)[:, ok] == y[ok]).all()
