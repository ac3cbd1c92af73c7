"""Input splitting before giving up at θ₀ (``pipeline/refinement.py`` inside ``run_problem``), on a tiny ReLU
network computing ``y = |z| − 0.9·z``, ``z = x0 + x1/2``, over ``x0 ∈ [−1, 2]``, ``x1 ∈ [−1, 1]``.

"y > −0.1 everywhere" holds, but CROWN alone cannot prove it (``y ≥ −0.15``): splitting verifies it and a
LID is grown on the split specification, whose certificate checks and holds under sampled weights and
inputs. "y > 0.3 everywhere" is false: splitting finds a real counterexample (status ``falsified``).
``lid.refine: none`` keeps the old outcome, ``not-certified-at-theta0``; a tiny budget leaves it undecided.
"""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from refine_helpers import LOWER, UPPER, write_case
from torch.func import functional_call, vmap

from lirpa_lid.certificate import Certificate, recheck, verify_update
from lirpa_lid.errors import SpecificationError
from lirpa_lid.pipeline import OutcomeStatus, build_problem, load_config, parse_config, run_problem, write_outcome
from lirpa_lid.pipeline.config import SplitSettings
from lirpa_lid.pipeline.refinement import lid_time_left, split_seconds
from lirpa_lid.specification.vnnlib.parse import parse_vnnlib


def sampled_violations(net, domain, prop, n: int = 2000, seed: int = 0) -> int:
    """(weights, input) pairs, half the weights vertices of the domain, that violate the property."""
    net64, dom = copy.deepcopy(net).double(), domain.to(dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    weights = dom.sample(n, generator=g, corner_fraction=0.5)
    lo, up = torch.from_numpy(LOWER), torch.from_numpy(UPPER)
    x = lo + torch.rand(n, 2, generator=g, dtype=torch.float64) * (up - lo)
    x[: n // 8] = torch.tensor([-0.5, 1.0], dtype=torch.float64)   # z = 0, y = 0: the tightest point
    y = vmap(lambda w, xi: functional_call(net64, w, (xi[None],))[0])(weights, x)
    return int(prop.is_counterexample(x.numpy(), y.detach().numpy()).sum())


@pytest.fixture(scope="module")
def verified(tmp_path_factory):
    folder = tmp_path_factory.mktemp("verified")
    problem = build_problem(load_config(write_case(folder, -0.1)))
    outcome = run_problem(problem)
    written = write_outcome(outcome, folder / "out")
    return folder, problem, outcome, written


def test_crown_fails_unsplit_and_splitting_gives_a_certified_lid(verified):
    folder, problem, outcome, _ = verified
    assert problem.base_value == 0.0                         # CROWN alone: not certified at theta0
    assert outcome.status is OutcomeStatus.CERTIFIED and outcome.ok
    cert = outcome.certificate
    assert (cert.k, cert.n) == (1, 1) and float(cert.domain.mean_width()) > 1e-4
    assert cert.spec["name"].endswith("(input split)")
    assert cert.spec["properties"][0]["path"] == str((folder / "prop.vnnlib").resolve())   # original source kept
    assert outcome.refinement.verdict == "verified" and outcome.refinement.leaves > 1
    assert set(outcome.seconds) == {"theta0", "split", "lid", "certify", "total"}


def test_split_certificate_verifies_and_holds_under_sampling(verified):
    folder, problem, outcome, _ = verified
    cert = Certificate.load(folder / "out" / "certificate.json")
    assert verify_update(problem.model, cert).ok
    assert recheck(cert, problem.model, outcome.refinement.spec).ok
    # known limit: recheck without the split specification re-reads the original file, whose digest differs
    assert not recheck(cert, problem.model).ok
    assert sampled_violations(problem.model, cert.domain, parse_vnnlib(folder / "prop.vnnlib")) == 0


def test_results_record_how_theta0_was_decided(verified):
    folder, _, _, written = verified
    report = json.loads((folder / "out" / "results.json").read_text())
    assert report["status"] == "certified"
    how = report["decided_by"]
    assert how["how"] == "split" and how["verdict"] == "verified" and how["leaves"] > 1
    assert how["properties"][0]["status"] == "verified" and "counterexample" not in report
    # alpha,beta-CROWN gets the original property (the split one is the same set, in many boxes)
    rows = (folder / "out" / "instances.csv").read_text().splitlines()
    assert len(rows) == 1 and parse_vnnlib(folder / "out" / rows[0].split(",")[1]).disjuncts[0].C.shape == (1, 1)


def test_false_property_is_falsified_with_a_real_counterexample(tmp_path):
    problem = build_problem(load_config(write_case(tmp_path, 0.3)))
    outcome = run_problem(problem)
    assert outcome.status is OutcomeStatus.FALSIFIED and outcome.status == "falsified" and not outcome.ok
    assert outcome.certificate is None and "counterexample" in outcome.message
    write_outcome(outcome, tmp_path / "out")
    report = json.loads((tmp_path / "out" / "results.json").read_text())
    assert report["status"] == "falsified" and report["decided_by"]["verdict"] == "falsified"
    x, y = np.array(report["counterexample"]["x"]), np.array(report["counterexample"]["y"])
    assert (x >= LOWER).all() and (x <= UPPER).all()
    with torch.no_grad():
        y64 = copy.deepcopy(problem.model).double()(torch.from_numpy(x)[None])[0].numpy()
    np.testing.assert_allclose(y64, y, rtol=0, atol=1e-12)
    assert y64[0] <= 0.3 and parse_vnnlib(tmp_path / "prop.vnnlib").is_counterexample(x, y64)
    assert not (tmp_path / "out" / "certificate.json").exists()


def test_refine_none_keeps_not_certified_at_theta0(tmp_path):
    problem = build_problem(load_config(write_case(tmp_path, -0.1, "  refine: none\n")))
    assert problem.refine is None
    outcome = run_problem(problem)
    assert outcome.status is OutcomeStatus.NOT_CERTIFIED_AT_THETA0 and outcome.refinement is None
    assert "may still verify it" in outcome.message and set(outcome.seconds) == {"theta0", "total"}
    assert outcome.summary()["decided_by"] == {"how": "bounds"}


def test_a_tiny_budget_leaves_it_undecided(tmp_path):
    problem = build_problem(load_config(write_case(tmp_path, -0.1, "  split:\n    max_boxes: 2\n")))
    outcome = run_problem(problem)
    assert outcome.status is OutcomeStatus.NOT_CERTIFIED_AT_THETA0 and outcome.certificate is None
    assert "undecided after" in outcome.message and outcome.refinement.verdict == "undecided"


def test_certified_at_theta0_is_decided_by_bounds(tmp_path):
    outcome = run_problem(build_problem(load_config(write_case(tmp_path, -3.0))))
    assert outcome.status is OutcomeStatus.CERTIFIED and outcome.refinement is None
    assert outcome.summary()["decided_by"] == {"how": "bounds"} and "split" not in outcome.seconds


# ------------------------------------------------------------------------------ configuration and budget
ACAS = {"model": {"onnx_path": "net.onnx"}, "specification": {"vnnlib_path": "prop.vnnlib"}}


def test_refine_settings_parse_with_defaults():
    assert parse_config(ACAS).lid.refine_kind == "split" and parse_config(ACAS).lid.split == SplitSettings()
    cfg = parse_config({**ACAS, "lid": {"refine": "bab", "split": {"max_boxes": 50, "time_limit": 5,
                                                                   "branching": "widest", "share": 0.25}}})
    assert cfg.lid.refine_kind == "split"
    assert cfg.lid.split == SplitSettings(max_boxes=50, time_limit=5.0, branching="widest", share=0.25)
    assert parse_config({**ACAS, "lid": {"refine": "none"}}).lid.refine_kind == "none"


@pytest.mark.parametrize("lid, message", [
    ({"refine": "milp"}, r"lid.refine must be one of \['none', 'split', 'bab'\], got 'milp'"),
    ({"split": {"max_box": 5}}, r"unknown key 'max_box' in lid.split \(did you mean 'max_boxes'\?\)"),
    ({"split": {"branching": "random"}}, r"lid.split.branching must be one of \['gradient', 'widest'\]"),
    ({"split": {"share": 1.5}}, r"lid.split.share must be <= 1.0"),
    ({"split": {"time_limit": 0}}, r"lid.split.time_limit must be > 0.0"),
    ({"split": 3}, r"lid.split must be a mapping"),
])
def test_bad_refine_settings_are_named(lid, message):
    with pytest.raises(SpecificationError, match=message):
        parse_config({**ACAS, "lid": lid})


def test_refine_split_is_rejected_for_item_specifications():
    items = {"model": {"name": "mlp(sizes=[784, 10])"}, "data": {"dataset": "MNIST"},
             "specification": {"type": "lp", "epsilon": 0.01}, "lid": {"threshold": 0.5, "refine": "split"}}
    with pytest.raises(SpecificationError, match="vnnlib specifications only"):
        parse_config(items)
    items["lid"]["refine"] = "none"
    assert parse_config(items).lid.refine == "none"


def test_the_row_timeout_is_shared_between_splitting_and_the_lid():
    from lirpa_lid.lid import LIDConfig

    s = SplitSettings(time_limit=60.0, share=0.5)
    assert split_seconds(s, None) == 60.0 and split_seconds(s, 116.0) == 58.0 and split_seconds(s, 200.0) == 60.0
    cfg = LIDConfig(time_limit=116.0)
    assert lid_time_left(cfg, 116.0, 50.0).time_limit == 66.0
    assert lid_time_left(cfg, 116.0, 200.0).time_limit == 0.5
    assert lid_time_left(LIDConfig(), None, 50.0).time_limit is None
