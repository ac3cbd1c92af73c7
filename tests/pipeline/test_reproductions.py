"""The reproduction scripts' quick modes: they run, write markdown + JSON + PNG with the paper's values
next to ours (IBP and CROWN), cache their runs, and reject bad arguments."""
from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

from lirpa_lid import InputError
from lirpa_lid.datasets import data_dir

ROOT = Path(__file__).resolve().parents[2] / "reproductions"


def _have_mnist() -> bool:
    try:
        return (data_dir() / "mnist" / "train-images-idx3-ubyte.gz").exists()
    except InputError:
        return False


pytestmark = pytest.mark.skipif(not _have_mnist(), reason="MNIST files not available")


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"reproduction_{name}", ROOT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def split_quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("split")
    code = _load("split_mnist").main(["--quick", "--settings", "TIL,CIL", "--methods", "lid,sgd,icn",
                                      "--bound", "IBP,CROWN,IBP+CROWN", "--out", str(out), "--quiet"])
    return out, code


def test_split_mnist_quick_writes_tables_with_paper_ibp_and_crown(split_quick):
    out, code = split_quick
    assert code == 0
    md = (out / "split_mnist_quick.md").read_text()
    assert "| setting | quantity | paper | ours IBP | ours CROWN | ours IBP → CROWN ×4 |" in md
    assert "(n=1)" in md and "Clopper" in md
    assert (out / "split_mnist_quick.png").read_bytes()[:4] == b"\x89PNG"
    report = json.loads((out / "split_mnist_quick.json").read_text())
    assert set(report["aggregate"]) == {"TIL", "CIL"}
    assert set(report["aggregate"]["TIL"]) == {"lid-IBP", "lid-CROWN", "lid-IBP+CROWN", "sgd", "icn"}
    for run in report["runs"]:
        assert len(run["accuracy"]) == 5 and all(0 <= a <= 1 for row in run["accuracy"] for a in row)
        if run["key"].startswith("lid") or run["key"] == "icn":
            # certificates for tasks 0-3 come from held-out items; none for the last task
            assert all(c is not None for c in run["certified"][-1][:4]) and run["certified"][-1][4] is None
        else:
            assert all(c is None for c in run["certified"][-1])
    # the paper's seed rule: the dropped count of every row is the runs with task-0 accuracy < 0.7
    rule = md.split("## The paper's seed rule")[1].split("## Setup")[0]
    names = {"lid-IBP": "LID, IBP", "lid-CROWN": "LID, CROWN", "lid-IBP+CROWN": "LID, IBP → CROWN ×4", "sgd": "SGD",
             "icn": "InterContiNet"}
    for run in report["runs"]:
        dropped = int(run["accuracy"][0][0] < 0.7)
        assert f"| {run['setting']} | {names[run['key']]} |" in rule
        row = [line for line in rule.splitlines() if line.startswith(f"| {run['setting']} | {names[run['key']]} |")]
        assert row[0].endswith(f"| {dropped} of 1 |")


def test_split_mnist_reuses_cached_runs_and_rejects_bad_arguments(split_quick, capsys):
    out, _ = split_quick
    module = _load("split_mnist")
    before = json.loads((out / "split_mnist_quick.json").read_text())
    assert module.main(["--quick", "--settings", "TIL,CIL", "--methods", "lid,sgd,icn", "--out", str(out),
                        "--bound", "IBP,CROWN,IBP+CROWN", "--quiet", "--report-only"]) == 0
    after = json.loads((out / "split_mnist_quick.json").read_text())
    assert after["aggregate"] == before["aggregate"]
    assert module.main(["--quick", "--methods", "magic", "--out", str(out), "--quiet"]) == 2
    capsys.readouterr()
    assert module.main(["--quick", "--bound", "IBP+magic", "--out", str(out), "--quiet"]) == 2
    assert "--bound: unknown bound method 'magic'" in capsys.readouterr().err



@pytest.fixture(scope="module")
def lookahead_quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("lookahead")
    code = _load("lookahead").main(["--quick", "--variants", "none,fisher-lookahead,si", "--out", str(out), "--quiet"])
    return out, code


def test_lookahead_quick_writes_the_comparison(lookahead_quick):
    module = _load("lookahead")
    tmp_path, code = lookahead_quick
    assert code == 0
    md = (tmp_path / "lookahead_quick.md").read_text()
    assert "| variant | q | paper | ours IBP | ours CROWN |" in md
    assert "| Fisher look-ahead | 0.825 | 0.729 |" in md and "| no bias | — | 0.200 |" in md
    report = json.loads((tmp_path / "lookahead_quick.json").read_text())
    runs = report["runs"]
    assert {(r["variant"], r["bound"]) for r in runs} == {(v, b) for v in ("none", "fisher-lookahead", "si")
                                                          for b in ("IBP", "CROWN")}
    n = 784 * 100 + 100 + 100 * 10 + 10   # the quick mode's MLP
    for r in runs:
        assert 0 <= r["task2"] <= 1 and r["task1_certificate"] is not None
        expected = {"none": 0, "fisher-lookahead": round(0.825 * n), "si": round(0.05 * n)}[r["variant"]]
        assert r["frozen_elements"] == expected
    assert (tmp_path / "lookahead_quick.png").read_bytes()[:4] == b"\x89PNG"
    assert module.main(["--quick", "--variants", "nothing", "--out", str(tmp_path), "--quiet"]) == 2
    assert module.main(["--quick", "--bound", "IBP+CROWN+CROWN", "--out", str(tmp_path), "--quiet"]) == 2
    assert module.main(["--quick", "--workers", "0", "--out", str(tmp_path), "--quiet"]) == 2


def test_lookahead_sweep_table_puts_the_bounds_side_by_side(tmp_path):
    """The sweep section lists every swept bound plan row by row next to the paper's value, and leaves
    out a plan that has only the best-q points; the plot is written for the same runs."""
    module = _load("lookahead")

    def run(variant, q, bound, seed, task2):
        return {"variant": variant, "q": q, "bound": bound, "seed": seed, "task2": task2, "threads": 1, "tau": 0.8,
                "lid_mean_width": 0.5, "frozen_elements": 0, "task1_final": 0.9, "task1_certificate": 0.7,
                "lid_seconds": 10.0}

    fractions = [0.5, 0.825, 0.95]
    runs = [run("none", None, b, s, 0.2 + 0.1 * s) for b in ("IBP", "IBP+CROWN", "CROWN") for s in (0, 1)]
    runs += [run(v, q, b, s, q / 4 + 0.1 * s) for v in module.VARIANTS[1:] for q in fractions
             for b in ("IBP", "IBP+CROWN") for s in (0, 1)]
    runs += [run(v, module.BEST_Q[v], "CROWN", 0, 0.5) for v in module.VARIANTS[1:]]
    bounds = ["IBP", "IBP+CROWN", "CROWN"]
    assert module.sweep_bounds(runs, bounds) == ["IBP", "IBP+CROWN"]
    md = module.markdown(runs, module.Settings(), bounds, fractions)
    sweep = md.split("## Sweep of the frozen proportion q")[1].split("## Setup")[0]
    assert "| Fisher look-ahead | IBP | 0.729 (q=0.825) | 0.175 ± 0.071 (n=2) | 0.256 ± 0.071 (n=2) |" in sweep
    assert "| SI (EWC-like) | IBP → CROWN ×4 | 0.394 (q=0.95) |" in sweep
    assert "| no bias | IBP | 0.200 (all q) | " + " | ".join(["0.250 ± 0.071 (n=2)"] * 3) + " |" in sweep
    assert "| CROWN |" not in sweep and sweep.count("\n| ") == 1 + 2 * len(module.VARIANTS)
    module.plot(runs, tmp_path / "sweep.png", bounds, fractions)
    assert (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"


def test_lookahead_in_two_worker_processes_gives_the_sequential_runs(lookahead_quick, tmp_path):
    """``--workers 2``: two processes of the script share the pending runs; their cached results are the
    sequential run's (same seeds, one thread each) up to the timings, and the parent writes the report."""
    sequential, _ = lookahead_quick
    module = _load("lookahead")
    assert module.main(["--quick", "--variants", "none,si", "--bound", "IBP", "--out", str(tmp_path), "--quiet",
                        "--workers", "2"]) == 0
    parallel = sorted((tmp_path / "runs").glob("*/*.json"))
    assert [p.name for p in parallel] == ["none-qNone-IBP-seed5.json", "si-q0.95-IBP-seed5.json"]
    timing = {"seconds", "lid_seconds"}
    for path in parallel:
        ours = json.loads(path.read_text())
        reference = json.loads(next((sequential / "runs").glob(f"*/{path.name}")).read_text())
        assert {k: v for k, v in ours.items() if k not in timing} == \
            {k: v for k, v in reference.items() if k not in timing}
    report = json.loads((tmp_path / "lookahead_quick.json").read_text())
    assert len(report["runs"]) == 2 and report["failures"] == []


def test_cli_reproduce_command_if_present(tmp_path):
    from lirpa_lid.cli import app as cli
    parser = cli.build_parser()
    try:
        parser.parse_args(["reproduce", "lookahead", "--help"])
    except SystemExit as exc:
        if exc.code != 0:
            pytest.skip("the CLI has no `reproduce` command yet")
    code = cli.main(["reproduce", "lookahead", "--quick", "--variants", "none", "--bound", "IBP",
                     "--out", str(tmp_path), "--quiet"])
    assert code == 0 and (tmp_path / "lookahead_quick.md").exists()


@pytest.mark.parametrize("script, argv, name", [
    ("lookahead", [], "lookahead"),
    ("split_mnist", [], "split_mnist"),
    ("split_mnist", ["--arch", "mlp"], "split_mnist_mlp"),
])
def test_shipped_reports_are_what_the_default_commands_give(script, argv, name, tmp_path):
    """The committed tables are rebuilt byte for byte from the committed runs by the README's commands
    with their default bound plans (IBP,IBP+CROWN on the CNN, swept for both; IBP,CROWN on the MLP)."""
    results = ROOT / "results"
    caches = [p for p in (results / "runs").glob(f"{name}-*") if p.is_dir()]
    assert len(caches) == 1, f"expected one run cache for {name}, found {caches}"
    shutil.copytree(caches[0], tmp_path / "runs" / caches[0].name)
    assert _load(script).main([*argv, "--report-only", "--out", str(tmp_path), "--quiet"]) == 0
    assert (tmp_path / f"{name}.md").read_text() == (results / f"{name}.md").read_text()
    assert json.loads((tmp_path / f"{name}.json").read_text()) == json.loads((results / f"{name}.json").read_text())
