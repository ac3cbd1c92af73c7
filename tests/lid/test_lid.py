"""The LID optimiser: soundness of every certified domain (sampling + weight attacks), growth, the
thresholds of reported candidates, nesting, frozen elements, convergence on a problem with a known
optimum, and clear errors."""
from __future__ import annotations

import math

import pytest
import torch
from lid_helpers import (
    QUICK,
    attacked_min_margin,
    cached_lid,
    certified_items,
    sampled_min_margin,
    task0_spec,
    tasks,
    trained_mlp,
)
from torch import nn

from lirpa_lid import DomainError, InputError, Orthotope, bounded_network
from lirpa_lid.errors import SpecificationError
from lirpa_lid.lid import (
    LIDConfig,
    bound_plan,
    bound_plans,
    compute_lid,
    compute_lid_pool,
    method_label,
    plan_label,
    with_config,
)
from lirpa_lid.lid.search import largest_scale, scaled_box
from lirpa_lid.margin import compute_margins, hard_values, margins_within
from lirpa_lid.specification.accuracy import CertifiedAccuracy

N_SAMPLES = 10_000


# ------------------------------------------------------------------------------ soundness
@pytest.mark.parametrize("method", ["CROWN", "IBP", "CROWN-IBP"])
def test_every_certified_item_survives_sampling_and_attacks(method):
    """No certified item is misclassified by any of 10,000 sampled weight vectors (half of them box
    corners) or by PGD on the weights inside the box, for the smallest and the largest candidate."""
    model, result = cached_lid(method)
    spec = task0_spec()
    assert result.candidates
    for cand in {id(c): c for c in (result.candidates[0], result.largest())}.values():
        ok = certified_items(model, cand.domain, spec, method)
        assert ok.float().mean() >= spec.threshold
        x, y = spec.x[ok], spec.y[ok]
        sampled = sampled_min_margin(model, cand.domain, x, y, N_SAMPLES)
        attacked = attacked_min_margin(model, cand.domain, x, y)
        assert sampled > 0, f"{method}: a sampled weight vector misclassifies a certified item"
        assert attacked > 0, f"{method}: a weight attack misclassifies a certified item"
        assert attacked <= sampled  # the attack is at least as strong as sampling


def test_attack_breaks_uncertified_items():
    """The oracle can fail: on the largest domain, attacks misclassify some uncertified items."""
    model, result = cached_lid("CROWN")
    spec = task0_spec()
    dom = result.largest().domain
    ok = certified_items(model, dom, spec, "CROWN")
    assert (~ok).any()
    assert attacked_min_margin(model, dom, spec.x[~ok], spec.y[~ok]) < 0


def test_alpha_crown_certificates_are_sound_too():
    model, result = cached_lid("CROWN")
    spec = task0_spec()
    dom = result.largest().domain
    ok = certified_items(model, dom, spec, "alpha-CROWN")
    assert ok.sum() >= certified_items(model, dom, spec, "CROWN").sum()
    assert attacked_min_margin(model, dom, spec.x[ok], spec.y[ok], steps=40, restarts=2) > 0


# ------------------------------------------------------------------------------ behaviour
def test_box_grows_and_candidates_meet_the_threshold():
    model, result = cached_lid("CROWN")
    spec = task0_spec()
    widths = [c.mean_width for c in result.candidates]
    assert widths[-1] > widths[0] > 0
    net = bounded_network(model)
    for cand in result.candidates:
        # recomputed independently (float64), not read from the candidate
        value = float(spec.hard_value(compute_margins(net, spec, cand.domain, "CROWN", dtype=torch.float64)))
        assert value == pytest.approx(cand.hard_values[0])
        assert value >= spec.threshold
    assert result.candidates[0].iteration == QUICK["snapshot_every"]
    assert len(result.history["mean_width"]) == QUICK["iterations"]


def test_domain_reference_is_theta0_and_does_not_follow_the_model():
    model, result = cached_lid("CROWN")
    dom = result.largest().domain
    theta0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
        try:
            for n in dom.names:
                assert torch.equal(dom.reference[n], theta0[n])
        finally:
            for p in model.parameters():
                p.sub_(1.0)


def test_nested_inside_outer_box():
    model, result = cached_lid("CROWN")
    outer = result.largest().domain
    moved = trained_mlp(16)
    # a weight vector inside the outer box but not at its reference
    g = torch.Generator().manual_seed(5)
    inside = outer.sample(1, generator=g, corner_fraction=0.0)
    with torch.no_grad():
        for n, p in moved.named_parameters():
            p.copy_(inside[n][0])
    assert outer.contains(moved)
    spec = task0_spec(0.85)
    inner = compute_lid(moved, spec, LIDConfig(**{**QUICK, "iterations": 30}), outer=outer)
    for cand in inner.candidates:
        assert cand.domain.is_subset(outer)
        lo, hi = cand.domain.to(dtype=torch.float64).bounds()["0.weight"]
        olo, ohi = outer.to(dtype=torch.float64).bounds()["0.weight"]
        assert (lo >= olo).all() and (hi <= ohi).all()


def test_outer_box_must_contain_theta0():
    model, result = cached_lid("CROWN")
    outer = result.largest().domain
    far = trained_mlp(16)
    with torch.no_grad():
        far[0].weight.add_(100.0)
    with pytest.raises(DomainError, match="not inside the outer box"):
        compute_lid(far, task0_spec(0.0), LIDConfig(**QUICK), outer=outer)


def test_frozen_elements_keep_zero_width():
    model = trained_mlp(16)
    free = {"0.weight": torch.zeros(16, 2, dtype=torch.bool), "2.bias": torch.tensor([True, False] * 3)}
    result = compute_lid(model, task0_spec(0.85), LIDConfig(**{**QUICK, "iterations": 20}), free=free)
    for cand in result.candidates:
        d = cand.domain
        assert (d.lower["0.weight"] == 0).all() and (d.upper["0.weight"] == 0).all()
        assert (d.lower["2.bias"][1::2] == 0).all() and (d.upper["2.bias"][1::2] == 0).all()
        assert cand.mean_width > 0


def test_domain_over_some_parameters_only():
    model = trained_mlp(16)
    result = compute_lid(model, task0_spec(0.85), LIDConfig(**{**QUICK, "iterations": 20}), params=["2.weight"])
    assert result.largest().domain.names == ["2.weight"]
    assert result.largest().mean_width > 0


def test_several_specifications_each_with_its_threshold():
    model = trained_mlp(16)
    data = tasks()[0].train
    s0 = CertifiedAccuracy(data.x[data.y == 0], data.y[data.y == 0], 6, 0.95, name="class 0")
    s1 = CertifiedAccuracy(data.x[data.y == 1], data.y[data.y == 1], 6, 0.8, name="class 1")
    result = compute_lid(model, [s0, s1], LIDConfig(**{**QUICK, "iterations": 30}))
    net = bounded_network(model)
    for cand in result.candidates:
        assert cand.spec_names == ("class 0", "class 1") and cand.thresholds == (0.95, 0.8)
        v0, v1 = hard_values(net, [s0, s1], cand.domain, "CROWN")
        assert v0 >= 0.95 and v1 >= 0.8
    assert len(result.history["multiplier"][-1]) == 2


def test_pool_of_configurations_and_thresholds():
    model = trained_mlp(16)
    cfg = LIDConfig(**{**QUICK, "iterations": 20})
    pool = compute_lid_pool(model, task0_spec(0.9), [cfg, LIDConfig(**{**QUICK, "iterations": 20, "method": "IBP"})],
                            thresholds=[0.9, 0.8])
    assert len(pool.runs) == 2
    assert len(pool.candidates) == sum(len(r.candidates) for r in pool.runs)
    assert {c.method for c in pool.candidates} == {"CROWN", "IBP"}
    assert {c.thresholds for c in pool.candidates} == {(0.9,), (0.8,)}
    assert all(c.satisfied for c in pool.candidates)
    assert all(c.label.startswith("run ") for c in pool.candidates)


def test_log_volume_objective_grows_every_free_element():
    model = trained_mlp(16)
    result = compute_lid(model, task0_spec(0.85), LIDConfig(**{**QUICK, "iterations": 20, "objective": "log_volume"}))
    cand = result.largest()
    assert math.isfinite(cand.log_volume) and (cand.domain.widths() > 0).all()


def test_same_seed_same_result():
    model = trained_mlp(16)
    cfg = LIDConfig(**{**QUICK, "iterations": 15, "snapshot_every": 5})
    a = compute_lid(model, task0_spec(0.9), cfg)
    b = compute_lid(model, task0_spec(0.9), cfg)
    assert [c.mean_width for c in a.candidates] == [c.mean_width for c in b.candidates]


def test_converges_to_the_known_optimum_of_a_linear_toy():
    """One item, f = W x + b (2 classes, x = 1): the margin is exact under any bound method and the
    soft constraint ``1/(1+exp(−T m)) ≥ τ`` reads ``m ≥ log(τ/(1−τ))/T``. The four offsets that lower
    the margin must sum to ``m₀ − log(9)/10``; the four others are harmless and go to the cap."""
    model = nn.Sequential(nn.Linear(1, 2)).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0], [0.0]]))
        model[0].bias.copy_(torch.tensor([0.5, 0.0]))
    spec = CertifiedAccuracy(torch.ones(1, 1, dtype=torch.float64), torch.tensor([0]), 2, 0.9, name="toy")
    cfg = LIDConfig(iterations=400, primal_lr=0.02, dual_lr=0.2, penalty=10.0, max_width=1.0, snapshot_every=400,
                    adaptive_lr=False, rollback_defect=None, dual_violation="soft", progress=False)
    result = compute_lid(model, spec, cfg)
    d = result.candidates[-1].domain
    harmful = float(d.lower["0.weight"][0, 0] + d.upper["0.weight"][1, 0] + d.lower["0.bias"][0] + d.upper["0.bias"][1])
    harmless = [float(d.upper["0.weight"][0, 0]), float(d.lower["0.weight"][1, 0]), float(d.upper["0.bias"][0]),
                float(d.lower["0.bias"][1])]
    assert harmful == pytest.approx(1.5 - math.log(9) / 10, rel=1e-3)
    assert harmless == pytest.approx([1.0] * 4)
    # the multiplier converges to the KKT value: objective slope 1/4 per offset over the constraint's
    # slope T·τ(1−τ) = 0.9
    assert result.history["multiplier"][-1][0] == pytest.approx(0.25 / 0.9, rel=1e-2)


# ------------------------------------------------------------------------------ errors
def test_nominal_model_failing_the_threshold_is_reported():
    model = trained_mlp(16, epochs=0)  # untrained
    spec = task0_spec(0.99, name="task 0 train")
    with pytest.raises(SpecificationError, match=r"'task 0 train' is not satisfied even at width 0.*threshold 0\.99"):
        compute_lid(model, spec, LIDConfig(**QUICK))


@pytest.mark.parametrize("changes, field", [
    ({"iterations": 0}, "iterations"), ({"primal_lr": -1.0}, "primal_lr"), ({"method": "magic"}, "method"),
    ({"objective": "volume"}, "objective"), ({"max_width": float("nan")}, "max_width"),
    ({"weights": {"0.weight": -1.0}}, "weights"), ({"lr_multiplier_range": (2.0, 1.0)}, "lr_multiplier_range"),
    ({"batch_size": 1.5}, "batch_size"), ({"grow": 0.5}, "grow"), ({"grow": float("inf")}, "grow"),
    ({"certify_method": "magic"}, "method"),
])
def test_bad_configuration(changes, field):
    with pytest.raises(InputError, match=field if field != "method" else "bound method"):
        LIDConfig(**changes)


def test_bad_domain_arguments():
    model = trained_mlp(16)
    spec = task0_spec(0.5)
    with pytest.raises(DomainError, match="unknown parameter"):
        compute_lid(model, spec, LIDConfig(**QUICK), params=["nope.weight"])
    with pytest.raises(DomainError, match="no free elements"):
        compute_lid(model, spec, LIDConfig(**QUICK), params=["0.bias"], free={"0.bias": torch.zeros(16, dtype=torch.bool)})
    with pytest.raises(InputError, match="not in the domain"):
        compute_lid(model, spec, LIDConfig(**{**QUICK, "weights": {"x": 1.0}}))
    other = Orthotope.around(model, ["0.weight"])
    with pytest.raises(DomainError, match="same parameters"):
        compute_lid(model, spec, LIDConfig(**QUICK), outer=other)


def test_nan_weights_are_rejected():
    model = trained_mlp(16)
    with torch.no_grad():
        model[2].weight[0, 0] = float("nan")
    with pytest.raises(DomainError, match="NaN"):
        compute_lid(model, task0_spec(0.5), LIDConfig(**QUICK))


def test_backend_is_only_used_through_its_interface():
    """The same candidates come out of the native and the auto_LiRPA backends."""
    from lirpa_lid import BackendError
    model = trained_mlp(16)
    cfg = LIDConfig(**{**QUICK, "iterations": 6, "snapshot_every": 3})
    native = compute_lid(model, task0_spec(0.9), cfg)
    try:
        lirpa = compute_lid(model, task0_spec(0.9), cfg, backend="auto_lirpa")
    except BackendError as exc:
        pytest.skip(str(exc))
    assert [c.mean_width for c in lirpa.candidates] == pytest.approx([c.mean_width for c in native.candidates], rel=1e-4)


# ------------------------------------------------------------------------------ other specification kinds
def test_local_robustness_lid_is_sound_over_weights_and_balls():
    """A LID grown with ε-balls as the constraint: every certified item keeps its label for sampled
    weights of the domain *and* sampled inputs of its ball (half of both at corners); a second,
    plain-accuracy constraint is met too (two kinds mixed)."""
    from torch.func import functional_call, vmap
    model = trained_mlp()
    data = tasks()[0].train
    robust = CertifiedAccuracy(data.x, data.y, 6, 0.8, epsilon=0.3, name="robust")
    plain = CertifiedAccuracy(data.x, data.y, 6, 0.9, name="plain")
    result = compute_lid(model, [robust, plain], LIDConfig(method="CROWN", **QUICK))
    cand = result.largest()
    assert cand.mean_width > 0 and all(v >= t for v, t in zip(cand.hard_values, cand.thresholds))
    with torch.no_grad():
        ok = robust.certified(compute_margins(bounded_network(model), robust, cand.domain, "CROWN",
                                             dtype=torch.float64))
    assert ok.double().mean() >= 0.8
    import copy
    model64 = copy.deepcopy(model).double()
    dom = cand.domain.to(dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    lo, up, y = robust.lower[ok].double(), robust.upper[ok].double(), robust.y[ok]
    for _ in range(4):
        n = 500
        weights = dom.sample(n, generator=g)
        u = torch.rand(n, *lo.shape, generator=g, dtype=torch.float64)
        u[: n // 2] = (u[: n // 2] > 0.5).double()
        out = vmap(lambda p, xx: functional_call(model64, p, (xx,)))(weights, lo + u * (up - lo))
        assert (out.argmax(2) == y).all()


def test_time_limit_makes_the_growth_anytime():
    model = trained_mlp()
    import time
    t = time.perf_counter()
    result = compute_lid(model, task0_spec(0.9), LIDConfig(method="IBP", **{**QUICK, "iterations": 100_000},
                                                           time_limit=0.5))
    assert time.perf_counter() - t < 30
    assert len(result.history["size"]) < 100_000 and result.history["stopped_at"]
    assert result.candidates and all(c.satisfied for c in result.candidates)
    with pytest.raises(InputError, match="time_limit"):
        LIDConfig(time_limit=0)


# ------------------------------------------------------------------------------ shrinking
def _rows_bounded(monkeypatch, net) -> list[int]:
    """Record how many query rows each backend call bounds."""
    calls: list[int] = []
    original = net.compute_bounds

    def counting(x, *args, **kwargs):
        calls.append(int(x.shape[0]))
        return original(x, *args, **kwargs)

    monkeypatch.setattr(net, "compute_bounds", counting)
    return calls


@pytest.mark.parametrize("method", ["IBP", "CROWN"])
def test_margins_within_an_enclosing_box_are_sound_and_rebound_only_unsatisfied_rows(method, monkeypatch):
    model, spec = trained_mlp(), task0_spec()
    net = bounded_network(model)
    big = Orthotope.around(model, lower=0.1)
    small = big.scaled(0.6)
    known = compute_margins(net, spec, big, method, dtype=torch.float64)
    open_rows = ~(known > 0).all(dim=1)
    assert 0 < int(open_rows.sum()) < len(spec)
    calls = _rows_bounded(monkeypatch, net)
    reused = margins_within(net, spec, small, method, known)
    assert sum(calls) == int(open_rows.sum())
    fresh = compute_margins(net, spec, small, method, dtype=torch.float64)
    assert torch.equal(reused[~open_rows], known[~open_rows])
    assert torch.allclose(reused[open_rows], torch.maximum(known, fresh)[open_rows])
    ok = spec.certified(reused)
    assert (ok >= spec.certified(known)).all() and ok.sum() > spec.certified(known).sum()
    x, y = spec.x[ok], spec.y[ok]
    assert sampled_min_margin(model, small, x, y, 4000) > 0
    assert attacked_min_margin(model, small, x, y) > 0


def _plain_bisection(net, spec, domain, method, steps):
    lo = 0.0
    hi = 1.0
    for _ in range(steps):
        mid = (lo + hi) / 2
        if hard_values(net, [spec], domain.scaled(mid), method)[0] >= spec.threshold:
            lo = mid
        else:
            hi = mid
    return lo


def test_largest_scale_matches_plain_bisection_with_fewer_bounds(monkeypatch):
    """IBP is inclusion-monotone, so reusing the enclosing box's margins finds exactly the factor a
    plain bisection finds, while bounding far fewer rows; the values returned are fresh ones. (The box
    fails just below τ, as most rejected LID snapshots do.)"""
    model, spec = trained_mlp(), task0_spec()
    net = bounded_network(model)
    box = Orthotope.around(model, lower=0.062)
    assert 0.85 < hard_values(net, [spec], box, "IBP")[0] < spec.threshold
    expected = _plain_bisection(net, spec, box, "IBP", 8)
    calls = _rows_bounded(monkeypatch, net)
    scale, values = largest_scale(net, [spec], box, "IBP", steps=8)
    rows = sum(calls)
    assert scale == expected > 0
    assert values == hard_values(net, [spec], box.scaled(scale), "IBP")
    assert values[0] >= spec.threshold
    assert hard_values(net, [spec], box.scaled(scale + 2 ** -8), "IBP")[0] < spec.threshold
    # one full bound at scale 1, one to confirm, and partial ones: a plain bisection bounds 8 full sets
    assert len(spec) * 2 < rows < len(spec) * 3


def test_largest_scale_returns_the_box_itself_when_it_meets_the_threshold():
    model, spec = trained_mlp(), task0_spec()
    net = bounded_network(model)
    box = Orthotope.around(model, lower=0.01)
    assert largest_scale(net, [spec], box, "CROWN") == (1.0, hard_values(net, [spec], box, "CROWN"))
    assert largest_scale(net, [spec.with_threshold(1.0)], Orthotope.around(model, lower=0.5), "IBP", steps=3) is None


class _LooseOnWholeSets:
    """A sound but non-monotone backend: bounds of the whole reference set are loosened by 0.5, so a
    search that trusts partial re-bounds overshoots and must fall back when it confirms."""

    def __init__(self, net, n):
        self.net, self.n, self.whole = net, n, 0

    def compute_bounds(self, x, *args, **kwargs):
        out = self.net.compute_bounds(x, *args, **kwargs)
        if x.shape[0] == self.n:
            self.whole += 1
            return type(out)(out.lower - 0.5, out.upper)
        return out

    def __getattr__(self, name):
        return getattr(self.net, name)


def test_largest_scale_confirms_with_fresh_bounds_when_bounds_are_not_monotone():
    model, spec = trained_mlp(), task0_spec()
    loose = _LooseOnWholeSets(bounded_network(model), len(spec))
    box = Orthotope.around(model, lower=0.1)
    found = largest_scale(loose, [spec], box, "IBP", steps=8)
    assert loose.whole > 2  # the first confirmation failed and the search went lower
    assert found is not None
    scale, values = found
    assert values == hard_values(loose, [spec], box.scaled(scale), "IBP")
    assert values[0] >= spec.threshold


# ------------------------------------------------------------------------------ certifying with a tighter method
def test_ibp_shaped_boxes_certified_and_grown_by_crown_are_sound_and_larger():
    """Optimise with IBP, certify with CROWN and grow ×4: every candidate is certified by CROWN (recomputed
    here) at its recorded value, contains the snapshot it was grown from, and its certified items
    survive weight sampling and attacks; the largest is larger than IBP's own largest candidate."""
    model, spec = trained_mlp(), task0_spec()
    plain = compute_lid(model, spec, LIDConfig(method="IBP", **QUICK))
    grown = compute_lid(model, spec, LIDConfig(method="IBP", certify_method="CROWN", grow=4.0, **QUICK))
    assert {c.method for c in grown.candidates} == {"CROWN"} and {c.method for c in plain.candidates} == {"IBP"}
    assert any(c.scale > 1 for c in grown.candidates)
    assert grown.largest().mean_width > plain.largest().mean_width
    net = bounded_network(model)
    by_iteration = {c.iteration: c for c in plain.candidates if c.scale == 1}
    for cand in grown.candidates:
        assert hard_values(net, [spec], cand.domain, "CROWN") == cand.hard_values
        assert cand.hard_values[0] >= spec.threshold
        if cand.scale > 1 and cand.iteration in by_iteration:
            assert by_iteration[cand.iteration].domain.is_subset(cand.domain)
    dom = grown.largest().domain
    ok = certified_items(model, dom, spec, "CROWN")
    x, y = spec.x[ok], spec.y[ok]
    assert sampled_min_margin(model, dom, x, y, N_SAMPLES) > 0
    assert attacked_min_margin(model, dom, x, y) > 0


def test_grown_boxes_stay_inside_the_outer_box_and_max_width():
    model, result = cached_lid("CROWN")
    outer = result.largest().domain
    cfg = LIDConfig(**{**QUICK, "iterations": 20, "method": "IBP", "certify_method": "CROWN", "grow": 50.0})
    inner = compute_lid(model, task0_spec(0.85), cfg, outer=outer)
    assert any(c.scale > 1 for c in inner.candidates)
    for cand in inner.candidates:
        assert cand.domain.is_subset(outer)
    capped = compute_lid(model, task0_spec(0.5), with_config(cfg, max_width=0.02))
    for cand in capped.candidates:
        assert max(float(t.max()) for t in (*cand.domain.lower.values(), *cand.domain.upper.values())) <= 0.02


def test_largest_scale_grows_within_a_limit_to_the_exact_factor_with_fewer_bounds(monkeypatch):
    """Growth from a qualifying box: ladder then bisection in [1, high] finds the factor a fine plain
    bisection finds (IBP is monotone), bounding far fewer rows; boxes are clipped to ``within`` (here
    the first layer may not grow past 0.03, so the others grow further)."""
    model, spec = trained_mlp(), task0_spec()
    net = bounded_network(model)
    box = Orthotope.around(model, lower=0.02)
    limit = Orthotope.around(model, lower={n: torch.full_like(p, 0.03 if n == "0.weight" else 1.0)
                                           for n, p in model.named_parameters()})
    assert hard_values(net, [spec], box, "IBP")[0] >= spec.threshold
    lo, hi = 1.0, 8.0
    for _ in range(16):
        mid = (lo + hi) / 2
        ok = hard_values(net, [spec], scaled_box(box, mid, limit), "IBP")[0] >= spec.threshold
        lo, hi = (mid, hi) if ok else (lo, mid)
    calls = _rows_bounded(monkeypatch, net)
    scale, values = largest_scale(net, [spec], box, "IBP", steps=8, high=8.0, low=1.0, within=limit)
    assert lo - 7.0 / 2 ** 9 <= scale <= lo
    assert sum(calls) < 6 * len(spec)  # a plain 8-step bisection bounds 8 whole sets
    unclipped, _ = largest_scale(net, [spec], box, "IBP", steps=8, high=8.0, low=1.0)
    assert 1 < unclipped < scale
    assert scaled_box(box, scale, limit).is_subset(limit)
    assert float(scaled_box(box, scale, limit).lower["0.weight"].max()) <= 0.03
    assert values == hard_values(net, [spec], scaled_box(box, scale, limit), "IBP")
    assert largest_scale(net, [spec.with_threshold(0.0)], box, "IBP", high=8.0, low=1.0, within=limit)[0] == 8.0


class _LooserInFloat64:
    """Sound, but its float64 bounds are looser than its float32 ones by ``gap``: a factor found by a
    float32 search then misses the float64 check."""

    def __init__(self, net, gap):
        self.net, self.gap, self.dtypes = net, gap, []

    def compute_bounds(self, x, *args, **kwargs):
        out = self.net.compute_bounds(x, *args, **kwargs)
        self.dtypes.append((x.dtype, int(x.shape[0])))
        return type(out)(out.lower - self.gap, out.upper) if x.dtype == torch.float64 else out

    def __getattr__(self, name):
        return getattr(self.net, name)


@pytest.mark.parametrize("method", ["IBP", "CROWN"])
def test_largest_scale_searches_in_float32_and_reports_float64_values(method):
    """With ``search_dtype=float32`` the factors are searched in float32 and bounded once in float64 (the
    values returned are float64's and meet the threshold); growth and shrinking find the factor a float64
    search finds."""
    model, spec = trained_mlp(), task0_spec()
    net = _LooserInFloat64(bounded_network(model), 0.0)
    for box, kwargs in [(Orthotope.around(model, lower=0.02), {"high": 8.0, "low": 1.0}),
                        (Orthotope.around(model, lower=0.062), {})]:
        reference = largest_scale(net, [spec], box, method, steps=8, **kwargs)
        net.dtypes.clear()
        scale, values = largest_scale(net, [spec], box, method, steps=8, search_dtype=torch.float32, **kwargs)
        assert abs(scale - reference[0]) <= 2 ** -8 * (kwargs.get("high", 1.0) - kwargs.get("low", 0.0))
        float64 = [n for dtype, n in net.dtypes if dtype == torch.float64]
        assert float64 == [len(spec)] and len(net.dtypes) >= 2  # the search in float32, one bound in float64
        assert values == hard_values(net, [spec], box.scaled(scale), method) and values[0] >= spec.threshold


def test_largest_scale_repeats_the_search_in_float64_when_the_float32_factor_misses():
    model, spec = trained_mlp(), task0_spec()
    box = Orthotope.around(model, lower=0.02)
    net = _LooserInFloat64(bounded_network(model), 0.0)
    exact = largest_scale(net, [spec], box, "IBP", steps=8, high=8.0, low=1.0)
    net.gap = 0.02
    assert hard_values(net, [spec], box.scaled(exact[0]), "IBP")[0] < spec.threshold
    found = largest_scale(net, [spec], box, "IBP", steps=8, high=8.0, low=1.0, search_dtype=torch.float32)
    assert found is not None and found == largest_scale(net, [spec], box, "IBP", steps=8, high=8.0, low=1.0)
    assert found[1] == hard_values(net, [spec], box.scaled(found[0]), "IBP")
    assert found[1][0] >= spec.threshold and 1 < found[0] < exact[0]


def test_bound_plans_and_their_labels():
    assert bound_plan("ibp") == {"method": "IBP"}
    assert bound_plan("IBP+CROWN") == {"method": "IBP", "certify_method": "CROWN", "grow": 4.0}
    assert plan_label("IBP") == "IBP" and plan_label("IBP+CROWN") == "IBP → CROWN ×4"
    assert bound_plans(" IBP, IBP+CROWN,") == ["IBP", "IBP+CROWN"]
    assert method_label(LIDConfig(method="IBP", certify_method="CROWN")) == "IBP → CROWN"
    assert method_label(LIDConfig(method="CROWN", certify_method="CROWN")) == "CROWN"
    for bad in ("IBP+", "IBP+CROWN+CROWN", "+CROWN"):
        with pytest.raises(InputError, match="bound plan"):
            bound_plan(bad)
    with pytest.raises(InputError, match="unknown bound method 'magic'"):
        bound_plan("magic+CROWN")
