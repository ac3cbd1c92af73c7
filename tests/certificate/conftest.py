"""Fixtures of the certificate tests: a small trained MLP with its LID (largest candidate) and task 0's
held-out specification; a certificate of it saved to a file."""
from __future__ import annotations

import pytest
from lid_helpers import cached_lid, task0_spec

from lirpa_lid.certificate.certify import certify


@pytest.fixture(scope="module")
def setup():
    model, result = cached_lid("CROWN")
    cand = result.largest()
    held_out = task0_spec(cand.thresholds[0], split="val", name="task 0 held-out")
    return model, cand, held_out


@pytest.fixture()
def saved(setup, tmp_path):
    model, cand, held_out = setup
    path = certify(model, cand, held_out, "CROWN").save(tmp_path / "cert.json")
    return model, held_out, path
