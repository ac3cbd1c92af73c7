"""The `lirpa-lid` command line: help texts, certify on shipped and written specification files, exit
codes 0 / 1 / 2, bad input → one message line and no output files, instances.csv batch runs with
timeouts, bounds, project / verify-update with state dicts, and the reproduce dispatcher."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import torch

from lirpa_lid import Certificate, parse_vnnlib
from lirpa_lid.cli.app import main
from lirpa_lid.datasets import data_dir

HERE = Path(__file__).resolve().parents[1]  # tests/
SPECS = HERE.parent / "specs"
ACAS = data_dir(must_exist=False) / "vnncomp2022" / "acasxu"
ROBUST = """
model:
  name: Customized("abcrown_custom", "separable_model", width=16)
data:
  dataset: Customized("abcrown_custom", "separable_data", n=60)
  num_outputs: 2
specification:
  type: lp
  epsilon: 0.05
lid:
  threshold: 0.9
  required: 0.5
  iterations: 20
  snapshot_every: 5
  primal_lr: 0.5
  dual_lr: 0.1
  held_out: 0.5
"""


def _acas() -> Path:
    if not (ACAS / "onnx").is_dir():
        pytest.skip(f"VNN-COMP 2022 ACAS Xu data not found under {ACAS}")
    return ACAS


def _spec_file(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    shutil.copy(HERE / "abcrown_custom.py", tmp_path / "abcrown_custom.py")
    f = tmp_path / name
    f.write_text(text)
    return f


def _bad_input(capsys, argv: list[str], fragment: str, outdir: Path | None = None) -> str:
    """Exit 2, one line on stderr containing ``fragment``, nothing on stdout, no output directory."""
    capsys.readouterr()
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], captured.err
    assert lines[0].startswith(f"lirpa-lid {argv[0]}: error: ")
    if outdir is not None:
        assert not outdir.exists()
    return lines[0]


# ------------------------------------------------------------------------------ help
@pytest.mark.parametrize("command, fragment", [
    ("certify", "--instances"), ("bounds", "--param-eps"), ("project", "--output"),
    ("verify-update", "--recheck"), ("demo", "--quick"), ("reproduce", "--dir"),
])
def test_every_command_has_help(capsys, command, fragment):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert fragment in out and "--quiet" in out or command == "reproduce"


def test_usage_errors_exit_2(capsys):
    assert main([]) == 2
    assert main(["certify"]) == 2          # missing CONFIG: argparse's usage error
    assert main(["frobnicate"]) == 2


# ------------------------------------------------------------------------------ certify
@pytest.fixture(scope="module")
def blobs_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("blobs") / "out"
    code = main(["certify", str(SPECS / "blobs_accuracy.yaml"), "-o", str(out), "--quiet"])
    return code, out


def test_shipped_blobs_spec_certifies_end_to_end(blobs_run):
    code, out = blobs_run
    assert code == 0
    assert {p.name for p in out.iterdir()} == {"certificate.json", "certificate.domain.pt", "results.json",
                                               "results.md"}
    report = json.loads((out / "results.json").read_text())
    cert = Certificate.load(out / "certificate.json")
    assert report["status"] == "certified" and report["bound"] == cert.bound >= report["required"] == 0.8
    assert cert.kind == "certified_accuracy" and cert.held_out.startswith("checked")
    assert report["threshold"] == pytest.approx(min(max(report["base_value"] - 0.1, report["base_value"] / 2), 0.9))
    assert cert.model["source"].startswith("Customized(")
    assert "| blobs_accuracy | certified_accuracy | certified |" in (out / "results.md").read_text()


def test_json_output_and_below_required_exit_1(tmp_path, capsys):
    text = (SPECS / "blobs_accuracy.yaml").read_text().replace("required: 0.8", "required: 1.0")
    text = text.replace("iterations: 100", "iterations: 10")
    shutil.copy(SPECS / "models.py", tmp_path / "models.py")
    f = tmp_path / "strict.yaml"
    f.write_text(text)
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["certify", str(f), "-o", str(out), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "below-required" and report["required"] == 1.0 and "below the required" in report[
        "message"]
    assert (out / "certificate.json").is_file()   # the certificate is still written: it is valid, just weaker


def test_certify_with_a_tighter_method_than_the_optimiser(tmp_path):
    """``method: IBP`` shapes the box, ``certify_method: CROWN`` certifies and grows it: the certificate
    and the report name CROWN, and the certificate checks out on the held-out items."""
    text = (SPECS / "blobs_accuracy.yaml").read_text().replace(
        "  method: CROWN\n", "  method: IBP\n  certify_method: CROWN\n  grow: 4\n")
    assert "certify_method: CROWN" in text
    shutil.copy(SPECS / "models.py", tmp_path / "models.py")
    f = tmp_path / "ibp_crown.yaml"
    f.write_text(text)
    out = tmp_path / "out"
    assert main(["certify", str(f), "-o", str(out), "--quiet"]) == 0
    report = json.loads((out / "results.json").read_text())
    cert = Certificate.load(out / "certificate.json")
    assert (report["method"], report["certify_method"], report["grow"]) == ("IBP", "CROWN", 4.0)
    assert cert.method == "CROWN" and cert.bound >= 0.8


def test_local_robustness_writes_vnnlib_for_certified_items(tmp_path):
    f = _spec_file(tmp_path, ROBUST)
    out = tmp_path / "out"
    assert main(["certify", str(f), "-o", str(out), "--quiet"]) == 0
    cert = Certificate.load(out / "certificate.json")
    assert cert.kind == "local_robustness" and cert.spec["epsilon"] == pytest.approx(0.05)
    assert cert.spec["norm"] == "inf"
    assert "robust accuracy" in cert.statement
    rows = (out / "instances.csv").read_text().splitlines()
    assert len(rows) == cert.k > 0
    prop = parse_vnnlib(out / rows[0].split(",")[1])
    assert prop.n_inputs == 2 and prop.n_outputs == 2 and len(prop.disjuncts) == 1
    width = prop.disjuncts[0].input_upper - prop.disjuncts[0].input_lower
    assert width.min() >= 0.1 - 1e-6   # the whole ball (2 eps), rounded outwards
    assert main(["verify-update", str(out / "model.onnx"), str(out / "certificate.json"), "--quiet"]) == 0


def test_vnnlib_not_certified_at_theta0_exits_1(tmp_path, capsys):
    """Without input splitting (lid.refine: none) CROWN alone cannot certify N2,5 property 3."""
    bench = _acas()
    f = tmp_path / "c.yaml"
    f.write_text(f"model:\n  onnx_path: {bench}/onnx/ACASXU_run2a_2_5_batch_2000.onnx\nspecification:\n"
                 f"  vnnlib_path: {bench}/vnnlib/prop_3.vnnlib\nlid:\n  refine: none\n")
    out = tmp_path / "out"
    assert main(["certify", str(f), "-o", str(out)]) == 1
    assert "cannot certify the property even for the model's own weights" in capsys.readouterr().out
    assert json.loads((out / "results.json").read_text())["status"] == "not-certified-at-theta0"
    assert not (out / "certificate.json").exists()


def test_not_certified_at_theta0_reports_the_time_spent_bounding_at_theta0(tmp_path, monkeypatch):
    """A row that fails at theta0 took the time of that bound: its total is not ~0 s."""
    import lirpa_lid.pipeline.problems as problems

    def slow_base_value(*args, **kwargs):
        time.sleep(0.3)
        return 0.0   # below lid.threshold 0.9: not certified at theta0
    monkeypatch.setattr(problems, "base_value", slow_base_value)
    out = tmp_path / "out"
    assert main(["certify", str(_spec_file(tmp_path, ROBUST)), "-o", str(out), "--quiet"]) == 1
    report = json.loads((out / "results.json").read_text())
    assert report["status"] == "not-certified-at-theta0"
    assert report["seconds"]["total"] >= 0.3


def test_bad_inputs_exit_2_with_one_line_and_no_output(tmp_path, capsys):
    bench = _acas()
    out = tmp_path / "out"
    onnx_ok = bench / "onnx" / "ACASXU_run2a_2_4_batch_2000.onnx"
    vnn_ok = bench / "vnnlib" / "prop_3.vnnlib"

    def cfg(text: str) -> str:
        return str(_spec_file(tmp_path, text, "c.yaml"))

    _bad_input(capsys, ["certify", cfg("model: [unclosed\n"), "-o", str(out)], "malformed YAML", out)
    _bad_input(capsys, ["certify", cfg("model:\n  onnx_pth: a.onnx\n"), "-o", str(out)],
               "unknown key 'onnx_pth' in section 'model' (did you mean 'onnx_path'?)", out)
    broken = tmp_path / "broken.vnnlib"
    broken.write_text("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (<= X_0 1.0)\n")
    _bad_input(capsys, ["certify", cfg(f"model:\n  onnx_path: {onnx_ok}\nspecification:\n  vnnlib_path: {broken}\n"),
                        "-o", str(out)], "line 3", out)
    fake = tmp_path / "fake.onnx"
    fake.write_text("this is not an ONNX file")
    _bad_input(capsys, ["certify", cfg(f"model:\n  onnx_path: {fake}\nspecification:\n  vnnlib_path: {vnn_ok}\n"),
                        "-o", str(out)], "fake.onnx", out)
    three = tmp_path / "three.vnnlib"
    three.write_text("".join(f"(declare-const X_{i} Real)\n" for i in range(3)) + "(declare-const Y_0 Real)\n" +
                     "".join(f"(assert (<= X_{i} 1))\n(assert (>= X_{i} 0))\n" for i in range(3)) +
                     "(assert (<= Y_0 0))\n")
    _bad_input(capsys, ["certify", cfg(f"model:\n  onnx_path: {onnx_ok}\nspecification:\n  vnnlib_path: {three}\n"),
                        "-o", str(out)], "declares 3 inputs (X_0..X_2), expected n_inputs=5", out)
    mnist_shape = ("model:\n  name: mlp(sizes=[5, 2])\ndata:\n  dataset: Customized(\"abcrown_custom\", "
                   "\"separable_data\")\n  num_outputs: 2\nspecification:\n  type: certified-accuracy\n"
                   "lid:\n  threshold: 0.5\n")
    _bad_input(capsys, ["certify", cfg(mnist_shape), "-o", str(out)], "cannot process inputs of shape (2,)", out)
    _bad_input(capsys, ["certify", str(tmp_path / "missing.yaml"), "-o", str(out)], "does not exist", out)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []   # no temporary leftovers


# ------------------------------------------------------------------------------ instances.csv
def _lid_only(tmp_path: Path, iterations: int = 10) -> Path:
    return _spec_file(tmp_path, f"lid:\n  iterations: {iterations}\n  primal_lr: 5.0\n  dual_lr: 0.1\n"
                                f"  snapshot_every: 5\nbab:\n  timeout: 100\n", "lid.yaml")


def test_instances_csv_batch_run(tmp_path, capsys):
    bench = _acas()
    csv_file = tmp_path / "instances.csv"
    csv_file.write_text(f"{bench}/onnx/ACASXU_run2a_2_4_batch_2000.onnx,{bench}/vnnlib/prop_3.vnnlib,116\n"
                        f"{bench}/onnx/ACASXU_run2a_2_5_batch_2000.onnx,{bench}/vnnlib/prop_3.vnnlib,116\n")
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["certify", str(_lid_only(tmp_path)), "--instances", str(csv_file), "-o", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    # N2,5 is not certified by CROWN at its own weights: input splitting (the default lid.refine) certifies it
    assert [r["status"] for r in report["instances"]] == ["certified", "certified"]
    assert [r["decided_by"]["how"] for r in report["instances"]] == ["bounds", "split"]
    assert report["instances"][1]["decided_by"]["leaves"] >= 2
    assert captured.err == ""   # with --json nothing but the JSON is printed (no note on the ignored bab)
    assert (out / "summary.md").read_text().count("| ACASXU_run2a_2_") == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"certified": 2, "below-required": 0, "not-certified-at-theta0": 0, "falsified": 0}
    first = out / "ACASXU_run2a_2_4_batch_2000-prop_3"
    assert Certificate.load(first / "certificate.json").k == 1 and (first / "model.onnx").is_file()
    # one instances.csv for the whole batch, paths relative to the output folder (alpha,beta-CROWN re-verifies it)
    rows = [line.split(",") for line in (out / "instances.csv").read_text().splitlines()]
    assert len(rows) == 2 and rows[0][0] == "ACASXU_run2a_2_4_batch_2000-prop_3/model.onnx"
    assert all((out / onnx).is_file() and (out / vnnlib).is_file() for onnx, vnnlib, _ in rows)


def test_instances_rows_with_the_same_file_names_get_their_own_folders(tmp_path, capsys):
    """Rows whose ONNX and VNN-LIB file names coincide (same names in two folders, or a repeated row) must
    not write into one folder: each row keeps its own certificate, and summary.json names the folders."""
    bench = _acas()
    for folder, net in (("a", "2_4"), ("b", "2_6")):
        (tmp_path / folder).mkdir()
        shutil.copy(bench / "onnx" / f"ACASXU_run2a_{net}_batch_2000.onnx", tmp_path / folder / "net.onnx")
        shutil.copy(bench / "vnnlib" / "prop_3.vnnlib", tmp_path / folder / "prop.vnnlib")
    csv_file = tmp_path / "instances.csv"
    csv_file.write_text("a/net.onnx,a/prop.vnnlib,100\nb/net.onnx,b/prop.vnnlib,100\na/net.onnx,a/prop.vnnlib,100\n")
    out = tmp_path / "out"
    assert main(["certify", str(_lid_only(tmp_path, iterations=5)), "--instances", str(csv_file), "-o", str(out),
                 "--quiet"]) == 0
    rows = json.loads((out / "summary.json").read_text())["instances"]
    names = [r["name"] for r in rows]
    assert len(set(names)) == 3 and all(name.startswith("net-prop") for name in names)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(names)
    for name, folder in zip(names, "aba"):
        cert = Certificate.load(out / name / "certificate.json")
        assert cert.model["source"] == str((tmp_path / folder / "net.onnx").resolve())
        assert json.loads((out / name / "results.json").read_text())["name"] == name


def test_instances_timeout_bounds_the_growth(tmp_path):
    bench = _acas()
    csv_file = tmp_path / "instances.csv"
    csv_file.write_text(f"{bench}/onnx/ACASXU_run2a_2_4_batch_2000.onnx,{bench}/vnnlib/prop_3.vnnlib,1\n")
    out = tmp_path / "out"
    assert main(["certify", str(_lid_only(tmp_path, iterations=5000)), "--instances", str(csv_file), "-o",
                 str(out), "--quiet"]) == 0
    report = json.loads((out / "ACASXU_run2a_2_4_batch_2000-prop_3" / "results.json").read_text())
    assert report["iterations_run"] < 5000 and report["seconds"]["lid"] < 10


def test_batch_spec_rows_selected_like_abcrown(tmp_path):
    """specs/acasxu_batch.yaml: root_path + csv_name of the VNN-COMP instances.csv, data.start/end."""
    _acas()
    text = (SPECS / "acasxu_batch.yaml").read_text().replace("start: 102", "start: 103").replace(
        "end: 108", "end: 105").replace("iterations: 40", "iterations: 5")
    f = _spec_file(tmp_path, text, "batch.yaml")
    out = tmp_path / "out"
    assert main(["certify", str(f), "-o", str(out), "--quiet", "--data-dir", str(ACAS.parents[1])]) == 0
    statuses = {r["name"]: r["status"] for r in json.loads((out / "summary.json").read_text())["instances"]}
    assert statuses == {"ACASXU_run2a_2_5_batch_2000-prop_3": "certified",   # by input splitting
                        "ACASXU_run2a_2_6_batch_2000-prop_3": "certified"}


def test_bad_instances_exit_2_before_anything_is_written(tmp_path, capsys):
    bench = _acas()
    out = tmp_path / "out"
    csv_file = tmp_path / "instances.csv"
    fake = tmp_path / "fake.onnx"
    fake.write_text("junk")
    csv_file.write_text(f"{bench}/onnx/ACASXU_run2a_2_4_batch_2000.onnx,{bench}/vnnlib/prop_3.vnnlib,116\n"
                        f"{fake},{bench}/vnnlib/prop_3.vnnlib,116\n")
    _bad_input(capsys, ["certify", str(_lid_only(tmp_path)), "--instances", str(csv_file), "-o", str(out)],
               "instance on line 2", out)
    csv_file.write_text(f"{bench}/onnx/ACASXU_run2a_2_4_batch_2000.onnx\n")
    _bad_input(capsys, ["certify", str(_lid_only(tmp_path)), "--instances", str(csv_file), "-o", str(out)],
               "line 1: expected onnx,vnnlib[,timeout]", out)
    csv_file.write_text(f"{bench}/onnx/ACASXU_run2a_2_4_batch_2000.onnx,{bench}/vnnlib/prop_3.vnnlib,soon\n")
    _bad_input(capsys, ["certify", str(_lid_only(tmp_path)), "--instances", str(csv_file), "-o", str(out)],
               "timeout 'soon' is not a number", out)


# ------------------------------------------------------------------------------ bounds
def test_bounds_table_and_json(tmp_path, capsys):
    bench = _acas()
    args = ["bounds", "--onnx", str(bench / "onnx" / "ACASXU_run2a_2_4_batch_2000.onnx"), "--vnnlib",
            str(bench / "vnnlib" / "prop_3.vnnlib")]
    capsys.readouterr()
    assert main(args + ["--json"]) == 0
    at0 = json.loads(capsys.readouterr().out)
    assert at0["certified"] == [True] and len(at0["rows"]) == 4 and at0["rows"][0]["C"] == "y0 - y1"
    assert main(args + ["--eps", "0.01", "--json"]) == 0
    wide = json.loads(capsys.readouterr().out)
    assert all(w["lower"] <= a["lower"] and w["upper"] >= a["upper"] for w, a in zip(wide["rows"], at0["rows"]))
    assert main(args + ["--param-eps", "14.bias=0.5", "--method", "IBP"]) == 0
    table = capsys.readouterr().out
    assert "| query | row | margin | lower | upper |" in table and "certified: " in table
    _bad_input(capsys, args + ["--param-eps", "nope.weight=0.1"], "unknown parameter")
    _bad_input(capsys, args + ["--param-eps", "14.bias"], "NAME=WIDTH")
    f = _spec_file(tmp_path, ROBUST)
    assert main(["bounds", str(f), "--eps", "0.001", "--relative", "--json", "--limit", "100"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "local_robustness" and len(report["certified"]) == 60


def test_bounds_quiet_still_prints_the_table(tmp_path, capsys):
    """--quiet silences progress and messages, not the results: without --json the table is the output."""
    f = _spec_file(tmp_path, ROBUST)
    capsys.readouterr()
    assert main(["bounds", str(f), "--eps", "0.001", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "| query | row | margin | lower | upper |" in captured.out and "(first 20 of 60 queries" in captured.out
    assert captured.err == ""


def test_no_progress_lines_when_stderr_is_not_a_terminal(tmp_path, capsys, monkeypatch):
    """Progress bars written to a log (stderr captured: not a terminal) would add a line per update;
    without --quiet a run still writes its messages there, but no bar."""
    monkeypatch.delenv("LIRPA_LID_PROGRESS", raising=False)
    f = _spec_file(tmp_path, ROBUST)
    capsys.readouterr()
    assert main(["certify", str(f), "-o", str(tmp_path / "one")]) == 0
    err = capsys.readouterr().err
    assert "certified value at width 0" in err   # the messages are there
    runs = [err]
    if (ACAS / "onnx").is_dir():
        csv_file = tmp_path / "instances.csv"
        csv_file.write_text(f"{ACAS}/onnx/ACASXU_run2a_2_4_batch_2000.onnx,{ACAS}/vnnlib/prop_3.vnnlib,100\n" * 2)
        assert main(["certify", str(_lid_only(tmp_path, iterations=5)), "--instances", str(csv_file), "-o",
                     str(tmp_path / "many")]) == 0
        runs.append(capsys.readouterr().err)
    for err in runs:
        assert "\r" not in err and "it/s" not in err and "%|" not in err, err


# ------------------------------------------------------------------------------ project / verify-update
def test_project_and_verify_update_with_state_dicts(blobs_run, tmp_path, capsys):
    _, out = blobs_run
    cert_file = out / "certificate.json"
    config = SPECS / "blobs_accuracy.yaml"
    cert = Certificate.load(cert_file)
    from lirpa_lid.pipeline.config import load_config
    from lirpa_lid.pipeline.problems import load_model
    model = load_model(load_config(config)).module
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3)                                   # an "update" that leaves the domain
    update = tmp_path / "update.pt"
    torch.save(model.state_dict(), update)
    assert main(["verify-update", str(update), str(cert_file), "--config", str(config)]) == 1
    assert "FAIL" in capsys.readouterr().out
    projected = tmp_path / "projected.pt"
    assert main(["project", str(update), str(cert_file), "-o", str(projected), "--config", str(config),
                 "--quiet"]) == 0
    assert main(["verify-update", str(projected), str(cert_file), "--config", str(config), "--recheck"]) == 0
    assert capsys.readouterr().out.startswith("PASS")
    onnx_out = tmp_path / "projected.onnx"
    assert main(["project", str(update), str(cert_file), "-o", str(onnx_out), "--config", str(config),
                 "--quiet"]) == 0
    assert onnx_out.is_file() and cert.spec["input_shape"] == [2]
    _bad_input(capsys, ["project", str(update), str(cert_file), "-o", str(tmp_path / "x.pt")],
               "pass --config")
    _bad_input(capsys, ["project", str(update), str(cert_file), "-o", str(tmp_path / "x.txt"), "--config",
                        str(config)], "must end in .onnx")
    _bad_input(capsys, ["verify-update", str(update), str(tmp_path / "none.json"), "--config", str(config)],
               "does not exist")
    assert not (tmp_path / "x.pt").exists()


# ------------------------------------------------------------------------------ reproduce
def test_reproduce_dispatches_to_main_with_arguments(tmp_path, capsys, monkeypatch):
    (tmp_path / "tiny_experiment.py").write_text(
        "import json, sys\n"
        "def main(argv):\n"
        "    print(json.dumps(argv))\n"
        "    return 3 if '--fail' in argv else None\n")
    (tmp_path / "no_main.py").write_text("x = 1\n")
    capsys.readouterr()
    assert main(["reproduce", "--dir", str(tmp_path), "tiny-experiment", "--quick", "--seed", "1"]) == 0
    assert json.loads(capsys.readouterr().out) == ["--quick", "--seed", "1"]
    monkeypatch.setenv("LIRPA_LID_REPRODUCTIONS", str(tmp_path))
    assert main(["reproduce", "tiny_experiment", "--fail"]) == 3
    capsys.readouterr()
    line = _bad_input(capsys, ["reproduce", "lookahead"], "no reproduction 'lookahead'")
    assert "available: no-main, tiny-experiment" in line
    _bad_input(capsys, ["reproduce", "no-main"], "has no main(argv)")
    _bad_input(capsys, ["reproduce", "../etc"], "is not a reproduction name")


# ------------------------------------------------------------------------------ shipped specification files
@pytest.mark.parametrize("name", ["acasxu_prop3", "mnist_fc_robustness"])
def test_shipped_specs_load_and_validate(name):
    """Loading, shapes, data, VNN-LIB parsing and the width-0 value of shipped files (no LID growth)."""
    from lirpa_lid.pipeline.config import load_config
    from lirpa_lid.pipeline.problems import build_problem
    _acas()
    problem = build_problem(load_config(SPECS / f"{name}.yaml"))
    assert problem.base_value >= problem.spec.threshold
    assert problem.spec.kind == {"acasxu_prop3": "vnnlib", "mnist_fc_robustness": "local_robustness"}[name]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["acasxu_prop3", "mnist_accuracy", "mnist_fc_robustness", "acasxu_batch"])
def test_shipped_specs_run_end_to_end(tmp_path, name):
    out = tmp_path / "out"
    code = main(["certify", str(SPECS / f"{name}.yaml"), "-o", str(out), "--quiet"])
    if name == "acasxu_batch":   # N2,5 is not certifiable by CROWN at its own weights: input splitting does it
        assert code == 0 and json.loads((out / "summary.json").read_text())["counts"]["certified"] == 6
    else:
        assert code == 0 and Certificate.load(out / "certificate.json").bound > 0


def test_reproductions_are_found_next_to_the_checkout_or_in_the_working_directory(tmp_path, monkeypatch):
    """A non-editable install (as tox makes) has no reproductions/ next to the package: the working
    directory's is used (a checkout installed with ``pip install .``)."""
    from lirpa_lid.cli import reproduce as cli
    monkeypatch.delenv(cli.REPRODUCTIONS_ENV, raising=False)
    assert (cli.reproductions_dir() / "split_mnist.py").is_file()      # this checkout
    installed = tmp_path / "site-packages" / "lirpa_lid"
    installed.mkdir(parents=True)
    monkeypatch.setattr(cli, "__file__", str(installed / "cli" / "main.py"))
    work = tmp_path / "work"
    (work / "reproductions").mkdir(parents=True)
    monkeypatch.chdir(work)
    assert cli.reproductions_dir() == work / "reproductions"
    assert cli.reproductions_dir("elsewhere") == Path("elsewhere")


def test_local_robustness_files_are_named_by_data_set_index(tmp_path):
    """Issue 26, item 6: ``item_<i>`` is the data set's index of the item (``data.start`` + position in the
    selected items), not its position among the held-out items; results.json lists every held-out index."""
    text = ROBUST.replace("n=60)", "n=60)\n  start: 10")
    out = tmp_path / "out"
    assert main(["certify", str(_spec_file(tmp_path, text)), "-o", str(out), "--quiet"]) == 0
    held = json.loads((out / "results.json").read_text())["held_out_index"]
    assert len(held) == len(set(held)) and min(held) >= 10 and max(held) < 60
    names = [line.split(",")[1] for line in (out / "instances.csv").read_text().splitlines()]
    assert names and all(int(n.split("item_")[1].split(".")[0]) in held for n in names)
