"""Exact margins over weight boxes (``lirpa_lid.bounds.exact``) on tiny seeded networks, against brute force:
activation patterns with one LP each and box vertices (``exact_oracles``), 10,000 sampled weight vectors,
the native IBP / CROWN bounds, and float64 forward passes of every counterexample. All solves are HiGHS."""
from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
from exact_oracles import pattern_minimum, vertex_minimum
from helpers import attack_extremes, random_domain, sampled_outputs
from torch import nn
from torch.func import functional_call

from lirpa_lid import ElementwiseAffine, InputBox, Orthotope, bounded_network, solvers
from lirpa_lid.bounds.exact import (
    ExactOptions,
    ExactStatus,
    certification_tolerance,
    decide,
    encode_item,
    exact_margin,
    exact_margins,
    prepare_chain,
)
from lirpa_lid.errors import DomainError, InputError, ModelError
from lirpa_lid.solvers import SolveStatus, available_solvers

#: the exact optimum (no cutoff, no MIP gap), for comparisons with brute force
OPTIMUM = ExactOptions(mip_rel_gap=0.0, mip_abs_gap=0.0, time_limit=30, cutoff=False)
C = torch.tensor([[1.0, -1.0], [-1.0, 1.0]], dtype=torch.float64)


def tiny_net(seed: int = 0, affine: bool = False) -> nn.Sequential:
    """2-3-3-2 ReLU network (float64); with ``affine``, constant element-wise maps and a Flatten between."""
    torch.manual_seed(seed)
    if affine:
        layers = [ElementwiseAffine(torch.tensor([2.0, -0.5]), torch.tensor([0.1, 0.3])), nn.Linear(2, 3), nn.ReLU(),
                  ElementwiseAffine(torch.tensor([1.5, 0.0, -1.0]), torch.tensor([-0.2, 0.4, 0.1])), nn.Linear(3, 3),
                  nn.ReLU(), nn.Flatten(), nn.Linear(3, 2)]
    else:
        layers = [nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2)]
    return nn.Sequential(*layers).double().eval()


def inputs(n: int = 4, seed: int = 5) -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def check_against_oracle(result, oracle: float) -> None:
    assert result.exact
    assert result.solve_status is SolveStatus.OPTIMAL
    assert result.bound == pytest.approx(oracle, abs=1e-6)
    assert result.incumbent == pytest.approx(oracle, abs=1e-6)
    if oracle > result.tolerance:
        assert result.status is ExactStatus.CERTIFIED
    elif oracle < -1e-6:
        assert result.status is ExactStatus.COUNTEREXAMPLE
        assert result.margin == pytest.approx(oracle, abs=1e-6)


# ------------------------------------------------------------------ exact encodings = brute force
#: (network, boxed parameters, offset scale): one moving layer with a fixed input, plus later biases
EXACT_CASES = [
    ("plain", ["0.weight", "0.bias"], 0.4),
    ("plain", ["2.weight", "2.bias"], 0.4),
    ("plain", ["4.weight", "4.bias"], 0.4),
    ("plain", ["2.weight", "4.bias"], 0.4),
    ("affine", ["1.weight", "1.bias", "4.bias"], 0.4),
]


@pytest.mark.parametrize("kind, names, scale", EXACT_CASES)
def test_exact_encoding_equals_activation_pattern_enumeration(kind, names, scale):
    model = tiny_net(1, affine=kind == "affine")
    box = random_domain(model, names, scale)
    x = inputs()
    results = exact_margins(model, x, box, C, options=OPTIMUM)
    statuses = set()
    for b in range(len(x)):
        for s in range(len(C)):
            check_against_oracle(results[b][s], pattern_minimum(model, x[b], C[s], box=box))
            statuses.add(results[b][s].status)
    assert statuses >= {ExactStatus.CERTIFIED, ExactStatus.COUNTEREXAMPLE}  # both paths are exercised


@pytest.mark.parametrize("kind, names, scale", EXACT_CASES[:3])
def test_cutoff_decides_like_the_optimum(kind, names, scale):
    """The default (cutoff row): certified exactly when the minimum is above the cutoff, the proved bound is
    the cutoff then and the minimum otherwise."""
    model = tiny_net(1, affine=kind == "affine")
    box = random_domain(model, names, scale)
    x = inputs(6, seed=12)
    results = exact_margins(model, x, box, C)
    for b in range(len(x)):
        for s in range(len(C)):
            r, oracle = results[b][s], pattern_minimum(model, x[b], C[s], box=box)
            assert r.exact
            if oracle > r.bound + r.tolerance:
                assert r.certified and r.solve_status is SolveStatus.INFEASIBLE
                assert r.tolerance < r.bound < 1e-3  # the cutoff: 2·tolerance at 0
            else:
                assert r.bound == pytest.approx(oracle, rel=1e-4, abs=1e-6)
                assert r.status is (ExactStatus.COUNTEREXAMPLE if oracle < 0 else ExactStatus.UNDECIDED)


def test_last_layer_box_minimum_is_at_a_vertex():
    model = tiny_net(2)
    box = random_domain(model, ["4.weight", "4.bias"], 0.5)
    for b, x in enumerate(inputs(3, seed=7)):
        for c in C:
            result = exact_margin(model, x.unsqueeze(0), box, c, options=OPTIMUM)
            check_against_oracle(result, vertex_minimum(model, x, c, box))


def test_input_box_without_weight_box_equals_activation_pattern_enumeration():
    model = tiny_net(3)
    x = inputs(3, seed=8)
    box = InputBox.linf(x, 0.4)
    results = exact_margins(model, x, None, C, input_box=box, options=OPTIMUM)
    for b in range(len(x)):
        for s in range(len(C)):
            oracle = pattern_minimum(model, x[b], C[s], input_box=(box.lower[b], box.upper[b]))
            check_against_oracle(results[b][s], oracle)


@pytest.mark.parametrize("box_kind", ["zero width", "no domain"])
@pytest.mark.parametrize("options", [OPTIMUM, ExactOptions()], ids=["optimum", "cutoff"])
def test_zero_width_box_gives_the_network_margin(box_kind, options):
    model = tiny_net(4)
    box = Orthotope.around(model, ["0.weight", "2.weight"], lower=0.0) if box_kind == "zero width" else None
    x = inputs()
    results = exact_margins(model, x, box, C, options=options)
    margins = (model(x) @ C.T).detach()
    for b in range(len(x)):
        for s in range(len(C)):
            r = results[b][s]
            assert r.exact and r.products == 0 and r.binaries == 0
            assert r.bound == pytest.approx(float(margins[b, s]), abs=1e-9)
            assert r.status is (ExactStatus.CERTIFIED if margins[b, s] > 0 else ExactStatus.COUNTEREXAMPLE)


# ------------------------------------------------------------------ bounds: IBP ≤ CROWN ≤ exact ≤ sampled
#: (boxed parameters, scale, input-box radius or None)
BOUND_CASES = [
    (["0.weight", "0.bias"], 0.3, None),  # exact
    (["0.weight", "4.weight"], 0.15, None),  # McCormick on the last layer
    (["2.weight", "2.bias"], 0.2, 0.1),  # McCormick on the input box
    (["0.weight", "2.weight", "4.bias"], 0.1, 0.05),
]


@pytest.mark.parametrize("names, scale, radius", BOUND_CASES)
def test_exact_bound_dominates_crown_and_ibp_and_is_below_every_sample(names, scale, radius):
    model = tiny_net(5)
    box = random_domain(model, names, scale)
    x = inputs(4, seed=9)
    input_box = None if radius is None else InputBox.linf(x, radius)
    results = exact_margins(model, x, box, C, input_box=input_box, options=ExactOptions(cutoff=False))
    net = bounded_network(model)
    crown = net.compute_bounds(x, box, C=C, method="CROWN", input_box=input_box).lower.detach()
    ibp = net.compute_bounds(x, box, C=C, method="IBP", input_box=input_box).lower.detach()
    sampled = sampled_outputs(model, box, x, C, 10_000, input_box=input_box).amin(0).detach()
    attacked, _ = attack_extremes(model, box, x, C, input_box)  # projected gradient on weights (and inputs)
    exact = not any(n.endswith("weight") and n != names[0] for n in names) and radius is None
    for b in range(len(x)):
        for s in range(len(C)):
            r = results[b][s]
            assert r.exact is exact and (r.products > 0) is not exact
            assert r.solve_status is SolveStatus.OPTIMAL
            assert r.bound >= float(crown[b, s]) - 1e-9
            assert r.bound >= float(ibp[b, s]) - 1e-9
            assert r.bound <= float(sampled[b, s]) + 1e-9  # a lower bound of the true minimum
            assert r.bound <= float(attacked[b, s]) + 1e-9
            if r.certified:
                assert float(sampled[b, s]) >= 0  # sampling soundness (10,000 weight vectors and inputs)
                assert float(attacked[b, s]) >= 0


def test_counterexamples_violate_in_float64_and_lie_in_the_domain_and_input_box():
    model = tiny_net(6)
    box = random_domain(model, ["0.weight", "2.weight", "2.bias", "4.weight"], 0.3)
    x = inputs(6, seed=10)
    input_box = InputBox.linf(x, 0.2)
    results = exact_margins(model, x, box, C, input_box=input_box)
    found = 0
    for b in range(len(x)):
        for s in range(len(C)):
            r = results[b][s]
            assert r.status is not ExactStatus.CERTIFIED or r.bound - r.tolerance > 0
            if r.status is not ExactStatus.COUNTEREXAMPLE:
                continue
            found += 1
            assert box.contains(r.weights)
            assert r.weights["0.weight"].dtype == torch.float64
            assert bool(((input_box.lower[b] <= r.input) & (r.input <= input_box.upper[b])).all())
            with torch.no_grad():
                out = functional_call(model, r.weights, (r.input.unsqueeze(0),)).reshape(-1)
            assert float(C[s] @ out) == pytest.approx(r.margin, abs=1e-12)
            assert r.margin < 0
    assert found >= 3


def test_mccormick_relaxation_is_sound_and_reported_as_not_exact():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3)).double().eval()
    box = random_domain(model, ["0.weight", "2.weight", "4.weight"], 0.2)
    x = inputs(10, seed=11)
    eye = torch.eye(3, dtype=torch.float64)
    label = model(x).argmax(1)
    Cb = torch.stack([torch.stack([eye[y] - eye[o] for o in range(3) if o != y]) for y in label.tolist()])
    results = exact_margins(model, x, box, Cb, options=ExactOptions(cutoff=False))
    crown = bounded_network(model).compute_bounds(x, box, C=Cb, method="CROWN").lower.detach()
    sampled = torch.stack([sampled_outputs(model, box, x[b:b + 1], Cb[b], 10_000)[:, 0] for b in range(len(x))], 1)
    sampled = sampled.amin(0).detach()
    statuses = []
    for b in range(len(x)):
        for s in range(Cb.shape[1]):
            r = results[b][s]
            statuses.append(r.status)
            assert not r.exact and r.products > 0
            assert float(crown[b, s]) - 1e-9 <= r.bound <= float(sampled[b, s]) + 1e-9
            if r.status is ExactStatus.UNDECIDED:
                assert "McCormick" in r.reason and r.solve_status is SolveStatus.OPTIMAL
            if r.certified:
                assert float(sampled[b, s]) >= 0
    assert set(statuses) == set(ExactStatus)  # certified, refuted and left open by the relaxation


def test_time_limit_leaves_the_item_undecided_never_certified():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU(),
                          nn.Linear(40, 3)).double()
    x = torch.randn(1, 8, dtype=torch.float64)
    c = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64)  # true minimum ≈ 0.056 > 0: no counterexample exists
    box = Orthotope.around(model, ["0.weight"], lower=0.01)
    r = exact_margin(model, x, box, c, options=ExactOptions(time_limit=0.01))
    assert r.status is ExactStatus.UNDECIDED
    assert r.solve_status is SolveStatus.TIME_LIMIT
    assert "time-limit" in r.reason
    assert r.binaries > 20


@pytest.mark.parametrize("status, bound, objective", [
    (SolveStatus.TIME_LIMIT, 0.5, 0.6),  # stopped with a positive proved bound
    (SolveStatus.NODE_LIMIT, 0.5, 0.6),
    (SolveStatus.OPTIMAL, -0.1, 0.6),  # a positive incumbent proves nothing
    (SolveStatus.ERROR, 0.5, 0.6),
    (SolveStatus.INFEASIBLE, math.inf, None),  # without a cutoff row: numerical trouble, nothing concluded
])
def test_only_a_finished_solve_with_a_positive_proved_bound_certifies(monkeypatch, status, bound, objective):
    model = tiny_net(8)
    box = random_domain(model, ["0.weight"], 0.05)
    x = inputs(1)
    c = next(c for c in C if exact_margin(model, x, box, c).certified)  # the honest solve certifies this row

    def doctored(program, *args, **kwargs):
        return dataclasses.replace(solvers.solve(program, *args, **kwargs), status=status, bound=bound,
                                   objective=objective)

    monkeypatch.setattr(decide, "solve", doctored)
    r = exact_margin(model, x, box, c, options=ExactOptions(cutoff=False))
    assert r.status is ExactStatus.UNDECIDED and not r.certified
    assert r.bound == bound and r.incumbent == objective


def test_certification_tolerance_is_stated_and_grows_with_the_variable_ranges():
    model = tiny_net(9)
    x = inputs(1)
    small = encode_item(prepare_chain(model, x, random_domain(model, ["0.weight"], 0.01), None), 0, C[0])
    large = encode_item(prepare_chain(model, x, random_domain(model, ["0.weight"], 1.0), None), 0, C[0])
    assert certification_tolerance(0.0, small.program) == pytest.approx(
        1e-7 + 1e-6 * float((small.program.upper - small.program.lower).sum()))
    assert certification_tolerance(0.0, large.program) > certification_tolerance(0.0, small.program)
    assert certification_tolerance(100.0, small.program, 0.0) == pytest.approx(1e-7 * 101)


# ------------------------------------------------------------------ errors
def test_unsupported_layers_and_domains_are_refused_by_name():
    tanh = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 2)).double()
    with pytest.raises(ModelError, match=r"'1'.*Tanh"):
        exact_margins(tanh, inputs(1), Orthotope.around(tanh, ["0.weight"], lower=0.1), C)
    model = tiny_net()
    with pytest.raises(DomainError, match="not weights or biases"):
        exact_margins(model, inputs(1), Orthotope({"nope": torch.zeros(2)}), C)

    class NotABox:
        names = ["0.weight"]

    with pytest.raises(DomainError, match="box domain"):
        exact_margins(model, inputs(1), NotABox(), C)
    with pytest.raises(InputError, match="gurobi"):
        ExactOptions(bilinear="exact")
    with pytest.raises(InputError, match="unknown bilinear"):
        ExactOptions(bilinear="quadratic")
    with pytest.raises(InputError, match="unknown bound method"):
        ExactOptions(intermediate="magic")
    with pytest.raises(InputError, match="time_limit"):
        ExactOptions(time_limit=-1)
    with pytest.raises(InputError, match="batch of one"):
        exact_margin(model, inputs(2), None, C[0])
    with pytest.raises(InputError, match="specification"):
        exact_margins(model, inputs(1), None, torch.ones(2, 3, dtype=torch.float64))


# ------------------------------------------------------------------ Gurobi (when installed and licensed)
needs_gurobi = pytest.mark.skipif("gurobi" not in available_solvers(), reason="gurobipy is not installed")


@needs_gurobi
def test_gurobi_exact_bilinear_products_are_exact_and_sound():
    model = tiny_net(7)
    box = random_domain(model, ["0.weight", "4.weight"], 0.25)
    x = inputs(2, seed=11)
    relaxed = exact_margins(model, x, box, C, options=ExactOptions(cutoff=False))
    try:
        exact = exact_margins(model, x, box, C, options=ExactOptions(solver="gurobi", bilinear="exact",
                                                                     mip_rel_gap=0.0, mip_abs_gap=0.0,
                                                                     cutoff=False))
    except Exception as err:  # no licence at all on this machine
        pytest.skip(f"gurobi unusable here: {err}")
    sampled = sampled_outputs(model, box, x, C, 10_000).amin(0).detach()
    for b in range(len(x)):
        for s in range(len(C)):
            r = exact[b][s]
            if r.solve_status is None:
                pytest.skip(f"gurobi licence too small: {r.reason}")
            assert r.exact and r.solver == "gurobi"
            assert relaxed[b][s].bound - 1e-6 <= r.bound <= float(sampled[b][s]) + 1e-6


@needs_gurobi
def test_gurobi_licence_too_small_leaves_undecided_or_falls_back_to_highs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(50, 50), nn.ReLU(), nn.Linear(50, 2)).double()  # 2,500 boxed weights
    x = torch.randn(1, 50, dtype=torch.float64)
    box = Orthotope.around(model, ["0.weight"], lower=1e-4)
    c = torch.tensor([1.0, -1.0], dtype=torch.float64)
    alone = exact_margin(model, x, box, c, options=ExactOptions(solver="gurobi"))
    if alone.solve_status is not None:
        pytest.skip("this Gurobi licence covers 2,500 variables")
    assert alone.status is ExactStatus.UNDECIDED or alone.status is ExactStatus.COUNTEREXAMPLE
    assert "licen" in alone.reason.lower() and not alone.certified
    backed = exact_margin(model, x, box, c, options=ExactOptions(solver="gurobi", fallback="highs"))
    assert backed.solver == "highs" and backed.decided
    assert "solved with highs instead" in backed.reason


def test_results_record_plain_values():
    model = tiny_net()
    r = exact_margin(model, inputs(1), random_domain(model, ["0.weight"], 0.1), C[0])
    record = r.record()
    assert record["status"] == r.status.value and record["solver"] == "highs"
    assert all(isinstance(v, (str, float, int, bool, type(None))) for v in record.values())
    assert math.isfinite(record["bound"])


def test_float32_models_and_image_inputs_are_encoded_in_float64():
    torch.manual_seed(10)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).eval()  # float32
    box = random_domain(model, ["1.weight", "1.bias"], 0.3)
    x = torch.randn(3, 1, 2, 2, generator=torch.Generator().manual_seed(13))
    results = exact_margins(model, x, box, C.float(), options=OPTIMUM)
    model64 = copy.deepcopy(model).double()
    for b in range(len(x)):
        for s in range(len(C)):
            r = results[b][s]
            check_against_oracle(r, pattern_minimum(model64, x[b].double(), C[s], box=box.to(torch.float64)))
            if r.status is ExactStatus.COUNTEREXAMPLE:
                assert box.contains(r.weights) and r.input.shape == (1, 2, 2)
    input_box = InputBox.linf(x, 0.1)
    for row in exact_margins(model, x, None, C.float(), input_box=input_box):
        for r in row:
            if r.status is ExactStatus.COUNTEREXAMPLE:
                assert r.input.shape == (1, 2, 2) and r.weights == {}
