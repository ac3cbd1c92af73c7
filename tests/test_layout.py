"""A certificate written before the package moved into sub-packages (``fixtures/pre_layout``, made by
``make_fixture.py`` with that code) is still verified and rechecked: the certificate file format, the
domain file and the digests did not change with the layout."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lirpa_lid import Certificate, recheck, verify_update

FIXTURE = Path(__file__).parent / "fixtures" / "pre_layout"


def _model() -> nn.Module:
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 6)).double()
    model.load_state_dict(torch.load(FIXTURE / "model.pt"))
    return model


def _held_out() -> tuple[torch.Tensor, torch.Tensor]:
    data = torch.load(FIXTURE / "held_out.pt")
    return data["x"], data["y"]


def test_pre_layout_certificate_verifies_and_rechecks():
    model, data = _model(), _held_out()
    cert = Certificate.load(FIXTURE / "certificate.json")
    assert (cert.k, cert.n, cert.method) == (76, 93, "CROWN")
    assert verify_update(model, cert, data)
    verdict = recheck(cert, model, data)
    assert verdict, verdict.reasons
    assert verdict.details["k"] == 76


def test_pre_layout_certificate_rejects_a_model_outside_its_domain():
    model = _model()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    verdict = verify_update(model, FIXTURE / "certificate.json", _held_out())
    assert not verdict and any("not in the certified domain" in r for r in verdict.reasons)
