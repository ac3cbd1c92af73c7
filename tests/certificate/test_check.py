"""Checks by recomputation: verify_update / recheck reject every kind of tampering; local robustness
and VNN-LIB certificates are rechecked from their records."""
from __future__ import annotations

import copy
import json
import shutil

import pytest
import torch
from lid_helpers import certified_items, tasks

from lirpa_lid import CertifiedAccuracy, InputError, Orthotope, VnnlibSpecification, load_onnx
from lirpa_lid.certificate.certify import certify
from lirpa_lid.certificate.check import recheck, verify_update
from lirpa_lid.certificate.record import Certificate
from lirpa_lid.certificate.statistics import Guarantee, clopper_pearson_lower
from lirpa_lid.datasets import data_dir
from lirpa_lid.digest import digest_weights


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
    assert cert.guarantee is loaded.guarantee is Guarantee.DETERMINISTIC
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


def test_a_changed_tensor_outside_the_domain_is_named_with_its_change(setup, tmp_path):
    """verify_update and recheck name the frozen tensor that changed and bound its change (issue 26, 7)."""
    model, cand, held_out = setup
    names = [n for n, _ in model.named_parameters()]
    partial = Orthotope.around(model, [names[0]], lower=0.0, upper=0.0)  # every other tensor is frozen
    path = certify(model, partial, held_out, "IBP").save(tmp_path / "cert.json")
    changed = copy.deepcopy(model)
    frozen = names[-1]
    with torch.no_grad():
        changed.get_parameter(frozen).mul_(1.5)
    verdict = verify_update(changed, path, held_out)
    reason = next(r for r in verdict.reasons if "differ from the certified model" in r)
    assert f"{frozen} (changed; L2 norm" in reason and "so the change has L2 norm >=" in reason
    assert not any(n in reason for n in names[1:-1])
    assert any(frozen in r for r in recheck(path, changed, held_out).reasons)
    assert verify_update(model, path, held_out)  # unchanged: passes, nothing named
