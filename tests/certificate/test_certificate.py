"""Certificates: Clopper–Pearson values, certification on held-out data, file round trip, and the
rejection of every kind of tampering by verify_update / recheck."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from lid_helpers import cached_lid, certified_items, task0_spec, tasks

from lirpa_lid import CertifiedAccuracy, InputError, Orthotope, VnnlibSpecification, load_onnx
from lirpa_lid.certificate.certify import (
    Certificate,
    certify,
    certify_all,
    clopper_pearson_lower,
    recheck,
    verify_update,
)
from lirpa_lid.datasets import data_dir
from lirpa_lid.digest import digest_weights
from lirpa_lid.errors import CertificateError, SpecificationError


# ------------------------------------------------------------------------------ statistics
def test_clopper_pearson_known_values():
    assert clopper_pearson_lower(100, 100, 0.05) == pytest.approx(0.05 ** (1 / 100), rel=1e-12)  # 0.970487
    assert clopper_pearson_lower(100, 100, 0.05) == pytest.approx(0.970487, abs=1e-6)
    assert clopper_pearson_lower(0, 50, 0.05) == 0.0
    # textbook: the exact two-sided 95% interval of 50/100 is (0.3983, 0.6017); its lower end is the
    # one-sided bound at delta = 0.025
    assert clopper_pearson_lower(50, 100, 0.025) == pytest.approx(0.398321, abs=1e-6)
    # k = 1: the lower bound solves 1 - (1 - p)^n = delta
    assert clopper_pearson_lower(1, 10, 0.05) == pytest.approx(1 - 0.95 ** (1 / 10), rel=1e-9)


@pytest.mark.parametrize("k, n", [(7, 20), (93, 100), (1, 3), (450, 457)])
def test_clopper_pearson_matches_scipy_binomtest(k, n):
    from scipy.stats import binomtest
    low = binomtest(k, n).proportion_ci(confidence_level=0.90, method="exact").low
    assert clopper_pearson_lower(k, n, 0.05) == pytest.approx(low, rel=1e-9)


@pytest.mark.parametrize("k, n, delta", [(5, 4, 0.05), (-1, 4, 0.05), (0, 0, 0.05), (2, 4, 0.0), (2, 4, 1.0)])
def test_clopper_pearson_bad_input(k, n, delta):
    with pytest.raises(InputError):
        clopper_pearson_lower(k, n, delta)


# ------------------------------------------------------------------------------ certify
@pytest.fixture(scope="module")
def setup():
    model, result = cached_lid("CROWN")
    cand = result.largest()
    held_out = task0_spec(cand.thresholds[0], split="val", name="task 0 held-out")
    return model, cand, held_out


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


# ------------------------------------------------------------------------------ tampering
@pytest.fixture()
def saved(setup, tmp_path):
    model, cand, held_out = setup
    path = certify(model, cand, held_out, "CROWN").save(tmp_path / "cert.json")
    return model, held_out, path


def _reasons(verdict):
    assert not verdict.ok and verdict.reasons
    return " ".join(verdict.reasons)


def test_model_inside_passes_and_model_outside_is_rejected(saved):
    model, held_out, path = saved
    cert = Certificate.load(path)
    corner = cert.domain.sample(1, generator=torch.Generator().manual_seed(0), corner_fraction=1.0)
    # Orthotope.sample rounds its float32 bounds to nearest, which can land one ulp outside the
    # float64 box; Orthotope.project rounds inwards
    inside = cert.domain.project({n: t[0] for n, t in corner.items()})
    moved = type(model)(*[torch.nn.Linear(m.in_features, m.out_features) if isinstance(m, torch.nn.Linear) else m
                          for m in model])
    with torch.no_grad():
        for n, p in moved.named_parameters():
            p.copy_(inside[n])
    assert verify_update(moved, cert).ok
    with torch.no_grad():
        moved[2].weight[0, 0] = cert.domain.reference["2.weight"][0, 0] + cert.domain.upper["2.weight"][0, 0] + 1e-3
    assert "not in the certified domain" in _reasons(verify_update(moved, cert))


def test_tampered_data_is_rejected(saved):
    model, held_out, path = saved
    x = held_out.x.clone()
    x[0, 0] += 1e-6
    assert "not the data the certificate was computed on" in _reasons(verify_update(model, path, (x, held_out.y)))
    y = held_out.y.clone()
    y[0] = 1 - y[0]
    assert "digest mismatch" in _reasons(recheck(path, model, (held_out.x, y)))


def test_tampered_domain_file_is_rejected(saved):
    model, held_out, path = saved
    dom_path = Certificate.domain_path(path)
    cert = Certificate.load(path)
    wider = Orthotope(cert.domain.reference, {n: t * 2 for n, t in cert.domain.lower.items()}, cert.domain.upper)
    wider.save(dom_path)
    assert "domain file" in _reasons(verify_update(model, path))
    # a Certificate loaded before the file was replaced also notices
    assert "domain file" in _reasons(verify_update(model, cert))
    dom_path.unlink()
    assert "missing" in _reasons(verify_update(model, path))


def test_tampered_json_is_rejected(saved):
    model, held_out, path = saved
    record = json.loads(path.read_text())
    record["bound"] = 0.999
    path.write_text(json.dumps(record))
    assert "modified after it was written" in _reasons(verify_update(model, path))
    # an editor who also recomputes the self-digest is caught by recomputing the bound ...
    record["certificate_sha256"] = Certificate._self_digest(record)
    path.write_text(json.dumps(record))
    assert "is not the Clopper-Pearson bound" in _reasons(verify_update(model, path))
    # ... and one who edits the counts consistently is caught by recheck, which recounts
    record["k"] = record["n"]
    record["bound"] = clopper_pearson_lower(record["n"], record["n"], record["delta"])
    record["certificate_sha256"] = Certificate._self_digest(record)
    path.write_text(json.dumps(record))
    assert verify_update(model, path).ok  # counts alone cannot be checked without the data ...
    assert "recomputed" in _reasons(recheck(path, model, held_out))


def test_swapped_reference_weights_are_rejected(saved):
    """A domain file replaced together with its recorded digest still fails the θ₀ digest."""
    import hashlib
    model, held_out, path = saved
    cert = Certificate.load(path)
    dom_path = Certificate.domain_path(path)
    other = Orthotope({n: t + 0.5 for n, t in cert.domain.reference.items()}, cert.domain.lower, cert.domain.upper)
    other.save(dom_path)
    record = json.loads(path.read_text())
    record["domain_sha256"] = hashlib.sha256(dom_path.read_bytes()).hexdigest()
    record["certificate_sha256"] = Certificate._self_digest(record)
    path.write_text(json.dumps(record))
    assert "reference weights" in _reasons(verify_update(model, path))


def test_changed_parameters_outside_the_domain_are_rejected(setup, tmp_path):
    model, cand, held_out = setup
    sub = Orthotope({"2.weight": cand.domain.reference["2.weight"]}, {"2.weight": cand.domain.lower["2.weight"]},
                    {"2.weight": cand.domain.upper["2.weight"]})
    cert = certify(model, sub, held_out, "CROWN")
    assert verify_update(model, cert).ok
    with torch.no_grad():
        model[0].bias[0] += 0.1
    try:
        assert "outside the domain" in _reasons(verify_update(model, cert))
        assert "outside the domain" in _reasons(recheck(cert, model, held_out))
    finally:
        with torch.no_grad():
            model[0].bias[0] -= 0.1


# ------------------------------------------------------------------------------ local robustness and VNN-LIB
def test_local_robustness_certificate_records_epsilon_and_recheck_rebuilds_the_balls(setup, tmp_path):
    model, cand, _ = setup
    val = tasks()[0].val
    robust = CertifiedAccuracy(val.x, val.y, 6, 0.5, epsilon=0.2, name="robust held-out")
    plain = CertifiedAccuracy(val.x, val.y, 6, 0.5, name="plain held-out")
    cert = certify(model, cand, robust, "CROWN", delta=0.05, exclude=tasks()[0].train)
    assert cert.kind == "local_robustness" and cert.spec["epsilon"] == 0.2 and "robust accuracy" in cert.statement
    assert cert.k <= certify(model, cand, plain, "CROWN").k                 # balls are harder than points
    assert cert.k == int(certified_items(model, cand.domain, robust, "CROWN").sum())
    path = cert.save(tmp_path / "robust.json")
    assert recheck(path, model, (val.x, val.y)).ok                          # ε comes from the record
    assert recheck(path, model, plain).ok                                  # a spec's own ε is not trusted
    assert verify_update(model, path, (val.x, val.y)).ok


def test_vnnlib_certificate_is_deterministic_and_rechecks_the_recorded_file(tmp_path):
    bench = data_dir(must_exist=False) / "vnncomp2022" / "acasxu"
    if not (bench / "onnx").is_dir():
        pytest.skip("ACAS Xu data not found")
    net = load_onnx(bench / "onnx" / "ACASXU_run2a_2_4_batch_2000.onnx")
    prop_file = tmp_path / "prop_3.vnnlib"
    shutil.copy(bench / "vnnlib" / "prop_3.vnnlib", prop_file)
    spec = VnnlibSpecification.from_files(prop_file, net.input_shape)
    domain = Orthotope.around(net.module, lower=1e-6)
    with pytest.raises(InputError, match="held-out items; a VNN-LIB specification has none"):
        certify(net.module, domain, spec, exclude=(torch.zeros(1, 5), torch.zeros(1)))
    cert = certify(net.module, domain, spec, "CROWN", delta=0.3)
    assert (cert.k, cert.n, cert.bound, cert.delta) == (1, 1, 1.0, 0.0) and cert.guarantee == "deterministic"
    assert "Deterministic (no sampling)" in cert.statement and "VNN-LIB" in cert.summary()
    path = cert.save(tmp_path / "c.json")
    loaded = Certificate.load(path)
    assert loaded.guarantee == "deterministic" and json.loads(path.read_text())["guarantee"] == "deterministic"
    assert recheck(path, net.module).ok and recheck(path, net.module, spec).ok
    assert verify_update(net.module, path, spec).ok
    with pytest.raises(InputError, match="takes a VnnlibSpecification"):
        recheck(path, net.module, (torch.zeros(1, 5), torch.zeros(1)))
    prop_file.write_text(prop_file.read_text() + "\n; edited\n")
    assert "changed since the certificate was written" in _reasons(recheck(path, net.module))
    prop_file.unlink()
    assert "not available" in _reasons(recheck(path, net.module))
    record = json.loads(path.read_text())
    record["bound"] = 0.5
    record["certificate_sha256"] = Certificate._self_digest(record)
    path.write_text(json.dumps(record))
    assert "is not k/n of the recorded counts" in _reasons(verify_update(net.module, path))


def test_negative_zero_digests_like_zero():
    """ONNX round trips turn -0.0 into 0.0; the certified values are the same."""
    a = {"w": torch.tensor([0.0, 1.0])}
    b = {"w": torch.tensor([-0.0, 1.0])}
    assert digest_weights(a) == digest_weights(b)
