"""Projection into candidate domains: lands inside (float64), idempotent, nearest point, strategies,
the projected optimiser."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lirpa_lid import InputError, Orthotope
from lirpa_lid.domains.projection import ProjectedOptimizer, batch_loss, project, project_


def _boxes(seed=0, n=4, shape=(5, 3)):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        ref = {"w": torch.randn(shape, generator=g) + i, "b": torch.randn(shape[0], generator=g)}
        off = lambda t: torch.rand(t.shape, generator=g) * 0.5
        out.append(Orthotope(ref, {k: off(v) for k, v in ref.items()}, {k: off(v) for k, v in ref.items()}))
    return out


def _point(seed=1, scale=3.0, shape=(5, 3)):
    g = torch.Generator().manual_seed(seed)
    return {"w": torch.randn(shape, generator=g) * scale, "b": torch.randn(shape[0], generator=g) * scale}


def test_projection_lands_inside_in_float64_and_is_idempotent():
    boxes = _boxes()
    for seed in range(20):
        p = _point(seed)
        res = project(p, boxes, "closest")
        assert res.moved and boxes[res.index].contains(res.params)
        again = project(res.params, boxes, "closest")
        assert not again.moved and again.index == res.index
        assert all(torch.equal(again.params[k], res.params[k]) for k in p)


def test_float32_rounding_never_leaves_the_box():
    """Clamping to float32-rounded bounds can land one ulp outside the float64 box; ours cannot."""
    g = torch.Generator().manual_seed(0)
    ref = {"w": torch.randn(20000, generator=g)}
    box = Orthotope(ref, {"w": torch.rand(20000, generator=g) * 0.1}, {"w": torch.rand(20000, generator=g) * 0.1})
    p = {"w": torch.randn(20000, generator=g) * 3}
    assert box.contains(box.project(p))


def test_closest_is_the_euclidean_nearest_point():
    boxes = _boxes()
    g = torch.Generator().manual_seed(3)
    for seed in range(5):
        p = _point(seed + 10)
        res = project(p, boxes, "closest")
        d_star = math.sqrt(sum(float(((res.params[k] - p[k]).double() ** 2).sum()) for k in p))
        assert d_star == pytest.approx(res.distance, rel=1e-5)
        for box in boxes:  # brute force: no point of any box is closer
            samples = box.sample(2000, generator=g, corner_fraction=0.3)
            d = torch.sqrt(sum(((samples[k] - p[k]).double() ** 2).flatten(1).sum(1) for k in p))
            assert float(d.min()) >= d_star - 1e-5
            assert box.distance(p) >= d_star - 1e-5


def test_points_inside_do_not_move_and_prefer_keeps_the_current_candidate():
    boxes = _boxes()
    inner = Orthotope(boxes[1].reference, {k: v / 2 for k, v in boxes[1].lower.items()},
                      {k: v / 2 for k, v in boxes[1].upper.items()})
    p = inner.sample(1, generator=torch.Generator().manual_seed(0), corner_fraction=0.0)
    p = {k: v[0] for k, v in p.items()}
    both = [inner, boxes[1]]
    for strategy in ("closest", "largest", "sample_closest"):
        res = project(p, both, strategy)
        assert not res.moved and res.distance == 0.0
        assert all(torch.equal(res.params[k], p[k]) for k in p)
    assert project(p, both, prefer=1).index == 1
    assert project(p, both).index == 0


def test_largest_and_best_loss_strategies():
    boxes = _boxes()
    p = _point(7)
    widths = [float(b.mean_width()) for b in boxes]
    assert project(p, boxes, "largest").index == max(range(4), key=widths.__getitem__)
    target = {n: c for n, (c, _) in boxes[2].center_radius(torch.float64).items()}
    loss = lambda params: sum(float(((params[k] - target[k]) ** 2).sum()) for k in params)
    res = project(p, boxes, "best_loss", loss_fn=loss)
    brute = min(range(4), key=lambda i: loss(boxes[i].project(p)))
    assert res.index == brute
    with pytest.raises(InputError, match="loss_fn"):
        project(p, boxes, "best_loss")


def test_sampling_strategies_follow_their_weights():
    boxes = _boxes()
    far = Orthotope({k: v + 100 for k, v in boxes[0].reference.items()}, boxes[0].lower, boxes[0].upper)
    p = {k: v.clone() for k, v in boxes[0].reference.items()}
    p["w"] += 1.0  # just outside box 0, far from the other
    g = torch.Generator().manual_seed(0)
    picks = [project(p, [boxes[0], far], "sample_closest", generator=g).index for _ in range(50)]
    assert picks.count(0) > 25
    picks = [project(p, [boxes[0], far], "sample_largest_closest", generator=g).index for _ in range(50)]
    assert set(picks) <= {0, 1}
    a = [project(p, boxes, "sample_closest", generator=torch.Generator().manual_seed(1)).index for _ in range(3)]
    b = [project(p, boxes, "sample_closest", generator=torch.Generator().manual_seed(1)).index for _ in range(3)]
    assert a == b


def test_bad_inputs():
    boxes = _boxes()
    p = _point()
    with pytest.raises(InputError, match="unknown projection strategy"):
        project(p, boxes, "nearest")
    with pytest.raises(InputError, match="no candidate"):
        project(p, [], "closest")
    p["w"][0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        project(p, boxes, "closest")


def test_projected_optimizer_keeps_the_model_in_a_candidate():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
    boxes = [Orthotope.around(model, lower=0.01), Orthotope.around(model, lower=0.05, upper=0.0)]
    opt = ProjectedOptimizer(torch.optim.SGD(model.parameters(), lr=0.5), model, boxes, "best_loss")
    x, y = torch.randn(32, 3), torch.randint(0, 2, (32,))
    assert opt.candidate is None
    for _ in range(10):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step(batch=(x, y))
        assert opt.current is not None and boxes[opt.current].contains(model)
    assert opt.projections > 0
    with pytest.raises(InputError, match="needs the current batch"):
        opt.step()


def test_project_in_place_and_batch_loss():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 2))
    box = Orthotope.around(model, lower=0.0)
    box = Orthotope({k: v.clone() for k, v in box.reference.items()}, box.lower, box.upper)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    res = project_(model, [box])
    assert res.moved and box.contains(model)
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 0, 1])
    loss = batch_loss(model, x, y)
    with torch.no_grad():
        assert float(loss(dict(model.named_parameters()))) == pytest.approx(
            float(torch.nn.functional.cross_entropy(model(x), y)))
