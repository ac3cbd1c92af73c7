"""Bounds are exact at width 0, differentiable (checked against finite differences), tighten with
α-CROWN where they should, and reuse one prepared network across domains."""
from __future__ import annotations

import pytest
import torch
from helpers import INPUT_SHAPES, make_net, random_domain, weight_names

from lirpa_lid import InputBox, Orthotope, bounded_network, load_onnx
from lirpa_lid.datasets import data_dir

METHODS = ["IBP", "CROWN", "CROWN-IBP", "alpha-CROWN"]


@pytest.mark.parametrize("backend", ["native", "auto_lirpa"])
@pytest.mark.parametrize("kind", ["relu", "tanh", "sigmoid", "cnn"])
def test_width_zero_gives_the_forward_value(kind, backend):
    model = make_net(kind)
    x = torch.randn(3, *INPUT_SHAPES[kind], dtype=torch.float64)
    domain = Orthotope.around(model, weight_names(model, bias=True, convs=backend == "native"))
    C = torch.randn(5, 4, dtype=torch.float64)
    exact = model(x) @ C.T
    net = bounded_network(model, backend=backend)
    for method in METHODS:
        b = net.compute_bounds(x, domain, C=C, method=method)
        torch.testing.assert_close(b.lower, exact, atol=1e-10, rtol=0)
        torch.testing.assert_close(b.upper, exact, atol=1e-10, rtol=0)


def _offsets(domain: Orthotope):
    lower = {n: t.clone().requires_grad_() for n, t in domain.lower.items()}
    upper = {n: t.clone().requires_grad_() for n, t in domain.upper.items()}
    return lower, upper


@pytest.mark.parametrize("backend", ["native", "auto_lirpa"])
@pytest.mark.parametrize("method", ["IBP", "CROWN", "CROWN-IBP"])
@pytest.mark.parametrize("kind", ["relu", "tanh", "cnn"])
@pytest.mark.parametrize("with_input", [False, True], ids=["weights", "weights+input"])
def test_gradients_match_finite_differences(kind, method, backend, with_input):
    if backend == "auto_lirpa" and kind == "tanh" and method != "IBP":
        pytest.skip("auto_LiRPA reads Tanh tangent points from a 0.01-spaced table: its bounds jump between "
                    "table cells, so finite differences are meaningless (the native backend is smooth)")
    model = make_net(kind)
    torch.manual_seed(5)
    x = torch.randn(2, *INPUT_SHAPES[kind], dtype=torch.float64)
    names = weight_names(model, bias=True, convs=backend == "native")
    base = random_domain(model, names, scale=0.02)
    box = InputBox.linf(x, 0.03) if with_input else None
    C = torch.randn(3, 4, dtype=torch.float64)
    w = torch.randn(2, 3, dtype=torch.float64)
    net = bounded_network(model, backend=backend)

    def objective(lower, upper):
        b = net.compute_bounds(x, base.with_offsets(lower, upper), C=C, method=method, input_box=box)
        return (w * b.lower).sum() - (w * b.upper).sum()

    lower, upper = _offsets(base)
    objective(lower, upper).backward()
    g = torch.Generator().manual_seed(0)
    h = 1e-6
    checked = 0
    for side, offsets in (("lower", lower), ("upper", upper)):
        for name in names:
            grad = offsets[name].grad
            assert grad is not None and torch.isfinite(grad).all()
            for flat in torch.randint(0, grad.numel(), (4,), generator=g).tolist():
                plus = {n: t.detach().clone() for n, t in offsets.items()}
                minus = {n: t.detach().clone() for n, t in offsets.items()}
                plus[name].view(-1)[flat] += h
                minus[name].view(-1)[flat] -= h
                other = {n: t.detach() for n, t in (upper if side == "lower" else lower).items()}
                args_p = (plus, other) if side == "lower" else (other, plus)
                args_m = (minus, other) if side == "lower" else (other, minus)
                with torch.no_grad():
                    fd = (objective(*args_p) - objective(*args_m)) / (2 * h)
                assert abs(fd.item() - grad.view(-1)[flat].item()) <= 1e-5 * (1 + abs(fd.item())), \
                    f"{side} offset of {name}[{flat}]: autograd {grad.view(-1)[flat].item()}, finite diff {fd.item()}"
                checked += 1
    assert checked == 2 * 4 * len(names)


@pytest.mark.parametrize("backend", ["native", "auto_lirpa"])
def test_alpha_crown_is_tighter_than_crown_on_a_relu_net(backend):
    """Unstable ReLUs with optimisable slopes: α-CROWN must improve on CROWN (this fails on torch 2.14
    if the slopes start at exactly 0/1 and are clamped with zero gradient)."""
    model = make_net("relu")
    torch.manual_seed(0)
    x = torch.randn(4, 6, dtype=torch.float64)
    domain = random_domain(model, weight_names(model, bias=True), scale=0.05)
    C = torch.randn(5, 4, dtype=torch.float64)
    net = bounded_network(model, backend=backend)
    crown = net.compute_bounds(x, domain, C=C, method="CROWN")
    alpha = net.compute_bounds(x, domain, C=C, method="alpha-CROWN")
    assert (alpha.lower >= crown.lower - 1e-9).all() and (alpha.upper <= crown.upper + 1e-9).all()
    gain = (crown.upper - crown.lower).sum() - (alpha.upper - alpha.lower).sum()
    assert gain > 1e-3 * (crown.upper - crown.lower).sum()


@pytest.mark.parametrize("backend", ["native", "auto_lirpa"])
def test_alpha_crown_bounds_are_differentiable(backend):
    model = make_net("relu")
    x = torch.randn(2, 6, dtype=torch.float64)
    base = random_domain(model, weight_names(model, bias=True), scale=0.02)
    lower, upper = _offsets(base)
    b = bounded_network(model, backend=backend).compute_bounds(x, base.with_offsets(lower, upper),
                                                                method="alpha-CROWN")
    (b.lower.sum() - b.upper.sum()).backward()
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in (*lower.values(), *upper.values()))
    assert any(t.grad.abs().sum() > 0 for t in lower.values())


@pytest.mark.parametrize("backend", ["native", "auto_lirpa"])
def test_one_prepared_network_serves_many_domains(backend):
    """Changing the box in place gives exactly the bounds of a freshly built bounded network."""
    model = make_net("relu")
    x = torch.randn(3, 6, dtype=torch.float64)
    names = weight_names(model, bias=True)
    shared = bounded_network(model, backend=backend)
    for seed, scale in ((1, 0.01), (2, 0.05), (3, 0.0)):
        domain = random_domain(model, names, scale=scale, seed=seed)
        again = shared.compute_bounds(x, domain, method="CROWN")
        fresh = bounded_network(model, backend=backend).compute_bounds(x, domain, method="CROWN")
        torch.testing.assert_close(again.lower, fresh.lower, atol=0, rtol=0)
        torch.testing.assert_close(again.upper, fresh.upper, atol=0, rtol=0)


def test_bounds_grow_with_the_box():
    model = make_net("relu")
    x = torch.randn(3, 6, dtype=torch.float64)
    names = weight_names(model, bias=True)
    net = bounded_network(model)
    small = random_domain(model, names, scale=0.01)
    big = small.with_offsets({n: 2 * t for n, t in small.lower.items()}, {n: 2 * t for n, t in small.upper.items()})
    for method in METHODS:
        bs, bb = net.compute_bounds(x, small, method=method), net.compute_bounds(x, big, method=method)
        assert (bb.lower <= bs.lower + 1e-12).all() and (bb.upper >= bs.upper - 1e-12).all()


ACASXU = data_dir(must_exist=False) / "vnncomp2022" / "acasxu" / "onnx" / "ACASXU_run2a_2_7_batch_2000.onnx"


@pytest.mark.skipif(not ACASXU.is_file(), reason="VNN-COMP 2022 ACAS Xu data not present")
@pytest.mark.parametrize("method", ["CROWN", "alpha-CROWN"])
def test_an_items_bounds_do_not_depend_on_its_batch(method):
    """Bounded alone or with 59 other sub-boxes, a sub-box of ACAS Xu property 1 gets the same bounds. Before
    the fix, neurons unstable for *another* item were tightened for all items, which changed the next layers'
    IBP bounds and, through CROWN's adaptive slopes, final bounds in both directions (by up to 1.4 here),
    so branch and bound gave different answers depending on how sub-boxes were batched."""
    model = load_onnx(ACASXU).module.double().eval()
    g = torch.Generator().manual_seed(0)
    lo0 = torch.tensor([0.6, -0.5, -0.5, 0.45, -0.5], dtype=torch.float64)
    hi0 = torch.tensor([0.68, 0.5, 0.5, 0.5, -0.45], dtype=torch.float64)
    u = torch.rand(2, 60, 5, generator=g, dtype=torch.float64)
    lower = lo0 + (hi0 - lo0) * u.amin(0)
    upper = torch.minimum(lo0 + (hi0 - lo0) * u.amax(0), lower + 0.05 * (hi0 - lo0))
    box = InputBox(lower.reshape(60, 1, 1, 5), upper.reshape(60, 1, 1, 5))
    x = (box.lower + box.upper) / 2
    C = torch.tensor([[-1.0, 0.0, 0.0, 0.0, 0.0], [1.0, -1.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    net = bounded_network(model)
    with torch.no_grad():
        together = net.compute_bounds(x, None, C=C, method=method, input_box=box)
        alone = [net.compute_bounds(x[i:i + 1], None, C=C, method=method,
                                    input_box=InputBox(box.lower[i:i + 1], box.upper[i:i + 1])) for i in range(60)]
    assert torch.allclose(together.lower, torch.cat([b.lower for b in alone]), rtol=0, atol=1e-9)
    assert torch.allclose(together.upper, torch.cat([b.upper for b in alone]), rtol=0, atol=1e-9)
