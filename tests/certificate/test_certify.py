"""Certification on held-out data: counts, the bound, balanced classes, disjointness from the
optimisation data, δ split between candidates."""
from __future__ import annotations

import importlib

import pytest
from lid_helpers import cached_lid, certified_items, task0_spec, tasks

import lirpa_lid.certificate
from lirpa_lid.certificate.certify import certify, certify_all
from lirpa_lid.certificate.statistics import clopper_pearson_lower
from lirpa_lid.digest import digest_weights
from lirpa_lid.errors import SpecificationError


# ------------------------------------------------------------------------------ certify
def test_certify_counts_and_bound(setup):
    model, cand, held_out = setup
    cert = certify(model, cand, held_out, "CROWN", delta=0.05, exclude=tasks()[0].train)
    ok = certified_items(model, cand.domain, held_out, "CROWN")
    assert (cert.k, cert.n) == (int(ok.sum()), len(held_out))
    assert cert.bound == pytest.approx(clopper_pearson_lower(cert.k, cert.n, 0.05))
    assert cert.bound < cert.empirical <= 1
    assert "with probability >= 0.95" in cert.statement.lower() and "every weight vector" in cert.statement
    assert cert.reference_digest == digest_weights(cand.domain.reference)
    assert cert.held_out.startswith("checked") and cert.dtype == "float64"
    assert set(cert.versions) == {"lirpa_lid", "torch", "auto_LiRPA"}


def test_balanced_certificate_uses_per_class_bounds_and_a_union_bound(setup):
    model, cand, held_out = setup
    bal = task0_spec(0.5, split="val", name="balanced")
    bal = type(bal)(bal.x, bal.y, 6, 0.5, balanced=True, name="balanced")
    cert = certify(model, cand, bal, "CROWN", delta=0.1)
    assert set(cert.class_counts) == {0, 1}
    assert sum(n for _, n in cert.class_counts.values()) == cert.n
    expected = sum(clopper_pearson_lower(k, n, 0.05) for k, n in cert.class_counts.values()) / 2
    assert cert.bound == pytest.approx(expected)
    assert "union bound" in cert.statement


def test_held_out_items_must_be_disjoint_from_the_optimisation_set(setup):
    model, cand, _ = setup
    on_train = task0_spec(0.9, split="train")
    with pytest.raises(SpecificationError, match="also occur in the optimisation data"):
        certify(model, cand, on_train, exclude=on_train)


def test_certify_all_splits_delta(setup):
    model, cand, held_out = setup
    _, result = cached_lid("CROWN")
    certs = certify_all(model, result.candidates[:2], held_out, "CROWN", delta=0.05)
    assert [c.delta for c in certs] == [0.025, 0.025]


def test_names_moved_out_of_certify_still_import_from_it():
    """``lirpa_lid.certificate.certify`` held the whole package before the split; its names stay importable."""
    module = importlib.import_module("lirpa_lid.certificate.certify")  # the package attribute is the function
    for name in ("Certificate", "Verdict", "certify", "certify_all", "clopper_pearson_lower", "recheck",
                 "verify_update"):
        assert getattr(module, name) is getattr(lirpa_lid.certificate, name), name
