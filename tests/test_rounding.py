"""Directed rounding (``lirpa_lid.rounding``): the converted value lies on the promised side of the
original, and is the nearest such value of the target dtype."""
import math

import pytest
import torch

from lirpa_lid.rounding import round_directed


@pytest.mark.parametrize("direction", [-1, 0, 1])
def test_rounded_values_lie_on_the_promised_side_and_are_nearest(direction):
    g = torch.Generator().manual_seed(0)
    t = torch.cat([torch.randn(10_000, generator=g, dtype=torch.float64) * 10 ** torch.randint(-8, 8, (10_000,), generator=g),
                   torch.tensor([0.0, 1.0, -1.0, 0.1, -0.1, 1 / 3], dtype=torch.float64)])
    out = round_directed(t, torch.float32, direction)
    back = out.double()
    if direction < 0:
        assert (back <= t).all()
    elif direction > 0:
        assert (back >= t).all()
    else:
        assert (back.abs() <= t.abs()).all() and (torch.sign(back) * torch.sign(t) >= 0).all()
    # nearest: one ulp further towards the original would cross it
    step = torch.nextafter(out, torch.full_like(out, math.inf if direction < 0 else -math.inf))
    if direction == 0:
        step = torch.nextafter(out, torch.where(t > 0, torch.full_like(out, math.inf), torch.full_like(out, -math.inf)))
    inexact = back != t
    crossed = (step.double() - t) * (back - t) <= 0
    assert crossed[inexact].all()


def test_exact_and_widening_conversions_are_unchanged():
    t = torch.tensor([0.5, -2.0, 3.0], dtype=torch.float32)
    for direction in (-1, 0, 1):
        assert torch.equal(round_directed(t, torch.float64, direction), t.double())
        assert torch.equal(round_directed(t.double(), torch.float32, direction), t)


def test_bad_direction_is_refused():
    with pytest.raises(ValueError, match="direction"):
        round_directed(torch.zeros(1), torch.float32, 2)
