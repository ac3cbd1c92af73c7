"""Input splitting (``certificate/refine.py``) on a tiny ReLU network computing ``|z| − 0.9·z``, ``z = x0 + x1/2``.

On the box ``x0 ∈ [−1, 2]``, ``x1 ∈ [−1, 1]`` CROWN alone cannot prove "the output is never ≤ −0.1"
(its relaxation of the two ReLUs gives ``y ≥ −0.15``, IBP ``y ≥ −2.25``); halving the box can, since each ReLU becomes
stable. The tests check the verdicts, that the leaves partition the box, that sampled inputs agree, that
the split specification is certified by ``certify`` at θ₀, and that a LID grown for it holds under
sampled weights and inputs. A slow test measures splitting on ACAS Xu N2,5 property 3 at θ₀.
"""
from __future__ import annotations

import copy
import csv
import itertools
import time

import numpy as np
import pytest
import torch
from helpers import attack_extremes
from refine_helpers import abs_net
from torch import nn
from torch.func import functional_call, vmap

from lirpa_lid.bounds import bounded_network
from lirpa_lid.bounds.core import InputBox
from lirpa_lid.certificate import certify
from lirpa_lid.certificate.refine import SplitStatus, split_input_boxes
from lirpa_lid.datasets import data_dir
from lirpa_lid.domains.orthotope import Orthotope
from lirpa_lid.errors import InputError
from lirpa_lid.lid import LIDConfig, compute_lid
from lirpa_lid.margin import compute_margins
from lirpa_lid.specification.vnnlib.parse import Disjunct, VnnlibProperty, parse_vnnlib
from lirpa_lid.specification.vnnlib.spec import VnnlibSpecification

LOWER, UPPER = np.array([-1.0, -1.0]), np.array([2.0, 1.0])


def unsafe_below(d: float) -> VnnlibProperty:
    """Unsafe iff ``y ≤ d`` on the box: the property "y > d everywhere"."""
    return VnnlibProperty(2, 1, (Disjunct(LOWER, UPPER, [[1.0]], [d]),))


def sample_inputs(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    lo, up = torch.from_numpy(LOWER), torch.from_numpy(UPPER)
    return lo + torch.rand(n, 2, generator=g, dtype=torch.float64) * (up - lo)


def unsplit_margin(net: nn.Module, prop: VnnlibProperty) -> float:
    spec = VnnlibSpecification(prop, (2,), dtype=torch.float64)
    with torch.no_grad():
        return float(spec.certified_margins(compute_margins(bounded_network(net), spec, None, "CROWN",
                                                            dtype=torch.float64))[0])


@pytest.fixture(scope="module")
def verified():
    net, prop = abs_net(), unsafe_below(-0.1)
    return net, prop, split_input_boxes(net, prop, branching="widest")


# ------------------------------------------------------------------------------ verdicts
def test_crown_fails_unsplit_and_splitting_verifies(verified):
    net, prop, result = verified
    assert unsplit_margin(net, prop) <= 0
    split = result.splits[0]
    assert result.verified and split.status is SplitStatus.VERIFIED
    assert len(split.leaves) > 1 and not split.open and split.counterexample is None
    assert all(b.margin > 0 for b in split.leaves)
    assert split.bounded >= len(split.leaves) and result.describe()["properties"][0]["status"] == "verified"


def test_leaves_partition_the_box(verified):
    _, _, result = verified
    leaves = result.splits[0].leaves
    assert sum(b.volume() for b in leaves) == pytest.approx(float(np.prod(UPPER - LOWER)), rel=1e-12)
    for b in leaves:
        assert (b.lower >= LOWER).all() and (b.upper <= UPPER).all()
    for a, b in itertools.combinations(leaves, 2):
        overlap = np.minimum(a.upper, b.upper) - np.maximum(a.lower, b.lower)
        assert (overlap <= 0).any(), "two leaves share interior points"
    x = sample_inputs(5000, seed=3).numpy()
    inside = [((x >= b.lower) & (x <= b.upper)).all(axis=1) for b in leaves]
    assert np.logical_or.reduce(inside).all()


def test_sampled_inputs_satisfy_the_verified_property(verified):
    net, prop, _ = verified
    x = sample_inputs(20_000)
    with torch.no_grad():
        y = copy.deepcopy(net).double()(x)
    assert not prop.is_counterexample(x.numpy(), y.numpy()).any()


def test_false_property_is_falsified_with_a_real_counterexample():
    net, prop = abs_net(), unsafe_below(0.3)
    split = split_input_boxes(net, prop).splits[0]
    assert split.status is SplitStatus.FALSIFIED
    cex = split.counterexample
    assert (cex.x >= LOWER).all() and (cex.x <= UPPER).all()
    with torch.no_grad():
        y = copy.deepcopy(net).double()(torch.from_numpy(cex.x)[None])[0].numpy()
    assert np.array_equal(y, cex.y) and y[0] <= 0.3 and prop.is_counterexample(cex.x, y)


def test_small_budget_gives_unknown_never_verified():
    net, prop = abs_net(), unsafe_below(-0.1)
    for budget in (1, 2, 3):
        split = split_input_boxes(net, prop, max_boxes=budget).splits[0]
        assert split.status is SplitStatus.UNKNOWN and split.open
        assert sum(b.volume() for b in split.boxes()) == pytest.approx(6.0, rel=1e-12)
    assert split_input_boxes(net, prop, time_limit=0.0).statuses == (SplitStatus.UNKNOWN,)


def test_invalid_arguments_are_named():
    with pytest.raises(InputError, match="branching"):
        split_input_boxes(abs_net(), unsafe_below(-0.1), branching="random")
    with pytest.raises(InputError, match="input_shape"):
        split_input_boxes(abs_net(), unsafe_below(-0.1), input_shape=(3,))


def test_gradient_branching_verifies_too():
    net, prop = abs_net(), unsafe_below(-0.1)
    split = split_input_boxes(net, prop, branching="gradient").splits[0]
    assert split.status is SplitStatus.VERIFIED
    assert sum(b.volume() for b in split.leaves) == pytest.approx(6.0, rel=1e-12)


# ------------------------------------------------------------------------------ the LID constraint
def test_split_specification_is_certified_at_theta0(verified):
    net, prop, result = verified
    spec = result.specification()
    assert len(spec) == 1 and spec.num_queries == len(result.splits[0].leaves)
    unsplit = VnnlibSpecification(prop, (2,))
    at_theta0 = Orthotope.around(net, lower=0.0)
    assert certify(net, at_theta0, spec).k == 1
    assert certify(net, at_theta0, unsplit).k == 0


def _sampled_violations(net: nn.Module, domain: Orthotope, prop: VnnlibProperty, n: int, seed: int = 0) -> int:
    """(weights, input) pairs, half of the weights vertices of the domain, that violate the property."""
    net64, dom = copy.deepcopy(net).double(), domain.to(dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    weights = dom.sample(n, generator=g, corner_fraction=0.5)
    x = sample_inputs(n, seed=seed + 1)
    x[: n // 8] = torch.from_numpy(np.array([-0.5, 1.0]))   # where z = 0, y = 0: the tightest point
    y = vmap(lambda w, xi: functional_call(net64, w, (xi[None],))[0])(weights, x)
    return int(prop.is_counterexample(x.numpy(), y.detach().numpy()).sum())


def test_lid_grown_for_the_split_specification_holds_under_sampling(verified):
    net, prop, result = verified
    spec = result.specification()
    config = LIDConfig(iterations=30, primal_lr=0.5, dual_lr=0.1, snapshot_every=10, progress=False)
    lid = compute_lid(net, spec, config)
    assert lid.candidates, "no LID candidate"
    domain = lid.largest().domain
    assert float(domain.mean_width()) > 1e-3
    cert = certify(net, domain, spec)
    assert (cert.k, cert.n) == (1, 1)
    assert _sampled_violations(net, domain, prop, 2000) == 0
    # a projected-gradient attack on weights and inputs jointly, over the whole original box, finds no y ≤ −0.1
    net64, dom64 = copy.deepcopy(net).double(), domain.to(dtype=torch.float64)
    lower, upper = (torch.tensor([[-1.0, -1.0]], dtype=torch.float64), torch.tensor([[2.0, 1.0]], dtype=torch.float64))
    lowest, _ = attack_extremes(net64, dom64, (lower + upper) / 2, torch.ones(1, 1, dtype=torch.float64),
                                InputBox(lower, upper), steps=100)
    assert float(lowest) > -0.1
    # the split LID's leaves, re-split over the domain, still verify the original property
    again = split_input_boxes(net, prop, domain=domain, branching="widest")
    assert again.verified


# ------------------------------------------------------------------------------ ACAS Xu
@pytest.mark.slow
def test_acasxu_n25_property3_splits_to_verified_at_theta0():
    from lirpa_lid.models.onnx import load_onnx

    bench = data_dir(must_exist=False) / "vnncomp2022" / "acasxu"
    if not (bench / "onnx").is_dir():
        pytest.skip(f"VNN-COMP 2022 ACAS Xu data not found under {bench}")
    truth = {r["instance"]: r["result"] for r in csv.DictReader((bench / "ground_truth.csv").open())}
    assert truth["ACASXU_run2a_2_5_batch_2000-prop_3"] == "unsat"
    net = load_onnx(bench / "onnx" / "ACASXU_run2a_2_5_batch_2000.onnx")
    prop = parse_vnnlib(bench / "vnnlib" / "prop_3.vnnlib")
    start = time.perf_counter()
    result = split_input_boxes(net.module, prop, input_shape=net.input_shape, time_limit=60.0,
                               max_boxes=200_000)
    seconds = time.perf_counter() - start
    split = result.splits[0]
    print(f"ACAS Xu N2,5 prop 3: {split.status.value}, {len(split.leaves)} leaves, {split.bounded} bounded, "
          f"{split.rounds} rounds, {seconds:.1f} s")
    assert split.status is SplitStatus.VERIFIED
    spec = result.specification()
    assert certify(net.module, Orthotope.around(net.module, lower=0.0), spec).k == 1
