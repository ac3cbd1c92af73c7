"""Width-0 exactness: with a box of width 0 and no input box, every backend and method returns the
network's own outputs — to ~1e-12 in float64, to float32 rounding in float32. The sharpest oracle for
wrong constants, lost dtypes and mis-traced layers (any of them shifts the bounds away from f(x; θ₀)).

Cases: every supported layer kind (Linear, Conv2d, ReLU/Tanh/Sigmoid, BatchNorm1d/2d, Dropout, Identity,
Flatten/Unflatten, scalar and vector ``ElementwiseAffine``, ``x ± c``, ``c − x``, ``x · c``, ``x / c``,
zero constants) × backend × method × (model dtype, bound dtype).
"""
from __future__ import annotations

import pytest
import torch
from helpers import ARITH_NETS, INPUT_SHAPES, make_any_net, weight_names

from lirpa_lid import BackendError, Orthotope, bounded_network

METHODS = ["IBP", "CROWN", "CROWN-IBP", "alpha-CROWN"]
NETS = ["relu", "tanh", "sigmoid", "cnn", "norm_cnn", "unflatten", *ARITH_NETS]
#: (model dtype, bound dtype, tolerance relative to 1 + |f|)
DTYPES = {"f64": (torch.float64, torch.float64, 1e-12), "f64-bounded-f32": (torch.float64, torch.float32, 2e-5),
          "f32": (torch.float32, torch.float32, 2e-5)}
#: combinations auto_LiRPA cannot bound: each must raise one BackendError pointing to the native backend
AUTO_LIRPA_UNSUPPORTED = {("unflatten", method) for method in METHODS}  # 0.3 cannot trace nn.Unflatten


def _case(kind: str, dtypes: str, backend: str):
    model_dtype, bound_dtype, tol = DTYPES[dtypes]
    model = make_any_net(kind).to(model_dtype)
    g = torch.Generator().manual_seed(4)
    x = torch.rand(5, *INPUT_SHAPES[kind], generator=g, dtype=torch.float64)
    names = weight_names(model, bias=True, convs=backend == "native")  # auto_LiRPA: no conv weight boxes
    box = Orthotope.around(model, names, lower=0.0, upper=0.0).to(dtype=bound_dtype)
    with torch.no_grad():
        f = model(x.to(model_dtype)).double()
    return model, x.to(bound_dtype), box, f, tol


@pytest.mark.parametrize("dtypes", list(DTYPES))
@pytest.mark.parametrize("backend", ["native", "auto_lirpa"])
@pytest.mark.parametrize("kind", NETS)
def test_width_zero_bounds_are_the_outputs(kind, backend, dtypes):
    model, x, box, f, tol = _case(kind, dtypes, backend)
    net = bounded_network(model, box.names, backend)
    for method in METHODS:
        if backend == "auto_lirpa" and (kind, method) in AUTO_LIRPA_UNSUPPORTED:
            with pytest.raises(BackendError, match="backend='native'"):
                net.compute_bounds(x, box, method=method)
            continue
        b = net.compute_bounds(x, box, method=method)
        assert b.lower.dtype == b.upper.dtype == x.dtype, method
        err = torch.maximum((b.lower.double() - f).abs(), (b.upper.double() - f).abs()) / (1 + f.abs())
        assert float(err.max()) <= tol, f"{method}: bounds {float(err.max()):.2e} away from f(x; θ0)"
