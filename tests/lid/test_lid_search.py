"""The scale search with grouped settings (ScaleSearch) is the keyword form's, and the LID shrinks and grows
its snapshots with the settings its config gives (float32 search, float64 values)."""
from __future__ import annotations

import torch
from lid_helpers import QUICK, task0_spec, trained_mlp

import lirpa_lid.margin as margin
from lirpa_lid import Orthotope, bounded_network
from lirpa_lid.lid import LIDConfig
from lirpa_lid.lid.search import (
    ScaleSearch,
    grow_snapshot,
    largest_scale,
    scaled_box,
    search_dtype,
    search_scale,
    shrink_snapshot,
)
from lirpa_lid.margin import compute_margins, hard_values


def test_the_search_is_one_function_importable_from_margin_and_lid():
    assert margin.largest_scale is largest_scale and margin.scaled_box is scaled_box
    assert margin.ScaleSearch is ScaleSearch and margin.search_scale is search_scale


def test_ladder_climbs_when_growing_and_probes_high_when_shrinking():
    assert ScaleSearch(high=17.0, low=1.0).ladder() == [2.0, 3.0, 5.0, 9.0, 17.0]
    assert ScaleSearch(high=0.5).ladder() == [0.5]


def test_settings_object_and_keywords_search_alike():
    model, spec = trained_mlp(), task0_spec()
    net = bounded_network(model)
    box, limit = Orthotope.around(model, lower=0.02), Orthotope.around(model, lower=0.05)
    for kwargs in [{}, {"high": 8.0, "low": 1.0, "within": limit}, {"steps": 3, "search_dtype": torch.float32}]:
        assert search_scale(net, [spec], box, "IBP", ScaleSearch(**kwargs)) == \
            largest_scale(net, [spec], box, "IBP", **kwargs)


def test_snapshots_shrink_and_grow_with_the_configs_settings():
    model, spec = trained_mlp(), task0_spec()
    net = bounded_network(model)
    cfg = LIDConfig(**{**QUICK, "method": "IBP", "certify_method": "CROWN", "grow": 8.0, "shrink_steps": 5})
    assert search_dtype(torch.float64) is torch.float32 and search_dtype(torch.float32) is None
    small, limit = Orthotope.around(model, lower=0.02), Orthotope.around(model, lower=0.05)
    grown = grow_snapshot(net, [spec], small, cfg, torch.float64, limit)
    assert grown == largest_scale(net, [spec], small, "CROWN", 5, 8.0, low=1.0, within=limit,
                                  search_dtype=torch.float32, batch_size=cfg.batch_size)
    assert grown[0] > 1 and grown[1] == hard_values(net, [spec], scaled_box(small, grown[0], limit), "CROWN")
    big = Orthotope.around(model, lower=0.2)
    margins = [compute_margins(net, spec, big, "CROWN", dtype=torch.float64)]
    assert hard_values(net, [spec], big, "CROWN")[0] < spec.threshold
    shrunk = shrink_snapshot(net, [spec], big, margins, cfg, torch.float64)
    assert shrunk == largest_scale(net, [spec], big, "CROWN", 5, known=margins, search_dtype=torch.float32)
    assert 0 < shrunk[0] < 1 and shrunk[1][0] >= spec.threshold
