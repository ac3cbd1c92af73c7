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
    elif kind == "norm_cnn":  # batch norm (2d and 1d, random running statistics), dropout, identity
        net = nn.Sequential(Normalise(), nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.2),
                            nn.Conv2d(4, 3, 3, stride=2), nn.Flatten(), nn.Linear(27, 8), nn.BatchNorm1d(8),
                            nn.Identity(), nn.Tanh(), nn.Linear(8, 4))
        for bn in (net[2], net[8]):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(bn.weight, 0.5, 1.5)
            nn.init.uniform_(bn.bias, -0.3, 0.3)
    elif kind == "unflatten":  # a dense layer reshaped into an image for a convolution
        net = nn.Sequential(nn.Linear(6, 16), nn.Unflatten(1, (1, 4, 4)), nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(),
                            nn.Flatten(), nn.Linear(32, 4))
    else:
        raise ValueError(kind)
    return net.double().eval()


INPUT_SHAPES = {"relu": (6,), "tanh": (6,), "sigmoid": (6,), "cnn": (1, 8, 8), "paper_cnn": (1, 28, 28),
                "norm_cnn": (1, 8, 8), "unflatten": (6,)}


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


# ------------------------------------------------------------------ constant arithmetic around boxed layers
class Normalise(nn.Module):
    """``(x − 0.5) / 0.3`` written as Python-number arithmetic (traced as constants by fx and auto_LiRPA)."""

    def forward(self, x: Tensor) -> Tensor:
        return (x - 0.5) / 0.3


class ScaleShift(nn.Module):
    """``x · 1.7 − 0.2``: a multiplication and a subtraction by Python numbers."""

    def forward(self, x: Tensor) -> Tensor:
        return x * 1.7 - 0.2


class Reflect(nn.Module):
    """``0.5 − x``: the constant on the left."""

    def forward(self, x: Tensor) -> Tensor:
        return 0.5 - x


class DivideShift(nn.Module):
    """``x / 3 + 1``."""

    def forward(self, x: Tensor) -> Tensor:
        return x / 3.0 + 1.0


class ZeroArith(nn.Module):
    """``(x + 0) − 0``: zero constants."""

    def forward(self, x: Tensor) -> Tensor:
        return (x + 0.0) - 0.0


def make_any_net(kind: str, seed: int = 0) -> nn.Module:
    """``make_net`` or ``make_arith_net`` by name."""
    return make_arith_net(kind, seed) if kind in ARITH_NETS else make_net(kind, seed)


def make_arith_net(kind: str, seed: int = 0) -> nn.Module:
    """Float64 networks with constant arithmetic in front of, between and after the boxed layers.
    Inputs have shape ``[B, 6]``, outputs ``[B, 4]``."""
    torch.manual_seed(seed)
    scalar = lambda s, t: ElementwiseAffine(torch.tensor(s), torch.tensor(t))
    vector = lambda: ElementwiseAffine(torch.linspace(-1.5, 2.0, 16), torch.linspace(0.3, -0.4, 16))
    if kind == "arith_front":
        net = nn.Sequential(Normalise(), scalar(2.0, -1.0), nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 4))
    elif kind == "arith_between":
        net = nn.Sequential(nn.Linear(6, 16), ScaleShift(), nn.Tanh(), vector(), nn.Linear(16, 16), Reflect(),
                            nn.ReLU(), nn.Linear(16, 4))
    elif kind == "arith_after":
        net = nn.Sequential(nn.Linear(6, 16), nn.Sigmoid(), nn.Linear(16, 4), DivideShift(), scalar(-2.0, 0.5))
    elif kind == "zeros":  # zero shift, zero constants, a zero scale in a vector affine map
        zero_scale = ElementwiseAffine(torch.tensor([1.0, 0.0] * 8), torch.zeros(16))
        net = nn.Sequential(scalar(2.0, 0.0), ZeroArith(), nn.Linear(6, 16), nn.ReLU(), zero_scale,
                            nn.Linear(16, 4))
    else:
        raise ValueError(kind)
    return net.double().eval()


ARITH_NETS = ["arith_front", "arith_between", "arith_after", "zeros"]
INPUT_SHAPES.update({kind: (6,) for kind in ARITH_NETS})


# ------------------------------------------------------------------ gradient attack
def attack_extremes(model: nn.Module, domain: Orthotope, x: Tensor, C: Tensor,
                    input_box: InputBox | None = None, steps: int = 60, restarts: int = 8,
                    seed: int = 3) -> tuple[Tensor, Tensor]:
    """Smallest and largest ``C·f(x'; θ)`` found by projected (sign-)gradient descent over θ in
    ``domain`` (and x' in ``input_box``): ``([B, S], [B, S])``.

    Every (item, row, direction, restart) is its own attack problem with its own weights and input, all
    run at once through ``vmap``; half the restarts start at random vertices, half at uniform points. The step shrinks from a
    quarter of each coordinate's width to 1/100 of it. Weights stay in the box's inner bounds, so every
    value found is attained by a weight vector of the domain.
    """
    g = torch.Generator().manual_seed(seed)
    B, S = x.shape[0], C.shape[0]
    P = B * S * 2 * restarts
    item = torch.arange(B).repeat_interleave(S * 2 * restarts)
    row = torch.arange(S).repeat_interleave(2 * restarts).repeat(B)
    sign = torch.tensor([1.0, -1.0], dtype=x.dtype).repeat_interleave(restarts).repeat(B * S)
    bounds = domain.inner_bounds(x.dtype, domain.names)
    frozen = {n: t.detach() for n, t in model.named_parameters() if n not in bounds}
    frozen.update({n: t.detach() for n, t in model.named_buffers()})
    lo = {n: b[0].expand(P, *b[0].shape) for n, b in bounds.items()}
    hi = {n: b[1].expand(P, *b[1].shape) for n, b in bounds.items()}
    if input_box is None:
        x_lo = x_hi = x[item].unsqueeze(1)
    else:
        x_lo, x_hi = input_box.lower[item].unsqueeze(1), input_box.upper[item].unsqueeze(1)
    corner = (torch.arange(P) % restarts < restarts // 2).to(x.dtype)  # half the restarts start at a vertex

    def start(low: Tensor, high: Tensor) -> Tensor:
        u = torch.rand(low.shape, generator=g, dtype=x.dtype)
        c = corner.reshape(P, *([1] * (low.dim() - 1)))
        u = c * (u > 0.5).to(x.dtype) + (1 - c) * u
        return (low + u * (high - low)).requires_grad_()

    params = {n: start(lo[n], hi[n]) for n in bounds}
    xs = start(x_lo, x_hi)
    rows = C[row]

    def values() -> Tensor:
        out = vmap(lambda p, xx: functional_call(model, {**frozen, **p}, (xx,)))(params, xs)
        return (rows * out.flatten(1)).sum(-1)

    best = torch.full((P,), float("inf"), dtype=x.dtype)  # smallest signed value found per problem
    for k in range(steps):
        fraction = 0.25 * (0.04 ** (k / max(steps - 1, 1)))
        signed = sign * values()
        best = torch.minimum(best, signed.detach())
        grads = torch.autograd.grad(signed.sum(), [*params.values(), xs])
        with torch.no_grad():
            for (n, p), gr in zip(params.items(), grads):
                p.sub_(fraction * (hi[n] - lo[n]) * gr.sign()).clamp_(lo[n], hi[n])
            xs.sub_(fraction * (x_hi - x_lo) * grads[-1].sign())
            xs.copy_(torch.maximum(torch.minimum(xs, x_hi), x_lo))
    with torch.no_grad():
        best = torch.minimum(best, sign * values())
    found = (sign * best).reshape(B, S, 2, restarts)
    return found[:, :, 0].amin(-1), found[:, :, 1].amax(-1)
