"""The certificate file: round trip, writes that leave nothing partial behind, malformed files."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from lirpa_lid.certificate.certify import certify
from lirpa_lid.certificate.check import recheck, verify_update
from lirpa_lid.certificate.record import Certificate
from lirpa_lid.certificate.statistics import Guarantee
from lirpa_lid.errors import CertificateError


# ------------------------------------------------------------------------------ files
def test_save_load_round_trip(setup, tmp_path):
    model, cand, held_out = setup
    cert = certify(model, cand, held_out, "CROWN")
    path = cert.save(tmp_path / "cert.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cert.domain.pt", "cert.json"]
    loaded = Certificate.load(path)
    for field in ("spec", "reference_digest", "frozen_digest", "data_digest", "method", "n", "k", "bound",
                  "delta", "balanced", "statement", "versions", "created", "held_out", "label"):
        assert getattr(loaded, field) == getattr(cert, field), field
    for n in cand.domain.names:
        assert torch.equal(loaded.domain.lower[n], cert.domain.lower[n])
        assert torch.equal(loaded.domain.reference[n], cert.domain.reference[n])
    assert verify_update(model, path, held_out).ok
    assert recheck(path, model, held_out).ok


def test_failed_save_leaves_nothing(setup, tmp_path, monkeypatch):
    model, cand, held_out = setup
    cert = certify(model, cand, held_out, "CROWN")

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(json, "dump", boom)
    with pytest.raises(OSError):
        cert.save(tmp_path / "cert.json")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content, message", [
    ("not json", "not a JSON certificate"), ('{"format": "other"}', "not a lirpa_lid certificate"),
    ('{"format": "lirpa_lid.certificate/1"}', "missing field"),
])
def test_malformed_files(tmp_path, content, message):
    (tmp_path / "c.json").write_text(content)
    with pytest.raises(CertificateError, match=message):
        Certificate.load(tmp_path / "c.json")
    assert not verify_update(torch.nn.Linear(1, 1), tmp_path / "c.json").ok
    with pytest.raises(CertificateError, match="does not exist"):
        Certificate.load(tmp_path / "missing.json")


def _boom(*a, **k):
    raise OSError("disk full")


def test_a_failed_save_keeps_an_earlier_certificate(saved, monkeypatch):
    """The domain file is staged before the JSON fails: neither the earlier pair nor a staged file changes."""
    _, _, path = saved
    before = {p.name: p.read_bytes() for p in path.parent.iterdir()}
    cert = Certificate.load(path)
    cert.label = "second"
    monkeypatch.setattr(json, "dump", _boom)
    with pytest.raises(OSError):
        cert.save(path)
    assert {p.name: p.read_bytes() for p in path.parent.iterdir()} == before
    assert Certificate.load(path).label == ""


def test_saving_again_replaces_the_pair_and_leaves_no_staged_files(setup, tmp_path):
    model, cand, held_out = setup
    first, second = certify(model, cand, held_out, "CROWN"), certify(model, cand, held_out, "IBP")
    path = first.save(tmp_path / "cert.json")
    second.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cert.domain.pt", "cert.json"]
    loaded = Certificate.load(path)
    assert (loaded.method, loaded.k) == ("IBP", second.k)
    assert verify_update(model, path, held_out).ok


def test_domain_files_of_one_domain_are_identical(setup, tmp_path):
    """The domain file's bytes depend on the domain only (not on temporary file names), so its SHA-256 does."""
    model, cand, held_out = setup
    cert = certify(model, cand, held_out, "CROWN")
    a, b = cert.save(tmp_path / "a.json"), cert.save(tmp_path / "b.json")
    assert Certificate.domain_path(a).read_bytes() == Certificate.domain_path(b).read_bytes()
    assert Certificate.load(a).domain_sha256 == Certificate.load(b).domain_sha256


def test_guarantee_is_an_enum_and_the_file_records_its_value(setup, tmp_path):
    model, cand, held_out = setup
    cert = certify(model, cand, held_out, "CROWN")
    assert cert.guarantee is Guarantee.FINITE_SAMPLE
    path = cert.save(tmp_path / "cert.json")
    assert json.loads(path.read_text())["guarantee"] == "finite-sample"
    assert Certificate.load(path).guarantee is Guarantee.FINITE_SAMPLE
    assert dataclasses.replace(cert, guarantee="deterministic").guarantee is Guarantee.DETERMINISTIC


def test_unknown_or_missing_guarantee_in_a_file(saved):
    _, _, path = saved
    record = json.loads(path.read_text())
    del record["guarantee"]  # files written before the guarantee was recorded are finite-sample
    record["certificate_sha256"] = Certificate._self_digest(record)
    path.write_text(json.dumps(record))
    assert Certificate.load(path).guarantee is Guarantee.FINITE_SAMPLE
    record["guarantee"] = "probably"
    record["certificate_sha256"] = Certificate._self_digest(record)
    path.write_text(json.dumps(record))
    with pytest.raises(CertificateError, match="unknown guarantee 'probably'"):
        Certificate.load(path)
