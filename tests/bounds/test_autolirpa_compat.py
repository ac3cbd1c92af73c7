"""Each auto_LiRPA compatibility fix, undone, shows the failure it prevents; re-applied, the failure is gone.

Import-time fixes are checked in a subprocess (an imported module cannot be un-imported). The
symptoms are those of auto_LiRPA 0.3 on torch 2.14 / numpy 2 (CI's setup); on other versions a fix
that is not needed is skipped.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from helpers import make_net, random_domain, weight_names
from torch import nn

from lirpa_lid import BackendError, ElementwiseAffine, Orthotope, bounded_network
from lirpa_lid.bounds.auto_lirpa import compat as autolirpa

pytestmark = pytest.mark.skipif(autolirpa.source_version() is None, reason="auto_LiRPA is not installed")
requires_03 = pytest.mark.skipif(not autolirpa._is_release_03(), reason="symptom specific to auto_LiRPA 0.3")


def needed(name: str) -> bool:
    p = autolirpa.patch(name)
    return p.applied or p.needed()


@pytest.fixture(scope="module")
def lirpa():
    warnings.filterwarnings("ignore", category=FutureWarning)
    return autolirpa.import_auto_lirpa()


IMPORT_SCRIPT = """
import sys, warnings
warnings.filterwarnings("ignore")
import torch
from lirpa_lid.bounds.auto_lirpa import compat as a
for p in a.PATCHES:
    if p.stage == "pre" and p.needed() and p.name != sys.argv[1]:
        p.apply()
try:
    import auto_LiRPA
    auto_LiRPA.BoundedModule(torch.nn.Sequential(torch.nn.Linear(2, 2)), torch.zeros(1, 2))
except Exception as exc:
    print("FAILED:", type(exc).__name__, exc)
    sys.exit(1)
print("OK")
"""


def _import_with_all_but(name: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", IMPORT_SCRIPT, name], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("name, symptom", [
    ("numpy-arraysetops", "numpy.lib.arraysetops"),
    ("onnx-set-opset-version", "_set_opset_version"),
    ("node-getitem", "not subscriptable"),
])
def test_import_time_fix_prevents_its_failure(name, symptom):
    if not needed(name):
        pytest.skip(f"{name} is not needed with these versions")
    without = _import_with_all_but(name)
    assert without.returncode == 1 and symptom in without.stdout, without.stdout + without.stderr
    with_all = _import_with_all_but("none")
    assert with_all.returncode == 0 and "OK" in with_all.stdout, with_all.stdout + with_all.stderr


def test_named_members_fix(lirpa):
    name = "named-members-remove-duplicate"
    if not needed(name):
        pytest.skip("not needed with these versions")
    bm = lirpa.BoundedModule(nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)), torch.zeros(1, 2))
    p = autolirpa.patch(name)
    p.undo()
    try:
        with pytest.raises(TypeError, match="remove_duplicate"):
            list(bm.parameters())
    finally:
        p.apply()
    assert len(list(bm.parameters())) == 4


def _alpha_gain() -> float:
    model = make_net("relu")
    torch.manual_seed(0)
    x = torch.randn(4, 6, dtype=torch.float64)
    domain = random_domain(model, weight_names(model, bias=True), scale=0.05)
    net = bounded_network(model, backend="auto_lirpa")
    crown = net.compute_bounds(x, domain, method="CROWN")
    alpha = net.compute_bounds(x, domain, method="alpha-CROWN")
    return float((crown.upper - crown.lower).sum() - (alpha.upper - alpha.lower).sum())


def test_relu_alpha_fix(lirpa):
    """torch 2.14: without the fix α-CROWN silently returns exactly CROWN's bounds."""
    name = "relu-alpha-inside-unit-interval"
    if not needed(name):
        pytest.skip("not needed with these versions")
    p = autolirpa.patch(name)
    p.undo()
    try:
        assert abs(_alpha_gain()) < 1e-9
    finally:
        p.apply()
    assert _alpha_gain() > 1e-3


def _explicit_box_module(lirpa):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    w = model[0].weight.data.clone()
    ptb = lirpa.PerturbationLpNorm(norm=np.inf, x_L=w - 0.01, x_U=w + 0.02)
    model[0].weight = lirpa.BoundedParameter(w, ptb)
    return model, lirpa.BoundedModule(model, torch.zeros(1, 4), bound_opts=dict(autolirpa.BOUND_OPTS))


def test_parameter_box_batch_dim_fix(lirpa):
    name = "parameter-box-batch-dim"
    if not needed(name):
        pytest.skip("not needed with these versions")
    x = torch.randn(5, 4)
    model, bm = _explicit_box_module(lirpa)
    p = autolirpa.patch(name)
    p.undo()
    try:
        with pytest.raises(RuntimeError, match="must match"):
            bm.compute_bounds(x=(x,), method="CROWN")
    finally:
        p.apply()
    lb, ub = bm.compute_bounds(x=(x,), method="CROWN")
    # the same box given as centre + radius (how lirpa_lid itself passes boxes) gives the same bounds
    plain = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    plain.load_state_dict({k: v.detach() for k, v in model.state_dict().items()})
    domain = Orthotope.around(plain, ["0.weight"], lower=0.01, upper=0.02)
    ours = bounded_network(plain, backend="auto_lirpa").compute_bounds(x, domain, method="CROWN")
    torch.testing.assert_close(ours.lower, torch.maximum(lb, ours.lower), atol=1e-5, rtol=0)
    assert (ours.lower >= lb - 1e-5).all() and (ours.upper <= ub + 1e-5).all()


def _weight_boxed(lirpa, model: nn.Module, names: list[str], eps: float = 0.01) -> nn.Module:
    """``model`` with the named parameters replaced by ``BoundedParameter``s in an L∞ box ``± eps``."""
    for name in names:
        mod_name, leaf = name.rsplit(".", 1)
        mod = model.get_submodule(mod_name)
        value = getattr(mod, leaf).data.clone()
        delattr(mod, leaf)
        mod.register_parameter(leaf, lirpa.BoundedParameter(
            value, lirpa.PerturbationLpNorm(norm=np.inf, eps=torch.full_like(value, eps))))
    return model


@requires_03
def test_dense_intermediate_bounds_are_required(lirpa):
    """Default sparse intermediate bounds fail under CROWN with weight perturbation ('OneHotC' ...)."""
    torch.manual_seed(0)
    model = _weight_boxed(lirpa, nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(),
                                               nn.Linear(8, 3)), ["0.weight", "2.weight"])
    x = torch.randn(5, 4)
    bm = lirpa.BoundedModule(model, torch.zeros(1, 4))
    with pytest.raises(AttributeError, match="OneHotC"):
        bm.compute_bounds(x=(x,), method="CROWN")
    ok = lirpa.BoundedModule(model, torch.zeros(1, 4), bound_opts=dict(autolirpa.BOUND_OPTS))
    lb, ub = ok.compute_bounds(x=(x,), method="CROWN")
    assert (lb <= ub).all()


@requires_03
def test_matrix_conv_mode_is_required_with_an_input_box(lirpa):
    torch.manual_seed(0)
    model = _weight_boxed(lirpa, nn.Sequential(ElementwiseAffine(torch.full((4,), 2.0), torch.full((4,), -1.0)),
                                               nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)), ["1.weight"])
    x = torch.randn(5, 4)
    bx = lirpa.BoundedTensor(x, lirpa.PerturbationLpNorm(norm=np.inf, eps=0.01))
    bm = lirpa.BoundedModule(model, torch.zeros(1, 4), bound_opts={"sparse_intermediate_bounds": False})
    with pytest.raises(IndexError):
        bm.compute_bounds(x=(bx,), method="CROWN")
    ok = lirpa.BoundedModule(model, torch.zeros(1, 4), bound_opts=dict(autolirpa.BOUND_OPTS))
    lb, ub = ok.compute_bounds(x=(bx,), method="CROWN")
    assert (lb <= ub).all()


@requires_03
def test_dense_alpha_is_required(lirpa):
    """Sparse α fails on a weight-boxed ReLU net once the box is wide enough (here ±0.05)."""
    def module(opts):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))
        model = _weight_boxed(lirpa, model, [n for n, _ in model.named_parameters()], eps=0.05)
        return lirpa.BoundedModule(model, torch.zeros(1, 6), bound_opts=opts)

    sparse = module({k: v for k, v in autolirpa.BOUND_OPTS.items() if "alpha" not in k})
    x, C = torch.randn(4, 6), torch.randn(4, 5, 4)  # drawn right after the seeded model
    with pytest.raises(RuntimeError, match="shape mismatch"):
        sparse.compute_bounds(x=(x,), C=C, method="CROWN-Optimized")
    lb, ub = module(dict(autolirpa.BOUND_OPTS)).compute_bounds(x=(x,), C=C, method="CROWN-Optimized")
    assert (lb <= ub).all()


@requires_03
def test_float64_needs_the_default_dtype_set(lirpa):
    """0.3 builds Tanh tangent tables in torch's default dtype; the adapter matches it to the model."""
    model = make_net("tanh")
    x = torch.randn(3, 6, dtype=torch.float64)
    boxed = _weight_boxed(lirpa, make_net("tanh"), ["1.weight"])
    bm = lirpa.BoundedModule(boxed, torch.zeros(1, 6, dtype=torch.float64),
                             bound_opts=dict(autolirpa.BOUND_OPTS))
    with pytest.raises(RuntimeError, match="Double|dtype"):
        bm.compute_bounds(x=(x,), method="CROWN")
    domain = Orthotope.around(model, ["1.weight"], lower=0.01)
    b = bounded_network(model, backend="auto_lirpa").compute_bounds(x, domain, method="CROWN")
    assert b.lower.dtype == torch.float64 and (b.lower <= b.upper).all()


def test_missing_auto_lirpa_is_reported_with_an_install_hint(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(autolirpa, "_LIRPA", None)
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name == "auto_LiRPA" else real(name, *a, **k))
    with pytest.raises(BackendError, match="pip install --no-deps auto-lirpa==0.3"):
        autolirpa.import_auto_lirpa()
    model = make_net("relu")
    x = torch.randn(2, 6, dtype=torch.float64)
    with pytest.raises(BackendError):
        bounded_network(model, backend="auto_lirpa").compute_bounds(x, Orthotope.around(model))
    # the native backend does not need auto_LiRPA
    assert bounded_network(model).compute_bounds(x, Orthotope.around(model)).lower.shape == (2, 4)


def test_convolution_weights_are_refused_with_a_pointer_to_the_native_backend():
    model = make_net("cnn")
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    with pytest.raises(BackendError, match="backend='native'"):
        bounded_network(model, backend="auto_lirpa").compute_bounds(x, Orthotope.around(model, ["0.weight"]))


def _scalar_affine_case():
    """Issue 17, defect 1: a scalar ``ElementwiseAffine`` in front of the boxed layers, fixed inputs."""
    torch.manual_seed(0)
    model = nn.Sequential(ElementwiseAffine(torch.tensor(2.0), torch.tensor(-1.0)), nn.Linear(5, 3)).double().eval()
    x = torch.rand(200, 5, dtype=torch.float64)
    box = Orthotope.around(model, ["1.weight", "1.bias"], lower=0.0)
    return model, x, box


def test_constant_times_constant_fix(lirpa):
    """0.3: a Mul of a fixed input by a traced scalar is bounded as x·x — bounds off by up to 1.13 at
    width 0, and misclassified items certified. With the fix the bounds are the outputs."""
    name = "constant-times-constant"
    if not needed(name):
        pytest.skip("not needed with these versions")
    model, x, box = _scalar_affine_case()
    f = model(x).detach()

    def gap() -> float:
        b = bounded_network(model, box.names, "auto_lirpa").compute_bounds(x, box, method="IBP")
        return float(torch.maximum(b.lower - f, f - b.upper).max())
    p = autolirpa.patch(name)
    p.undo()
    try:
        assert gap() > 0.5
    finally:
        p.apply()
    assert gap() <= 1e-12
