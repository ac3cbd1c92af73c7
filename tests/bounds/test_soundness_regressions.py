"""Regression tests for the soundness defects of issue 17, one per defect, each on the issue's own
snippet: every one failed (wrong certificate, crash, or non-finite gradients) before its fix."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from lirpa_lid import BackendError, CertifiedAccuracy, ElementwiseAffine, InputBox, Orthotope, bounded_network, certify

BACKENDS = ["native", "auto_lirpa"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_scalar_affine_before_boxed_layers_certifies_no_wrong_label(backend):
    """Defect 1: with a scalar ``ElementwiseAffine`` in front, auto_LiRPA's bounds were off by 1.13 at
    width 0 and 88 of 200 items with wrong labels were certified."""
    torch.manual_seed(0)
    model = nn.Sequential(ElementwiseAffine(torch.tensor(2.0), torch.tensor(-1.0)), nn.Linear(5, 3)).double().eval()
    x = torch.rand(200, 5, dtype=torch.float64)
    names = ["1.weight", "1.bias"]
    box = Orthotope.around(model, names, lower=0.0)
    f = model(x).detach()
    b = bounded_network(model, names, backend).compute_bounds(x, box, method="IBP")
    assert float(torch.maximum(b.lower - f, f - b.upper).max()) <= 1e-12
    y_wrong = (f.argmax(1) + 1) % 3
    assert certify(model, box, CertifiedAccuracy(x, y_wrong, 3, 0.0), "IBP", backend=backend).k == 0
    y_right = f.argmax(1)
    assert certify(model, box, CertifiedAccuracy(x, y_right, 3, 0.0), "IBP", backend=backend).k == 200


class _Norm(nn.Module):
    def forward(self, x):
        return (x - 0.5) / 0.3


@pytest.mark.parametrize("backend", BACKENDS)
def test_traced_constants_keep_the_models_dtype(backend):
    """Defect 2: float32 copies of traced Python-float constants certified an item whose true margin
    is −1e-9 at θ0."""
    s = 1 / 0.3
    lin = nn.Linear(1, 2).double()
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0], [0.0]], dtype=torch.float64))
        lin.bias.copy_(torch.tensor([s - 1e-9, 0.0], dtype=torch.float64))
    model = nn.Sequential(_Norm(), lin).double().eval()
    x = torch.tensor([[-0.5]], dtype=torch.float64)
    assert float(model(x)[0, 0] - model(x)[0, 1]) < 0  # the item is misclassified at θ0
    box = Orthotope.around(model, ["1.weight", "1.bias"], lower=0.0)
    for method in ["IBP", "CROWN", "CROWN-IBP", "alpha-CROWN"]:
        assert certify(model, box, CertifiedAccuracy(x, torch.tensor([0]), 2, 0.0), method, backend=backend).k == 0


@pytest.mark.parametrize("shift, zero_op", [(0.0, lambda x: x + 0.0), (-1.0, lambda x: x - 0.0),
                                            (0.5, lambda x: x * 0.0)])
def test_zero_constants_are_bounded(shift, zero_op):
    """Defect 3: a traced ``x + 0.0``, ``x − 0.0`` or ``x · 0.0`` (and a zero shift) raised ZeroDivisionError."""
    class Zero(nn.Module):
        def forward(self, x):
            return zero_op(x)

    torch.manual_seed(1)
    model = nn.Sequential(ElementwiseAffine(torch.tensor(2.0), torch.tensor(shift)), Zero(), nn.Linear(5, 3),
                          nn.ReLU(), nn.Linear(3, 2)).double().eval()
    x = torch.rand(4, 5, dtype=torch.float64)
    box = Orthotope.around(model, ["2.weight", "4.weight"], lower=0.01, upper=0.02)
    for method in ["IBP", "CROWN"]:
        b = bounded_network(model).compute_bounds(x, box, method=method)
        f = model(x).detach()
        assert (b.lower <= f + 1e-12).all() and (f <= b.upper + 1e-12).all()


def test_float64_model_bounded_in_float32():
    """Defect 4: a float64 model with an ``ElementwiseAffine``, bounded in float32 (``compute_lid``'s
    factor search), crashed with a dtype mismatch at the next Linear."""
    m = nn.Sequential(ElementwiseAffine(torch.full((5,), 2.0), torch.full((5,), -1.0)), nn.Linear(5, 3)).double().eval()
    x = torch.rand(2, 5)
    box = Orthotope.around(m, ["1.weight"], lower=0.01).to(dtype=torch.float32)
    b = bounded_network(m).compute_bounds(x, box, method="IBP")
    assert b.lower.dtype == torch.float32
    f = m(x.double()).detach()
    assert (b.lower.double() <= f + 1e-5).all() and (f <= b.upper.double() + 1e-5).all()


def test_auto_lirpa_failure_is_a_backend_error_pointing_to_native():
    """Defect 6: α-CROWN on a Tanh CNN with only its Linear layers boxed and an input box crashed inside
    auto_LiRPA with a shape mismatch; it is now one BackendError (and the native backend bounds it)."""
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 3, 3, stride=2), nn.Tanh(),
                        nn.Flatten(), nn.Linear(27, 8), nn.Tanh(), nn.Linear(8, 4)).double().eval()
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    names = ["5.weight", "5.bias", "7.weight", "7.bias"]
    box = Orthotope.around(cnn, names, lower=0.01, upper=0.02)
    with pytest.raises(BackendError, match="alpha-CROWN.*backend='native'"):
        bounded_network(cnn, names, "auto_lirpa").compute_bounds(x, box, method="alpha-CROWN",
                                                                 input_box=InputBox.linf(x, 0.05))
    b = bounded_network(cnn, names, "native").compute_bounds(x, box, method="alpha-CROWN",
                                                             input_box=InputBox.linf(x, 0.05))
    assert torch.isfinite(b.lower).all()
