"""`lirpa-lid certify` with input splitting (``lid.refine``): exit 0 when splitting certifies at θ₀, exit 1
with status ``falsified`` and the counterexample for a false property, exit 2 with one line for bad
``lid.refine`` / ``lid.split`` values. The tiny network and property are those of
``tests/pipeline/test_refinement.py``."""
from __future__ import annotations

import json

import pytest
from refine_helpers import write_case

from lirpa_lid.cli.app import main


def test_split_certified_exits_0_and_falsified_exits_1(tmp_path, capsys):
    out = tmp_path / "ok"
    assert main(["certify", str(write_case(tmp_path / "a", -0.1)), "-o", str(out), "--quiet"]) == 0
    assert json.loads((out / "results.json").read_text())["decided_by"]["how"] == "split"
    out = tmp_path / "false"
    capsys.readouterr()
    assert main(["certify", str(write_case(tmp_path / "b", 0.3)), "-o", str(out)]) == 1
    assert capsys.readouterr().out.startswith("falsified: input splitting falsified the property")
    report = json.loads((out / "results.json").read_text())
    assert report["status"] == "falsified" and len(report["counterexample"]["x"]) == 2


@pytest.mark.parametrize("lid, fragment", [
    ("  refine: milp\n", "lid.refine must be one of ['none', 'split', 'bab'], got 'milp'"),
    ("  split:\n    max_boxes: 0\n", "lid.split.max_boxes must be >= 1, got 0"),
    ("  split:\n    branchin: widest\n", "unknown key 'branchin' in lid.split (did you mean 'branching'?)"),
])
def test_bad_refine_values_exit_2_with_one_line(tmp_path, capsys, lid, fragment):
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["certify", str(write_case(tmp_path, -0.1, lid)), "-o", str(out)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and captured.out == "", captured.err
    assert not out.exists()
