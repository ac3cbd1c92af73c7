"""LIDConfig holds parsed bound methods (names accepted, compared as enums, reported as strings), bound
plans build configs, the loop's progress bar comes from the one factory, and the names that moved out of
``lid/solve.py`` keep importing from their old places."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
from lid_helpers import QUICK, task0_spec, trained_mlp

import lirpa_lid.lid.solve as solve
from lirpa_lid.bounds.core import BoundMethod
from lirpa_lid.errors import InputError
from lirpa_lid.lid import LIDConfig, bound_plan, compute_lid, compute_lid_pool, method_label, with_config


def test_methods_are_parsed_once_into_bound_methods():
    cfg = LIDConfig(method="crown-ibp", certify_method="alpha_crown")
    assert cfg.method is BoundMethod.CROWN_IBP and cfg.certify_method is BoundMethod.ALPHA_CROWN
    assert cfg.final_method is BoundMethod.ALPHA_CROWN
    assert LIDConfig().method is BoundMethod.CROWN and LIDConfig().certify_method is None
    assert LIDConfig().final_method is BoundMethod.CROWN
    assert LIDConfig(method=BoundMethod.IBP).method is BoundMethod.IBP
    assert LIDConfig(method="ibp") == LIDConfig(method="IBP") == LIDConfig(method=BoundMethod.IBP)
    assert with_config(cfg, method="ibp").method is BoundMethod.IBP  # replace() parses again
    assert replace(cfg, certify_method=None).final_method is BoundMethod.CROWN_IBP
    with pytest.raises(InputError, match="unknown bound method 'magic'.*CROWN"):
        with_config(cfg, certify_method="magic")


def test_configs_are_reported_with_method_names():
    cfg = LIDConfig(**bound_plan("ibp+crown"))
    assert cfg.describe()["method"] == "IBP" and cfg.describe()["certify_method"] == "CROWN"
    assert all(type(v) is not BoundMethod for v in cfg.describe().values())
    assert json.loads(json.dumps(cfg.describe()))["method"] == "IBP"
    assert method_label(cfg) == "IBP → CROWN ×4" and method_label(LIDConfig(method="alpha-crown")) == "alpha-CROWN"


def test_the_loop_uses_the_progress_bar_factory(monkeypatch):
    made = []
    real = solve.progress_bar

    def recording(*args, **kwargs):
        made.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(solve, "progress_bar", recording)
    compute_lid(trained_mlp(), task0_spec(0.9), LIDConfig(**{**QUICK, "iterations": 3, "method": "ibp"}))
    assert made == [{"total": 3, "desc": "LID (IBP)", "leave": False, "enabled": False}]


def test_pooled_runs_are_labelled_with_method_names():
    cfgs = [LIDConfig(**{**QUICK, "iterations": 4, "snapshot_every": 2, "method": m}) for m in ("ibp", "crown")]
    pool = compute_lid_pool(trained_mlp(), task0_spec(0.9), cfgs)
    assert {c.label for c in pool.candidates} == {"run 0: IBP, tau=0.9", "run 1: CROWN, tau=0.9"}
    assert {c.method for c in pool.candidates} == {"IBP", "CROWN"}
    assert all(type(c.method) is str for c in pool.candidates)


def test_names_that_moved_still_import_from_their_old_places():
    from lirpa_lid.lid import candidates, config, plans, problem
    from lirpa_lid.lid.solve import (
        GROW,
        HISTORY_KEYS,
        OBJECTIVES,
        Candidate,
        LIDProblem,
        LIDResult,
        bound_plans,
        plan_label,
    )
    assert (Candidate, LIDResult) == (candidates.Candidate, candidates.LIDResult)
    assert (LIDConfig, OBJECTIVES) == (config.LIDConfig, config.OBJECTIVES)
    assert (GROW, bound_plans, plan_label) == (plans.GROW, plans.bound_plans, plans.plan_label)
    assert LIDProblem is problem.LIDProblem and "rollbacks" in HISTORY_KEYS
    import lirpa_lid
    for name in ("Candidate", "LIDConfig", "LIDResult", "bound_plan", "compute_lid", "compute_lid_pool",
                 "method_label"):
        assert getattr(lirpa_lid, name) is getattr(lirpa_lid.lid, name)
