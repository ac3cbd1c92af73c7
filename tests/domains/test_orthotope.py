"""Orthotope: membership, projection, size measures, sampling, set operations, files."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lirpa_lid import DomainError, Orthotope


@pytest.fixture
def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()


@pytest.fixture
def box(model):
    g = torch.Generator().manual_seed(1)
    base = Orthotope.around(model, ["0.weight", "2.bias"])
    return base.with_offsets({n: torch.rand(t.shape, generator=g, dtype=t.dtype) * 0.1 for n, t in base.reference.items()},
                             {n: torch.rand(t.shape, generator=g, dtype=t.dtype) * 0.2 for n, t in base.reference.items()})


def test_around_defaults_to_all_parameters_and_symmetric_offsets(model):
    box = Orthotope.around(model, lower=0.5)
    assert box.names == [n for n, _ in model.named_parameters()]
    for n, (lo, hi) in box.bounds().items():
        torch.testing.assert_close(hi - lo, torch.full_like(lo, 1.0))
    assert box.numel() == sum(p.numel() for p in model.parameters())
    assert box.contains(model)


def test_membership_is_exact_in_float64(model, box):
    assert box.contains(model)
    params = dict(model.named_parameters())
    lo, hi = box.bounds()["0.weight"]
    inside = {**{n: p.detach() for n, p in params.items()}, "0.weight": hi.clone()}
    assert box.contains(inside)
    outside = {**inside, "0.weight": hi + 1e-12}
    assert not box.contains(outside)
    reasons = box.violations(outside)
    assert len(reasons) == 1 and "0.weight" in reasons[0] and "outside" in reasons[0]
    assert "missing" in box.violations({"2.bias": params["2.bias"]})[0]


def test_projection_is_the_euclidean_nearest_point(model, box):
    g = torch.Generator().manual_seed(2)
    far = {n: p.detach() + torch.randn(p.shape, generator=g, dtype=p.dtype) for n, p in model.named_parameters()}
    proj = box.project(far)
    assert box.contains(proj)
    torch.testing.assert_close(box.project(proj)["0.weight"], proj["0.weight"])  # idempotent
    torch.testing.assert_close(proj["0.bias"], far["0.bias"])  # parameters outside the box are untouched
    dist = math.sqrt(sum(float(((proj[n] - far[n]) ** 2).sum()) for n in box.names))
    assert dist == pytest.approx(box.distance(far))
    samples = box.sample(500, generator=g)
    for i in range(500):
        d = math.sqrt(sum(float(((samples[n][i] - far[n]) ** 2).sum()) for n in box.names))
        assert d >= dist - 1e-12


def test_project_in_place(model, box):
    with torch.no_grad():
        model[0].weight.add_(1.0)
    assert not box.contains(model)
    box.project_(model)
    assert box.contains(model)


def test_sizes(model):
    box = Orthotope.around(model, ["0.weight"], lower=0.25, upper=0.75)
    assert float(box.mean_width()) == pytest.approx(1.0)
    assert float(box.log_volume()) == pytest.approx(0.0)
    half = Orthotope.around(model, ["0.weight"], lower=0.25, upper=0.25)
    assert float(half.log_volume()) == pytest.approx(12 * math.log(0.5))
    assert Orthotope.around(model, ["0.weight"]).log_volume() == -math.inf


def test_free_mask_freezes_elements(model):
    free = {"0.weight": torch.zeros(4, 3, dtype=torch.bool)}
    free["0.weight"][0] = True
    box = Orthotope.around(model, ["0.weight"], lower=0.1, free=free)
    lo, hi = box.bounds()["0.weight"]
    assert (hi - lo)[1:].abs().max() == 0 and torch.allclose((hi - lo)[0], torch.full((3,), 0.2, dtype=lo.dtype))
    assert box.numel() == 3
    assert float(box.mean_width()) == pytest.approx(0.2)


def test_offsets_stay_differentiable(model):
    base = Orthotope.around(model, ["0.weight"])
    low = {"0.weight": torch.full((4, 3), 0.1, dtype=torch.float64, requires_grad=True)}
    up = {"0.weight": torch.full((4, 3), 0.2, dtype=torch.float64, requires_grad=True)}
    base.with_offsets(low, up).mean_width().backward()
    assert torch.allclose(low["0.weight"].grad, torch.full((4, 3), 1 / 12, dtype=torch.float64))


def test_sampling_covers_corners_and_stays_inside(box):
    g = torch.Generator().manual_seed(3)
    s = box.sample(1000, generator=g, corner_fraction=0.5)
    for n, (lo, hi) in box.bounds().items():
        assert (s[n] >= lo).all() and (s[n] <= hi).all()
        at_corner = ((s[n][:500] == lo) | (s[n][:500] == hi)).all()
        assert at_corner
        interior = ((s[n][500:] > lo) & (s[n][500:] < hi)).float().mean()
        assert interior > 0.9


def test_intersection_and_nesting(model):
    outer = Orthotope.around(model, ["0.weight"], lower=0.1, upper=0.3)
    inner = Orthotope.around(model, ["0.weight"], lower=0.2, upper=0.1)
    both = inner.intersection(outer)
    lo, hi = both.bounds()["0.weight"]
    ref = outer.reference["0.weight"]
    torch.testing.assert_close(lo, ref - 0.1)
    torch.testing.assert_close(hi, ref + 0.1)
    assert both.is_subset(outer) and both.is_subset(inner)
    assert not inner.is_subset(outer)
    assert inner.clip_to(outer).is_subset(outer)


def test_intersection_needs_the_reference_inside(model):
    outer = Orthotope.around(model, ["0.weight"], lower=0.1)
    shifted = Orthotope({"0.weight": outer.reference["0.weight"] + 1.0})
    with pytest.raises(DomainError, match="reference"):
        shifted.intersection(outer)


def test_save_load_round_trip(tmp_path, box):
    path = tmp_path / "box.pt"
    box.save(path)
    again = Orthotope.load(path)
    assert again.names == box.names
    for n in box.names:
        assert torch.equal(again.lower[n], box.lower[n]) and torch.equal(again.upper[n], box.upper[n])
        assert torch.equal(again.reference[n], box.reference[n]) and torch.equal(again.free[n], box.free[n])
    (tmp_path / "junk.pt").write_bytes(b"not a tensor file")
    with pytest.raises(Exception):
        Orthotope.load(tmp_path / "junk.pt")


@pytest.mark.parametrize("bad, match", [
    (dict(lower={"w": -torch.ones(2)}), "negative"),
    (dict(upper={"w": torch.tensor([0.1, float("nan")])}), "NaN"),
    (dict(lower={"w": torch.ones(3)}), "shape"),
    (dict(free={"w": torch.ones(3, dtype=torch.bool)}), "shape"),
])
def test_malformed_boxes_are_rejected(bad, match):
    with pytest.raises(DomainError, match=match):
        Orthotope({"w": torch.zeros(2)}, **bad)


def test_nan_reference_and_unknown_names_are_rejected(model):
    with pytest.raises(DomainError, match="NaN"):
        Orthotope({"w": torch.tensor([0.0, float("inf")])})
    with pytest.raises(DomainError, match="unknown parameter"):
        Orthotope.around(model, ["nope.weight"])
    with pytest.raises(DomainError, match="at least one"):
        Orthotope({})


@pytest.mark.parametrize("backend", ["native", "auto_lirpa"])
def test_one_domain_can_be_differentiated_chunk_by_chunk(model, backend):
    """Bounding one differentiable domain on two chunks with a backward pass after each gives the
    gradient of the whole batch (masked offsets must not break a second backward pass)."""
    from lirpa_lid import bounded_network
    base = Orthotope.around(model, ["0.weight", "2.weight"], lower=0.05)
    free = {n: torch.rand(t.shape, generator=torch.Generator().manual_seed(2)) > 0.3 for n, t in base.reference.items()}
    base = Orthotope(base.reference, base.lower, base.upper, free)
    net = bounded_network(model, backend=backend)
    x = torch.rand(6, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    grads = []
    for chunks in ([slice(0, 3), slice(3, 6)], [slice(0, 6)]):
        lower = {n: t.clone().requires_grad_(True) for n, t in base.lower.items()}
        domain = base.with_offsets(lower, base.upper)
        for sl in chunks:
            net.compute_bounds(x[sl], domain, method="CROWN").lower.sum().backward()
        grads.append({n: t.grad for n, t in lower.items()})
    for n in grads[0]:
        assert torch.allclose(grads[0][n], grads[1][n], atol=1e-12)
        assert (grads[0][n][~free[n]] == 0).all()


def test_face_distances_are_exact_float64_and_zero_outside_the_box():
    theta = {"w": torch.tensor([0.0, 1.0, 2.0, 5.0]), "b": torch.tensor([[0.25]])}
    box = Orthotope({"w": torch.tensor([1.0, 1.0, 1.0, 1.0]), "b": torch.tensor([[0.5]])},
                    {"w": torch.tensor([0.5, 0.5, 0.5, 0.5]), "b": torch.tensor([[0.0]])},
                    {"w": torch.tensor([2.0, 2.0, 2.0, 2.0]), "b": torch.tensor([[1.0]])})
    d = box.face_distances(theta)
    # w's box is [0.5, 3.0] per element; b's [0.5, 1.5]
    assert d["w"][0].dtype == torch.float64 and d["w"][0].shape == (4,) and d["b"][1].shape == (1, 1)
    assert d["w"][0].tolist() == [0.0, 0.5, 1.5, 4.5] and d["w"][1].tolist() == [3.0, 2.0, 1.0, 0.0]
    assert d["b"][0].item() == 0.0 and d["b"][1].item() == 1.25
    # against the set the box denotes, in float64: a float32 offset that is not a float32 sum
    ref = torch.tensor([1.0])
    tiny = Orthotope({"p": ref}, {"p": torch.tensor([1e-9])}, {"p": torch.tensor([3e-9])})
    lo, hi = tiny.face_distances({"p": ref})["p"]
    assert lo.item() == torch.tensor(1e-9).double().item() and hi.item() == torch.tensor(3e-9).double().item()
