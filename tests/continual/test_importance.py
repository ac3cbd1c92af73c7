"""Importance scores (Fisher, SI) and freeze masks: exact values on small models, exact frozen fractions."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from continual_helpers import small_mlp, synthetic_data

from lirpa_lid import InputError
from lirpa_lid.continual.importance import (
    Bias,
    FreezingPolicy,
    fisher_diagonal,
    free_from_frozen,
    freeze_mask,
    importance,
    si_importance,
)


def _data(n=24):
    x, y, _, _ = synthetic_data()
    return x[:n], y[:n]


def test_empirical_fisher_matches_a_per_item_loop():
    model = small_mlp(10)
    x, y = _data(12)
    fisher = fisher_diagonal(model, x, y)
    expected = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for i in range(len(y)):
        model.zero_grad()
        F.log_softmax(model(x[i:i + 1]), -1)[0, y[i]].backward()
        for n, p in model.named_parameters():
            expected[n] += p.grad ** 2 / len(y)
    for n in expected:
        torch.testing.assert_close(fisher[n], expected[n], rtol=1e-5, atol=1e-9)


def test_batch_fisher_is_the_squared_mean_gradient():
    model = small_mlp(10)
    x, y = _data(16)
    fisher = fisher_diagonal(model, x, y, mode="batch")
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(fisher[n], p.grad ** 2)


def test_parameters_that_do_not_affect_the_output_get_zero_importance():
    model = small_mlp(10)
    with torch.no_grad():
        model[3].weight[:, 0] = 0.0        # hidden unit 0 feeds nothing: its incoming weights are dead
    x, y = _data(20)
    head = (int(y[0]), (int(y[0]) + 1) % 10)
    sel = torch.isin(y, torch.tensor(head))
    for scores in (fisher_diagonal(model, x, y), fisher_diagonal(model, x, y, mode="batch"),
                   si_importance(model, x, y, steps=1)):  # more steps revive the dead unit
        assert scores["1.weight"][0].abs().max() == 0 and scores["1.bias"][0] == 0
        assert scores["1.weight"][1:].abs().sum() > 0
    # a masked head (task-incremental) only depends on its own rows of the last layer
    fisher = fisher_diagonal(model, x[sel], y[sel], head=head)
    other = torch.ones(10, dtype=torch.bool)
    other[list(head)] = False
    assert fisher["3.weight"][other].abs().max() == 0 and fisher["3.bias"][other].abs().max() == 0
    assert fisher["3.weight"][list(head)].abs().sum() > 0


def test_si_one_step_is_lr_times_abs_gradient_and_leaves_the_model_alone():
    model = small_mlp(10)
    before = copy.deepcopy(model.state_dict())
    x, y = _data(16)
    omega = si_importance(model, x, y, steps=1, lr=1e-3)
    for n, t in model.state_dict().items():
        assert torch.equal(t, before[n])
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    for n, p in model.named_parameters():  # Adam's first step is -lr * g / (|g| + eps)
        torch.testing.assert_close(omega[n], 1e-3 * p.grad ** 2 / (p.grad.abs() + 1e-8), rtol=1e-4, atol=1e-10)
        assert (omega[n] >= 0).all()


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.825, 0.95, 1.0])
@pytest.mark.parametrize("which", ["least", "most"])
def test_freeze_mask_freezes_exactly_the_fraction(fraction, which):
    g = torch.Generator().manual_seed(0)
    scores = {"a": torch.rand(7, 5, generator=g), "b": torch.zeros(13), "c": torch.rand(3, generator=g)}  # ties in b
    n = sum(t.numel() for t in scores.values())
    masks = freeze_mask(scores, fraction, which, seed=1)
    frozen = sum(int(m.sum()) for m in masks.values())
    assert frozen == round(fraction * n)
    assert {k: m.shape for k, m in masks.items()} == {k: t.shape for k, t in scores.items()}
    flat_s = torch.cat([scores[k].flatten() for k in scores])
    flat_m = torch.cat([masks[k].flatten() for k in scores])
    if 0 < frozen < n:  # frozen elements are the least (most) important ones
        if which == "least":
            assert flat_s[flat_m].max() <= flat_s[~flat_m].min()
        else:
            assert flat_s[flat_m].min() >= flat_s[~flat_m].max()
    free = free_from_frozen(masks)
    assert all(torch.equal(free[k], ~masks[k]) for k in masks)


def test_freeze_mask_errors():
    with pytest.raises(InputError, match="fraction"):
        freeze_mask({"a": torch.ones(3)}, 1.5)
    with pytest.raises(InputError, match="which"):
        freeze_mask({"a": torch.ones(3)}, 0.5, "middle")
    with pytest.raises(InputError, match="NaN"):
        freeze_mask({"a": torch.tensor([1.0, float("nan")])}, 0.5)
    with pytest.raises(InputError, match="kind"):
        importance("hessian", small_mlp(10), *_data())


@pytest.mark.parametrize("kind", ["fisher", "si"])
@pytest.mark.parametrize("lookahead", [True, False])
def test_bias_freezes_round_q_n_elements(kind, lookahead):
    model = small_mlp(10)
    x, y = _data(40)
    bias = FreezingPolicy(kind, lookahead, fraction=0.8, n_items=30, si_steps=3)
    frozen = bias.frozen(model, x, y)
    n = sum(p.numel() for p in model.parameters())
    assert sum(int(m.sum()) for m in frozen.values()) == round(0.8 * n)
    assert "look-ahead" in bias.label if lookahead else "EWC-like" in bias.label
    with pytest.raises(InputError):
        FreezingPolicy("fisher", fraction=-0.1)
    with pytest.raises(InputError, match="FreezingPolicy.n_items"):
        FreezingPolicy("si", n_items=0)
    # the former name is the same class (public API)
    assert Bias is FreezingPolicy and Bias("si", lookahead=False, fraction=0.05) == \
        FreezingPolicy("si", lookahead=False, fraction=0.05)
