"""Baselines: EWC penalty, A-GEM projection, LwF distillation, InterContiNet-style nested boxes."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from continual_helpers import misclassified_certified, small_mlp, tasks

from lirpa_lid.continual.baselines import (
    AGEM,
    EWC,
    FineTune,
    IntervalCL,
    LwF,
    agem_project,
    distillation_loss,
    ewc_penalty,
    worst_case_cross_entropy,
)
from lirpa_lid.continual.importance import fisher_diagonal
from lirpa_lid.continual.loop import run_continual
from lirpa_lid.continual.metrics import accuracy
from lirpa_lid.continual.training import TrainConfig
from lirpa_lid.margin import hard_values
from lirpa_lid.specification.accuracy import CertifiedAccuracy

FAST = TrainConfig(epochs=3, batch_size=32, lr=0.01)


def test_ewc_penalty_is_zero_with_zero_gradient_at_the_anchor_and_quadratic_elsewhere():
    model = small_mlp(10)
    x = torch.rand(16, 1, 5, 5)
    y = torch.randint(0, 10, (16,))
    fisher = fisher_diagonal(model, x, y)
    star = {n: p.detach().clone() for n, p in model.named_parameters()}
    pen = ewc_penalty(model, [(fisher, star)], 1e3)
    assert pen.item() == 0.0
    (g,) = torch.autograd.grad(pen, [model[1].weight])
    assert torch.count_nonzero(g) == 0
    with torch.no_grad():
        model[1].weight += 0.1
    expected = 1e3 / 2 * (fisher["1.weight"] * 0.01).sum()
    torch.testing.assert_close(ewc_penalty(model, [(fisher, star)], 1e3), expected.to(torch.float32))
    assert float(ewc_penalty(model, [(fisher, star), (fisher, star)], 1e3).detach()) == pytest.approx(2 * float(expected), rel=1e-5)


@pytest.mark.parametrize("seed", range(20))
def test_agem_projection_is_never_against_the_reference_gradient(seed):
    g_ = torch.Generator().manual_seed(seed)
    g, ref = torch.randn(50, generator=g_), torch.randn(50, generator=g_)
    out = agem_project(g, ref)
    assert torch.dot(out, ref) >= -1e-5
    if torch.dot(g, ref) >= 0:
        assert out is g                                   # no conflict: unchanged
    else:
        assert abs(float(torch.dot(out, ref))) < 1e-4    # projected onto the boundary
        # the smallest change that removes the conflict: the change is parallel to ref
        d = g - out
        assert torch.allclose(d / d.norm(), ref / ref.norm() * torch.sign(torch.dot(d, ref)), atol=1e-5)
    assert agem_project(g, torch.zeros(50)) is g


def test_distillation_is_minimal_when_the_new_model_agrees_with_the_old():
    """A cross-entropy of the old predictions with the new ones (Gibbs: smallest, with zero gradient, at
    new = old) — over the old head's classes (``restrict``) or over all outputs; over all outputs with
    the other classes' logits far below, it is the restricted one."""
    gen = torch.Generator().manual_seed(0)
    old = torch.randn(8, 10, generator=gen)
    for restrict, classes in ((True, (2, 7)), (False, tuple(range(10)))):
        new = old.clone().requires_grad_()
        loss = distillation_loss(new, old, classes, 2.0, restrict)
        (grad,) = torch.autograd.grad(loss, new)
        assert grad.abs().max() < 1e-6
        p = F.softmax(old[:, list(classes)] / 2, -1)
        assert loss.item() == pytest.approx((-(p * p.log()).sum()).item(), rel=1e-5)
        for _ in range(5):
            other = old + 3 * torch.randn(8, 10, generator=gen)
            assert distillation_loss(other, old, classes, 2.0, restrict).item() > loss.item()
    others = [c for c in range(10) if c not in (2, 7)]
    low_old, low_new = old.clone(), old + torch.randn(8, 10, generator=gen)
    low_old[:, others] = low_new[:, others] = -1e4
    assert distillation_loss(low_new, low_old, (2, 7), 2.0, False).item() == \
        pytest.approx(distillation_loss(low_new, low_old, (2, 7), 2.0, True).item(), rel=1e-6)
    new = old + torch.randn(8, 10, generator=gen)  # the other classes count when they are not negligible
    assert distillation_loss(new, old, (2, 7), 2.0, False).item() != \
        pytest.approx(distillation_loss(new, old, (2, 7), 2.0, True).item(), rel=1e-2)


def test_lwf_and_ewc_keep_task_0_better_than_fine_tuning_in_til():
    ts = tasks("TIL", n_tasks=3)
    accs = {}
    for cls, kwargs in ((FineTune, {}), (LwF, {"lmbd": 0.5}), (EWC, {"lmbd": 1e5, "fisher_mode": "empirical"})):
        learner = cls(small_mlp(10), train=FAST, seed=0, **kwargs)
        res = run_continual(learner, ts)
        accs[learner.name] = res.accuracy
        assert res.accuracy[0][0] > 0.9                   # every learner learns the first task
    assert len(accs["LwF"][0]) == 3
    assert all(a[-1][0] > 0.5 for a in accs.values())


def test_agem_memory_and_projection_counts():
    ts = tasks("CIL", n_tasks=2)
    learner = AGEM(small_mlp(10), memory_per_task=20, ref_batch=16, train=FAST, seed=0)
    res = run_continual(learner, ts)
    assert learner.memory.tasks == [0, 1] and len(learner.memory) == 40
    assert learner.projections > 0 and res.accuracy[0][0] > 0.9 and res.accuracy[1][1] >= 0.5


@pytest.mark.parametrize("setting", ["TIL", "DIL"])
def test_interval_cl_boxes_are_nested_certified_and_contain_the_final_model(setting):
    ts = tasks(setting, n_tasks=3)
    learner = IntervalCL(small_mlp(ts[0].num_outputs), train=FAST, lid_lr=1.0, lid_steps=60, seed=0)
    boxes = []
    orig_shrink = learner._shrink

    def spy(t, task):
        orig_shrink(t, task)
        boxes.append(learner.box)
    learner._shrink = spy
    res = run_continual(learner, ts)
    assert len(boxes) == 2 and boxes[1].is_subset(boxes[0])
    certs = learner.certificates()
    assert sorted(certs) == [0, 1]
    for k, cert in certs.items():
        assert cert.domain.contains(learner.model) and cert.method == "IBP"
        task = ts[k]
        spec = CertifiedAccuracy(task.lid.x, task.lid.y, task.num_outputs, cert.threshold, classes=task.head)
        assert hard_values(learner.backend, [spec], cert.domain, "IBP")[0] >= cert.threshold
    assert res.certified[-1][0] is not None and res.accuracy[0][0] > 0.8
    # items certified on a box are classified correctly by every sampled weight vector in it
    from lirpa_lid.margin import compute_margins
    task = ts[0]
    held = CertifiedAccuracy(task.cert.x, task.cert.y, task.num_outputs, 0.0, classes=task.head)
    ok = held.certified(compute_margins(learner.backend, held, certs[0].domain, "IBP", dtype=torch.float64))
    assert int(ok.sum()) == certs[0].k
    assert misclassified_certified(learner.model, certs[0].domain, task.cert.x[ok], task.cert.y[ok], task.head) == 0
    assert accuracy(learner.model, task.cert, task.head) >= certs[0].k / certs[0].n - 1e-9


def test_worst_case_cross_entropy_is_minus_log_of_the_soft_score_at_temperature_one():
    lower = torch.tensor([[2.0, -1.0, 0.5], [0.0, 0.0, 0.0], [-3.0, 4.0, 1.0]])
    spec = CertifiedAccuracy(torch.zeros(3, 2), [0, 1, 2], 4, 0.5, temperature=1.0)
    expected = -torch.log(spec.soft_scores(lower))
    assert torch.allclose(worst_case_cross_entropy(lower), expected, rtol=1e-6, atol=0)
    assert worst_case_cross_entropy(lower)[1].item() == pytest.approx(float(torch.log(torch.tensor(4.0))))
    # in log space it stays finite where the soft score underflows to 0
    far = torch.full((3, 3), -200.0, requires_grad=True)
    assert spec.soft_scores(far.detach()).tolist() == [0.0, 0.0, 0.0]
    loss = worst_case_cross_entropy(far).mean()
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(far.grad).all()
    assert loss.item() == pytest.approx(200.0 + float(torch.log(torch.tensor(3.0))), rel=1e-6)
