"""The demo and the command line: a quick run writes its outputs; exit codes."""
from __future__ import annotations

import json

import pytest

from lirpa_lid import InputError
from lirpa_lid.certificate.certify import Certificate
from lirpa_lid.cli.app import main


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    code = main(["demo", "-o", str(out), "--quick", "--quiet"])
    return out, code


def test_quick_demo_writes_table_certificates_and_figure(quick_run):
    out, code = quick_run
    assert code == 0
    names = {p.name for p in out.iterdir()}
    assert {"results.md", "results.json", "decision_boundaries.png", "certificate_task0.json",
            "certificate_task0.domain.pt"} <= names
    report = json.loads((out / "results.json").read_text())
    assert report["all_verified"] and not report["sgd_model_covered_by_task0_certificate"]
    lid_rows = [r for r in report["rows"] if r["learner"] == "PGD w/ LID"]
    sgd_rows = [r for r in report["rows"] if r["learner"] == "SGD"]
    # the LID learner keeps task 0 at least as well as SGD after the last task
    assert lid_rows[-1]["accuracy"][0] >= sgd_rows[-1]["accuracy"][0]
    table = (out / "results.md").read_text()
    assert table.startswith("| stage | learner |") and "PGD w/ LID" in table
    cert = Certificate.load(out / "certificate_task0.json")
    assert cert.method == "CROWN" and 0 <= cert.bound <= 1
    assert (out / "decision_boundaries.png").read_bytes()[:4] == b"\x89PNG"


def test_json_output(tmp_path, capsys):
    code = main(["demo", "-o", str(tmp_path), "--quick", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == (0 if report["all_verified"] else 1)
    assert len(report["rows"]) == 6


def test_exit_codes(monkeypatch, capsys):
    assert main([]) == 2
    assert main(["no-such-command"]) == 2
    assert main(["--version"]) == 0

    def bad(*a, **k):
        raise InputError("something the user gave is wrong")
    monkeypatch.setattr("lirpa_lid.pipeline.demo.run_demo", bad)
    assert main(["demo", "--quiet"]) == 2
    assert "something the user gave is wrong" in capsys.readouterr().err
