"""The windowed backward pass (``lirpa_lid.bounds.native.window``) gives the dense pass's bounds, soundly.

The dense pass (``windowed=False``) is the reference: same relaxations and concretisation, so the two
agree up to rounding — on the raw backward bounds of every neuron of every windowable node, and on the
intermediate and final bounds of whole propagations."""
from __future__ import annotations

import time

import pytest
import torch
from helpers import make_net, random_domain, sampled_outputs, weight_names
from torch import nn

from lirpa_lid import ElementwiseAffine, InputBox
from lirpa_lid.bounds.native import window
from lirpa_lid.bounds.native.network import NativeBoundedNetwork, _Propagation

TOL = 1e-9  # float64: only rounding separates the two passes, and a sound bound from a sampled output


def _bn(channels: int) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(channels)
    bn.running_mean.uniform_(-0.3, 0.3)
    bn.running_var.uniform_(0.5, 2.0)
    bn.weight.data.uniform_(0.5, 1.5)
    bn.bias.data.uniform_(-0.2, 0.2)
    return bn


def _net(kind: str) -> tuple[nn.Module, tuple[int, ...]]:
    """Small CNNs covering stride 1/2, padding 0/1/2, dilation 2, kernels 3/5 (and 3×5), two and three
    convolutions, ReLU/Tanh/Sigmoid, element-wise affine maps in front and between convolutions."""
    torch.manual_seed(4)
    if kind == "stride2":    # padding 1 then 0, stride 2, kernel 3
        net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3, stride=2),
                            nn.ReLU(), nn.Flatten(), nn.Linear(27, 4))
        shape = (1, 8, 8)
    elif kind == "dilated":  # kernel 5 padding 2, dilation 2; Tanh and Sigmoid
        net = nn.Sequential(nn.Conv2d(2, 3, 5, padding=2), nn.Tanh(), nn.Conv2d(3, 4, 3, padding=2, dilation=2),
                            nn.Sigmoid(), nn.Flatten(), nn.Linear(4 * 7 * 7, 4))
        shape = (2, 7, 7)
    elif kind == "three":    # affine in front, conv→conv without activation, batch norm, odd shapes
        scale = torch.rand(1, 9, 10) + 0.5
        net = nn.Sequential(ElementwiseAffine(scale, -0.2), nn.Conv2d(1, 3, 3, stride=2, padding=1),
                            nn.Conv2d(3, 4, (3, 5), stride=(1, 2), padding=(2, 1)), _bn(4), nn.ReLU(),
                            nn.Conv2d(4, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 7 * 2, 4))
        shape = (1, 9, 10)
    elif kind == "three_relu":  # three convolutions with ReLUs, an element-wise affine between two of them
        net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Conv2d(3, 3, 3, stride=2, padding=2),
                            ElementwiseAffine(torch.rand(3, 4, 4) + 0.5, torch.randn(3, 4, 4) * 0.1), nn.ReLU(),
                            nn.Conv2d(3, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 4))
        shape = (1, 8, 8)
    else:
        raise ValueError(kind)
    return net.double().eval(), shape


KINDS = ["stride2", "dilated", "three", "three_relu"]
CASES = ["weights", "weights+bias", "weights+input", "later-layers"]
# with the first convolution exact, the two-convolution nets have no path through two convolutions left
MATRIX = [(k, c) for k in KINDS for c in CASES if c != "later-layers" or k.startswith("three")]


def _setup(kind: str, case: str):
    model, shape = _net(kind)
    torch.manual_seed(6)
    x = torch.randn(3, *shape, dtype=torch.float64)
    names = weight_names(model, bias=case != "weights")
    if case == "later-layers":  # the first convolution is exact: passes stop on an interior point node
        names = [n for n in names if not n.startswith(names[0].split(".")[0] + ".")]
    domain = random_domain(model, names, scale=0.03)
    box = InputBox.linf(x, 0.05) if case == "weights+input" else None
    return model, x, domain, box


def _propagate(model, x, domain, box, windowed: bool, max_chunk_elements: int = 2 ** 25) -> _Propagation:
    net = NativeBoundedNetwork(model, windowed=windowed)
    ops = net.chain(tuple(x.shape[1:]))
    state = _Propagation(ops, net._params(ops, domain, x.dtype), x, box, max_chunk_elements, windowed)
    state.forward(crown_intermediate=True)
    return state


def _windowable_nodes(state: _Propagation) -> list[int]:
    shapes = [tuple(t.shape[1:]) for t in state.lo]
    return [k for k in range(1, len(state.lo)) if not state.exact[k]
            and window.windowable(state.ops, shapes, k, state._stop(k))]


def _assert_raw_bounds_equal(state: _Propagation, node: int, rows: torch.Tensor) -> None:
    """Windowed and dense backward bounds (not intersected with IBP) of neurons ``rows`` of ``node``."""
    stop = state._stop(node)
    lower, upper = window.WindowedPass(state.ops, state.params, state.lo, state.hi, node, stop,
                                       state.point[stop]).bounds(rows)
    shape = state.lo[node].shape
    A = torch.eye(shape[1:].numel(), dtype=state.lo[node].dtype)[rows]
    A = A.reshape(1, len(rows), *shape[1:]).expand(shape[0], -1, *shape[1:])
    res = state.backward(torch.cat([A, -A], dim=1), node, None)
    torch.testing.assert_close(lower, res[:, :len(rows)], atol=TOL, rtol=0)
    torch.testing.assert_close(upper, -res[:, len(rows):], atol=TOL, rtol=0)


@pytest.mark.parametrize("kind,case", MATRIX)
def test_windowed_backward_equals_dense_on_every_neuron(kind, case):
    model, x, domain, box = _setup(kind, case)
    state = _propagate(model, x, domain, box, windowed=False)
    through_two_convs = 0
    for node in _windowable_nodes(state):
        _assert_raw_bounds_equal(state, node, torch.arange(state.lo[node][0].numel()))
        convs = [op for op in state.ops[state._stop(node):node] if isinstance(op, window.ConvOp)]
        through_two_convs += len(convs) >= 2
    assert through_two_convs, "no backward path through two convolutions was compared"


@pytest.mark.parametrize("kind,case", MATRIX)
def test_windowed_propagation_equals_dense(kind, case, monkeypatch):
    """Intermediate bounds of a whole CROWN propagation; tiny chunks split the rows many times."""
    model, x, domain, box = _setup(kind, case)
    calls = []
    bounds = window.WindowedPass.bounds
    monkeypatch.setattr(window.WindowedPass, "bounds",
                        lambda self, rows: calls.append(len(rows)) or bounds(self, rows))
    windowed = _propagate(model, x, domain, box, windowed=True, max_chunk_elements=2 ** 12)
    assert len(calls) > 1, "the windowed pass was not used (or not chunked)"
    calls.clear()
    dense = _propagate(model, x, domain, box, windowed=False)
    assert not calls
    for k, (lw, hw, ld, hd) in enumerate(zip(windowed.lo, windowed.hi, dense.lo, dense.hi)):
        torch.testing.assert_close(lw, ld, atol=TOL, rtol=0, msg=f"lower bounds of node {k}")
        torch.testing.assert_close(hw, hd, atol=TOL, rtol=0, msg=f"upper bounds of node {k}")
    ibp = _Propagation(dense.ops, dense.params, x, box, 2 ** 25)
    ibp.forward(crown_intermediate=False)
    tightened = sum(int(((hd - ld) < (hi - li) - 1e-6).sum())
                    for ld, hd, li, hi in zip(dense.lo, dense.hi, ibp.lo, ibp.hi))
    assert tightened > 0, "CROWN tightened no intermediate bound: the comparison is vacuous"


@pytest.mark.parametrize("kind,case", MATRIX)
def test_windowed_crown_contains_sampled_outputs(kind, case):
    model, x, domain, box = _setup(kind, case)
    C = torch.randn(5, 4, dtype=torch.float64)
    outs = sampled_outputs(model, domain, x, C, 10_000, box)
    b = NativeBoundedNetwork(model).compute_bounds(x, domain, C=C, method="CROWN", input_box=box)
    assert (outs >= b.lower - TOL).all() and (outs <= b.upper + TOL).all()


@pytest.mark.parametrize("kind,case", [("three", "weights+input"), ("three_relu", "weights+bias"),
                                       ("dilated", "weights")])
def test_windowed_gradients_equal_dense(kind, case):
    """Gradients of CROWN bounds w.r.t. the box offsets flow through the windowed pass as through the dense one."""
    model, x, domain, box = _setup(kind, case)
    C = torch.randn(5, 4, dtype=torch.float64)
    grads = []
    for windowed in (True, False):
        lower = {n: t.clone().requires_grad_() for n, t in domain.lower.items()}
        upper = {n: t.clone().requires_grad_() for n, t in domain.upper.items()}
        b = NativeBoundedNetwork(model, windowed=windowed).compute_bounds(
            x, domain.with_offsets(lower, upper), C=C, method="CROWN", input_box=box)
        (b.lower.sum() - b.upper.sum()).backward()
        grads.append([t.grad for t in (*lower.values(), *upper.values())])
    assert any(bool(g.abs().sum() > 0) for g in grads[0])
    for gw, gd in zip(*grads):
        torch.testing.assert_close(gw, gd, atol=TOL, rtol=0)


def test_paths_through_dense_layers_stay_dense():
    model = make_net("cnn")  # conv → ReLU → conv → ReLU → Flatten → Linear → ReLU → Linear
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    state = _propagate(model, x, random_domain(model, weight_names(model, bias=True), 0.02), None, windowed=False)
    shapes = [tuple(t.shape[1:]) for t in state.lo]
    linear_out = 6  # the first Linear's output: its path crosses Flatten and Linear
    assert not window.windowable(state.ops, shapes, linear_out, state._stop(linear_out))
    assert window.windowable(state.ops, shapes, 3, state._stop(3))


def test_paper_cnn_crown_is_windowed_and_equals_dense_on_sampled_neurons(monkeypatch):
    """The Split-MNIST CNN, all 6,179 parameters boxed, batch 2: the conv2 neurons' CROWN bounds take
    a windowed pass (timed: the dense pass took ~12 s here); raw bounds of every 16th neuron equal the
    dense pass's, and the final bounds contain sampled outputs."""
    model = make_net("paper_cnn")
    torch.manual_seed(0)
    x = torch.rand(2, 1, 28, 28, dtype=torch.float64)
    domain = random_domain(model, weight_names(model, bias=True), scale=2e-3)
    C = torch.randn(9, 10, dtype=torch.float64)
    rows = []
    bounds = window.WindowedPass.bounds
    monkeypatch.setattr(window.WindowedPass, "bounds",
                        lambda self, idx: rows.append(len(idx)) or bounds(self, idx))
    start = time.perf_counter()
    b = NativeBoundedNetwork(model).compute_bounds(x, domain, C=C, method="CROWN")
    print(f"paper CNN CROWN, batch 2, float64: {time.perf_counter() - start:.2f} s")
    assert sum(rows) > 100, "conv2's unstable neurons did not take the windowed pass"
    monkeypatch.undo()
    outs = sampled_outputs(model, domain, x, C, 2_000)
    assert (outs >= b.lower - TOL).all() and (outs <= b.upper + TOL).all()

    state = _propagate(model, x, domain, None, windowed=True)
    node, stop = 3, 0  # conv2's output: back through conv2, ReLU, conv1 to the input
    assert node in _windowable_nodes(state) and state._stop(node) == stop
    _assert_raw_bounds_equal(state, node, torch.arange(0, 576, 16))


@pytest.mark.slow
def test_paper_cnn_crown_windowed_equals_dense():
    model = make_net("paper_cnn")
    torch.manual_seed(0)
    x = torch.rand(2, 1, 28, 28, dtype=torch.float64)
    domain = random_domain(model, weight_names(model, bias=True), scale=2e-3)
    C = torch.randn(9, 10, dtype=torch.float64)
    a = NativeBoundedNetwork(model).compute_bounds(x, domain, C=C, method="CROWN")
    b = NativeBoundedNetwork(model, windowed=False).compute_bounds(x, domain, C=C, method="CROWN")
    torch.testing.assert_close(a.lower, b.lower, atol=TOL, rtol=0)
    torch.testing.assert_close(a.upper, b.upper, atol=TOL, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_dense_kernel_coefficients_equal_unfolded_products(kind, monkeypatch):
    """The dense conv step's kernel coefficients (one grouped convolution per chunk of items) equal the
    definition ``Σ_y A[o, y]·patch(x, y)[c, k]`` from unfolded patches, for every convolution geometry of
    these nets, in one chunk and in chunks of one item."""
    from lirpa_lid.bounds.native import conv
    model, shape = _net(kind)
    torch.manual_seed(8)
    x = torch.randn(3, *shape, dtype=torch.float64)
    for module in model:
        if isinstance(module, nn.Conv2d):
            op = conv.ConvOp("c", module, {})
            A = torch.randn(3, 5, *module(x).shape[1:], dtype=torch.float64)
            patches = torch.nn.functional.unfold(x, module.kernel_size, module.dilation, module.padding,
                                                 module.stride)
            expected = torch.einsum("bsol,bkl->bsok", A.flatten(3), patches).reshape(3, 5, -1)
            for limit in (conv.MAX_ELEMENTS, 1):
                monkeypatch.setattr(conv, "MAX_ELEMENTS", limit)
                assert torch.allclose(op._kernel_coefficients(A, x), expected, rtol=0, atol=TOL)
        x = module(x)
