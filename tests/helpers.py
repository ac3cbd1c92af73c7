"""Small seeded networks, domains and a sampling oracle shared by the bound tests."""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from lirpa_lid import ElementwiseAffine, InputBox, Orthotope


def make_net(kind: str, seed: int = 0) -> nn.Module:
    """Float64 networks covering every supported layer type."""
    torch.manual_seed(seed)
    if kind in ("relu", "tanh", "sigmoid"):
        act = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[kind]
        net = nn.Sequential(ElementwiseAffine(torch.full((6,), 2.0), torch.full((6,), -0.5)),
                            nn.Linear(6, 16), act(), nn.Linear(16, 16), act(), nn.Linear(16, 4))
    elif kind == "cnn":
        net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3, stride=2),
                            nn.ReLU(), nn.Flatten(), nn.Linear(27, 8), nn.ReLU(), nn.Linear(8, 4))
    elif kind == "paper_cnn":  # the Split-MNIST CNN of the paper: 6,179 parameters
        net = nn.Sequential(nn.Conv2d(1, 8, 5, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 5, padding=1),
                            nn.ReLU(), nn.Flatten(), nn.Linear(576, 10))
    else:
        raise ValueError(kind)
    return net.double().eval()


INPUT_SHAPES = {"relu": (6,), "tanh": (6,), "sigmoid": (6,), "cnn": (1, 8, 8), "paper_cnn": (1, 28, 28)}


def weight_names(model: nn.Module, bias: bool, convs: bool = True) -> list[str]:
    names = []
    for mname, mod in model.named_modules():
        if isinstance(mod, nn.Linear) or (convs and isinstance(mod, nn.Conv2d)):
            names.append(f"{mname}.weight")
            if bias and mod.bias is not None:
                names.append(f"{mname}.bias")
    return names


def random_domain(model: nn.Module, names: list[str], scale: float, seed: int = 1) -> Orthotope:
    """Asymmetric box with offsets uniform in [0, scale]."""
    g = torch.Generator().manual_seed(seed)
    base = Orthotope.around(model, names)
    off = lambda: {n: torch.rand(t.shape, generator=g, dtype=t.dtype) * scale for n, t in base.reference.items()}
    return base.with_offsets(off(), off())


def sampled_outputs(model: nn.Module, domain: Orthotope, x: Tensor, C: Tensor, n: int,
                    input_box: InputBox | None = None, seed: int = 2) -> Tensor:
    """``C·f(x'; θ)`` for ``n`` weight vectors θ of the domain (half of them corners) and, with an input
    box, ``n`` inputs x' of the box (also half corners): ``[n, B, S]``."""
    g = torch.Generator().manual_seed(seed)
    weights = domain.sample(n, generator=g, corner_fraction=0.5)
    if input_box is None:
        xs = x.expand(n, *x.shape)
    else:
        u = torch.rand(n, *x.shape, generator=g, dtype=x.dtype)
        u[: n // 2] = (u[: n // 2] > 0.5).to(x.dtype)
        xs = input_box.lower + u * (input_box.upper - input_box.lower)
    out = vmap(lambda p, xx: functional_call(model, p, (xx,)))(weights, xs)
    return torch.einsum("so,nbo->nbs", C, out.flatten(2))
