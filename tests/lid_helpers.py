"""Shared fixtures of the LID tests: a small trained blobs MLP, its task-0 specification, LIDs, and
two soundness oracles (sampling and gradient attacks on the weights inside a domain)."""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vmap

from lirpa_lid.datasets import blobs_tasks
from lirpa_lid.domains.orthotope import Orthotope
from lirpa_lid.lid.solve import LIDConfig, compute_lid
from lirpa_lid.margin import compute_margins
from lirpa_lid.specification.accuracy import CertifiedAccuracy

QUICK = dict(iterations=40, primal_lr=0.5, dual_lr=0.1, snapshot_every=10, batch_size=200, progress=False)


@functools.lru_cache(maxsize=None)
def tasks(seed: int = 0):
    return blobs_tasks(seed)


def trained_mlp(hidden: int = 16, seed: int = 0, epochs: int = 5) -> nn.Module:
    """MLP 2-hidden-6 trained on blobs task 0 (deterministic)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, 6))
    data = tasks()[0].train
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(data), generator=g)
        for i in range(0, len(data), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            F.cross_entropy(model(data.x[idx]), data.y[idx]).backward()
            opt.step()
    return model


def task0_spec(threshold: float = 0.9, split: str = "train", name: str = "task 0") -> CertifiedAccuracy:
    data = getattr(tasks()[0], split)
    return CertifiedAccuracy(data.x, data.y, 6, threshold, name=name)


@functools.lru_cache(maxsize=None)
def cached_lid(method: str = "CROWN", threshold: float = 0.9, hidden: int = 16):
    model = trained_mlp(hidden)
    return model, compute_lid(model, task0_spec(threshold), LIDConfig(method=method, **QUICK))


def certified_items(model: nn.Module, domain: Orthotope, spec: CertifiedAccuracy, method: str) -> Tensor:
    from lirpa_lid import bounded_network
    with torch.no_grad():
        lower = compute_margins(bounded_network(model), spec, domain, method, dtype=torch.float64)
    return spec.certified(lower)


def sampled_min_margin(model: nn.Module, domain: Orthotope, x: Tensor, y: Tensor, n: int,
                       seed: int = 0, chunk: int = 500) -> float:
    """Smallest margin of the items ``(x, y)`` over ``n`` sampled weight vectors (half corners), float64."""
    model64 = _double(model)
    dom = domain.to(dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    x, worst = x.double(), float("inf")
    for start in range(0, n, chunk):
        k = min(chunk, n - start)
        weights = dom.sample(k, generator=g, corner_fraction=0.5)
        full = _with_frozen(model64, weights, k)
        out = vmap(lambda p: functional_call(model64, p, (x,)))(full)        # [k, m, K]
        true = out.gather(2, y.view(1, -1, 1).expand(k, -1, 1))
        marg = (true - out).masked_fill(F.one_hot(y, out.shape[2]).bool().unsqueeze(0), float("inf"))
        worst = min(worst, float(marg.min()))
    return worst


def attacked_min_margin(model: nn.Module, domain: Orthotope, x: Tensor, y: Tensor, steps: int = 60,
                        restarts: int = 3, seed: int = 0) -> float:
    """PGD on the weights, one weight vector per item: minimise the item's smallest margin inside the
    box (signed steps of 1/20 of the width, clamped to the box in float64; restart 0 starts at the
    centre, the others at random points); returns the smallest margin found over all items, steps
    and restarts."""
    model64 = _double(model)
    dom = domain.to(dtype=torch.float64)
    lo = {k: v[0].detach() for k, v in dom.bounds().items()}
    hi = {k: v[1].detach() for k, v in dom.bounds().items()}
    frozen = {k: v.detach() for k, v in model64.named_parameters() if k not in lo}
    n, x = x.shape[0], x.double()
    onehot = F.one_hot(y, 6).bool()
    g = torch.Generator().manual_seed(seed)
    worst = float("inf")

    def item_margin(w, xi, hot):
        out = functional_call(model64, {**frozen, **w}, (xi.unsqueeze(0),))[0]
        true = torch.where(hot, out, torch.zeros_like(out)).sum()
        return torch.where(hot, torch.full_like(out, float("inf")), true - out).min()

    batched = vmap(item_margin)
    for r in range(restarts):
        if r == 0:
            w = {k: ((lo[k] + hi[k]) / 2).unsqueeze(0).expand(n, *lo[k].shape).clone() for k in lo}
        else:
            w = {k: lo[k] + torch.rand(n, *lo[k].shape, generator=g, dtype=torch.float64) * (hi[k] - lo[k])
                 for k in lo}
        for _ in range(steps + 1):
            w = {k: t.requires_grad_(True) for k, t in w.items()}
            margins = batched(w, x, onehot)
            worst = min(worst, float(margins.detach().min()))
            grads = torch.autograd.grad(margins.sum(), list(w.values()))
            with torch.no_grad():
                w = {k: torch.minimum(torch.maximum(t - (hi[k] - lo[k]) / 20 * gr.sign(), lo[k]), hi[k])
                     for (k, t), gr in zip(w.items(), grads)}
    return worst


def _double(model: nn.Module) -> nn.Module:
    import copy
    return copy.deepcopy(model).double()


def _with_frozen(model: nn.Module, weights: dict[str, Tensor], k: int) -> dict[str, Tensor]:
    out = dict(weights)
    for name, p in model.named_parameters():
        if name not in out:
            out[name] = p.detach().unsqueeze(0).expand(k, *p.shape)
    return out
