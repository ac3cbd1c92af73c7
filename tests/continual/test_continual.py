"""The continual loop, training helpers, metrics on hand-made matrices, and the certified LID learner:
certified domains hold (sampled weights never misclassify a certified item), each task's domain lies
inside the previous one, and the final model lies in every earlier domain."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from continual_helpers import misclassified_certified, small_mlp, tasks

import lirpa_lid
from lirpa_lid import CertificateError, InputError, Orthotope
from lirpa_lid.certificate.certify import clopper_pearson_lower
from lirpa_lid.continual import heads, loop, metrics, training
from lirpa_lid.continual.heads import head_logits, head_loss, head_targets
from lirpa_lid.continual.importance import FreezingPolicy
from lirpa_lid.continual.lid_learner import LIDLearner, LIDLearnerConfig, ReplayConfig
from lirpa_lid.continual.loop import run_continual
from lirpa_lid.continual.metrics import (
    accuracy,
    average_accuracy,
    backward_transfer,
    correct,
    forgetting,
    negative_flip_rate,
)
from lirpa_lid.continual.training import TrainConfig, fit, regulariser
from lirpa_lid.datasets import Split
from lirpa_lid.lid.solve import LIDConfig
from lirpa_lid.margin import compute_margins, hard_values
from lirpa_lid.specification.accuracy import CertifiedAccuracy

A = [[0.9, 0.1, 0.0],
     [0.5, 0.8, 0.1],
     [0.4, 0.7, 0.9]]


def test_metrics_on_a_hand_made_matrix():
    assert average_accuracy(A) == pytest.approx((0.4 + 0.7 + 0.9) / 3)
    assert average_accuracy(A, stage=1) == pytest.approx((0.5 + 0.8) / 2)
    assert average_accuracy(A, stage=0) == pytest.approx(0.9)
    assert forgetting(A) == pytest.approx(((0.9 - 0.4) + (0.8 - 0.7)) / 2)
    assert backward_transfer(A) == pytest.approx(((0.4 - 0.9) + (0.7 - 0.8)) / 2)
    # forgetting uses the best accuracy so far, not the one right after the task
    B = [[0.5, 0.0], [0.6, 0.7]]
    assert forgetting(B) == pytest.approx(0.5 - 0.6) and backward_transfer(B) == pytest.approx(0.1)
    assert forgetting([[1.0]]) == 0.0
    before = torch.tensor([True, True, False, True, False])
    after = torch.tensor([False, True, True, True, False])
    assert negative_flip_rate(before, after) == pytest.approx(1 / 5)
    with pytest.raises(InputError):
        average_accuracy([[0.1, 0.2], [0.3]])
    with pytest.raises(InputError):
        negative_flip_rate(before, after[:2])


def test_correct_and_accuracy_through_a_masked_head():
    model = torch.nn.Linear(4, 4, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(4))
    data = Split(torch.tensor([[0.0, 1.0, 5.0, 2.0], [3.0, 0.0, 1.0, -1.0], [0.0, 0.0, 0.0, 9.0]]),
                 torch.tensor([3, 1, 3]))
    # all outputs: predictions 2, 0, 3; head (1, 3): predictions 3, 1, 3
    assert correct(model, data).tolist() == [False, False, True]
    assert correct(model, data, (1, 3), chunk=2).tolist() == [True, True, True]
    assert accuracy(model, data) == pytest.approx(1 / 3) and accuracy(model, data, (1, 3)) == 1.0


def test_names_stay_importable_from_their_old_homes():
    """The loop and the metrics moved out of training.py; reproductions/ and benchmarks/ import them there."""
    for name in ("accuracy", "correct", "average_accuracy", "backward_transfer", "forgetting", "negative_flip_rate"):
        assert getattr(training, name) is getattr(metrics, name) is getattr(lirpa_lid.continual, name)
    for name in ("run_continual", "ContinualResult", "Learner"):
        assert getattr(training, name) is getattr(loop, name) is getattr(lirpa_lid.continual, name)
    for name in ("head_logits", "head_targets", "head_loss"):
        assert getattr(training, name) is getattr(heads, name)
    assert lirpa_lid.Bias is lirpa_lid.continual.Bias is FreezingPolicy


def test_masked_heads():
    logits = torch.tensor([[0.0, 1.0, 5.0, 2.0], [3.0, 0.0, 1.0, -1.0]])
    y = torch.tensor([3, 1])
    head = (1, 3)
    assert torch.equal(head_logits(logits, head), logits[:, [1, 3]])
    assert torch.equal(head_targets(y, head), torch.tensor([1, 0]))
    assert head_loss(logits, y, head) == pytest.approx(float(F.cross_entropy(logits[:, [1, 3]], torch.tensor([1, 0]))))
    assert head_loss(logits, y, None) == pytest.approx(float(F.cross_entropy(logits, y)))
    with pytest.raises(InputError, match="not in the head"):
        head_targets(torch.tensor([2]), head)


def test_fit_is_seeded_and_learns_and_regulariser_values():
    ts = tasks("TIL", n_tasks=1)
    cfg = TrainConfig(epochs=3, batch_size=32, lr=0.01, l2=0.01, unbias=0.01)
    m1, m2 = small_mlp(10), small_mlp(10)
    h1 = fit(m1, ts[0].train, cfg, head=ts[0].head, seed=4)
    fit(m2, ts[0].train, cfg, head=ts[0].head, seed=4)
    assert all(torch.equal(a, b) for a, b in zip(m1.parameters(), m2.parameters()))
    assert h1[-1] < h1[0]
    x = ts[0].train.x[:8]
    assert float(regulariser(m1, x)) == 0.0
    l2 = regulariser(m1, x, l2=0.5).item()
    assert l2 == pytest.approx(0.5 * sum(p.norm().item() for p in m1.parameters()), rel=1e-5)
    assert regulariser(m1, x, unbias=1.0, generator=torch.Generator().manual_seed(0)).item() > 0


@dataclass
class _FakeCert:
    domain: Orthotope
    bound: float = 0.5
    empirical: float = 0.6


class _Fake:
    """A learner that trains nothing and claims a certificate for task 0 with a domain around θ₀."""

    name = "fake"

    def __init__(self, move: bool):
        self.model, self.move = small_mlp(10), move
        self.box = Orthotope.around(self.model, lower=0.01)

    def learn(self, t, tasks):
        if self.move and t == 1:
            with torch.no_grad():
                self.model[1].weight += 1.0

    def certificates(self):
        return {0: _FakeCert(self.box)}


def test_loop_records_and_refuses_certificates_that_do_not_cover_the_model():
    ts = tasks("CIL", n_tasks=2)
    res = run_continual(_Fake(move=False), ts)
    assert len(res.accuracy) == 2 and len(res.accuracy[0]) == 2
    assert res.certified == [[0.5, None], [0.5, None]] and res.certified_fraction[1][0] == 0.6
    assert res.negative_flips[0] == 0.0 and res.negative_flips[1] is None
    assert set(res.summary()) >= {"average_accuracy", "forgetting", "backward_transfer", "mean_certified_bound"}
    with pytest.raises(CertificateError, match="does not cover"):
        run_continual(_Fake(move=True), ts)


def _lid_config(method="IBP", iterations=30, **kw):
    return LIDLearnerConfig(train=TrainConfig(epochs=4, batch_size=32, lr=0.01, l2=0.001, unbias=0.001),
                            lid=LIDConfig(iterations=iterations, primal_lr=0.5, dual_lr=0.1, snapshot_every=10,
                                          method=method, progress=False, seed=0), **kw)


@pytest.fixture(scope="module")
def til_run():
    ts = tasks("TIL", n_tasks=3)
    learner = LIDLearner(small_mlp(10), _lid_config("CROWN"), seed=0)
    domains = []
    original = learner._adopt

    def spy(index, tasks_, reset):
        original(index, tasks_, reset)
        domains.append(learner.outer)
    learner._adopt = spy
    return ts, learner, run_continual(learner, ts), domains


def test_lid_learner_domains_are_nested_and_contain_the_final_model(til_run):
    ts, learner, res, domains = til_run
    assert len(domains) == 2 and domains[1].is_subset(domains[0])
    certs = learner.certificates()
    assert sorted(certs) == [0, 1]
    for cert in certs.values():
        assert cert.domain.contains(learner.model)
        assert cert.bound == pytest.approx(clopper_pearson_lower(cert.k, cert.n, 0.05))
        assert cert.method == "CROWN"
    assert certs[1].domain.is_subset(certs[0].domain)  # task 1's domain lies in task 0's: both hold at the end
    assert res.certified[1][0] is not None and res.certified[1][1] is None and res.certified[2][1] is not None
    assert res.accuracy[-1][0] > 0.8 and res.accuracy[-1][2] > 0.8   # TIL: old task kept, new task learnt


def test_certified_items_are_never_misclassified_by_weights_in_the_domain(til_run):
    ts, learner, res, _ = til_run
    for k, cert in learner.certificates().items():
        task = ts[k]
        spec = CertifiedAccuracy(task.cert.x, task.cert.y, 10, 0.0, classes=task.head)
        ok = spec.certified(compute_margins(learner.backend, spec, cert.domain, "CROWN", dtype=torch.float64))
        assert int(ok.sum()) == cert.k > 0
        assert misclassified_certified(learner.model, cert.domain, task.cert.x[ok], task.cert.y[ok], task.head) == 0
        # and so the final model's accuracy on the held-out items is at least the certified fraction
        pred = head_logits(learner.model(task.cert.x), task.head).argmax(-1)
        assert bool((pred == head_targets(task.cert.y, task.head))[ok].all())


def test_til_head_rows_of_other_classes_are_widened_without_changing_the_certificate(til_run):
    ts, learner, res, domains = til_run
    d0 = domains[0]
    other = [c for c in range(10) if c not in ts[0].head]
    w = d0.lower["3.weight"] + d0.upper["3.weight"]
    assert float(w[other].min()) > 1.0                     # other classes' rows: wide
    assert float(w[list(ts[0].head)].max()) < 1.0           # the task's own rows: what the LID allowed
    spec = CertifiedAccuracy(ts[0].lid.x, ts[0].lid.y, 10, 0.0, classes=ts[0].head)
    value = hard_values(learner.backend, [spec], d0, "CROWN")[0]
    assert value == pytest.approx(learner.details()["optimisation_certified"][0])


def test_bias_freezes_elements_at_width_zero():
    ts = tasks("CIL", n_tasks=2)
    cfg = _lid_config("IBP", iterations=10, bias=FreezingPolicy("fisher", lookahead=True, fraction=0.7, n_items=32))
    learner = LIDLearner(small_mlp(10), cfg, seed=0)
    learner.learn(0, ts)
    n = sum(p.numel() for p in learner.model.parameters())
    assert learner.lids[0]["frozen_elements"] == round(0.7 * n)
    for c in learner.candidates:
        zero = sum(int(((c.domain.lower[k] + c.domain.upper[k]) == 0).sum()) for k in c.domain.names)
        assert zero >= round(0.7 * n)
    assert max(c.mean_width for c in learner.candidates) > 0


def test_replay_recomputes_and_recertifies_every_earlier_task():
    ts = tasks("CIL", n_tasks=3)
    cfg = _lid_config("IBP", iterations=10, replay=ReplayConfig(capacity=40, k=20, target=1.01, max_calls=1))
    learner = LIDLearner(small_mlp(10), cfg, seed=0)
    res = run_continual(learner, ts)
    assert [r["task"] for r in learner.replays] == [1, 2]   # target unreachable: one recomputation per task
    certs = learner.certificates()
    assert sorted(certs) == [0, 1]
    for k, cert in certs.items():
        assert cert.domain.contains(learner.model)
        assert "no input shared" in cert.held_out
    assert res.accuracy[-1][0] > 0.3   # replay lets the old task survive class-incremental training


def test_lid_learner_errors_name_the_problem():
    with pytest.raises(InputError, match="Linear"):
        from lirpa_lid.continual.lid_learner import last_linear
        last_linear(torch.nn.Sequential(torch.nn.ReLU()))
