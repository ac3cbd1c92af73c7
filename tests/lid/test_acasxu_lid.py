"""End to end on the shipped ACAS Xu files: `lirpa-lid certify` on a specification file (network N2,4,
VNN-COMP 2022 property 3, `unsat` in ground_truth.csv, certified by CROWN at θ₀ without branching) gives
a non-empty weight domain in which CROWN proves the property; the domain is then attacked:

* 10,000 sampled (weights, inputs) pairs, half of them corners of both boxes;
* PGD on weights and inputs jointly, inside the domain and the input box (signed steps, restarts);

neither may find a counterexample. The attack is shown to work on a `sat` instance. The property is
written back as VNN-LIB (parsed again: identical), with model.onnx at θ₀ (inside the domain), and an
update projected into the domain is exported as ONNX whose outputs equal the PyTorch model's.
"""
from __future__ import annotations

import copy
import csv
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.func import functional_call, vmap

from lirpa_lid import Certificate, bounded_network, load_onnx, parse_vnnlib, recheck, verify_update
from lirpa_lid.cli.app import main
from lirpa_lid.datasets import data_dir
from lirpa_lid.domains.orthotope import Orthotope
from lirpa_lid.margin import compute_margins
from lirpa_lid.specification.vnnlib.parse import VnnlibProperty
from lirpa_lid.specification.vnnlib.spec import VnnlibSpecification

BENCH = data_dir(must_exist=False) / "vnncomp2022" / "acasxu"
NET, PROP = "2_4", 3


def _files(net: str, prop: int) -> tuple[Path, Path]:
    if not (BENCH / "onnx").is_dir():
        pytest.skip(f"VNN-COMP 2022 ACAS Xu data not found under {BENCH}")
    return BENCH / "onnx" / f"ACASXU_run2a_{net}_batch_2000.onnx", BENCH / "vnnlib" / f"prop_{prop}.vnnlib"


def _truth(net: str, prop: int) -> str:
    rows = csv.DictReader((BENCH / "ground_truth.csv").open())
    return {r["instance"]: r["result"] for r in rows}[f"ACASXU_run2a_{net}_batch_2000-prop_{prop}"]


def _config(tmp_path: Path, onnx_file: Path, vnnlib_files: list[Path], iterations: int) -> Path:
    f = tmp_path / "acas.yaml"
    paths = "[" + ", ".join(f'"{p}"' for p in vnnlib_files) + "]"
    f.write_text(f"model:\n  onnx_path: \"{onnx_file}\"\nspecification:\n  type: vnnlib\n  vnnlib_path: {paths}\n"
                 f"lid:\n  method: CROWN\n  iterations: {iterations}\n  primal_lr: 5.0\n  dual_lr: 0.1\n"
                 "  snapshot_every: 10\n")
    return f


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    onnx_file, vnnlib_file = _files(NET, PROP)
    assert _truth(NET, PROP) == "unsat"
    tmp = tmp_path_factory.mktemp("acas")
    out = tmp / "out"
    code = main(["certify", str(_config(tmp, onnx_file, [vnnlib_file], 60)), "-o", str(out), "--quiet"])
    return code, out, onnx_file, vnnlib_file


# ------------------------------------------------------------------------------ oracles
def _margin_fn(model64: nn.Module, prop: VnnlibProperty, input_shape):
    """(params, x [n_in]) → the property's concrete margin min_k max_r (C_k y − d_k) (≤ 0: counterexample)."""
    Cs = [torch.tensor(dj.C) for dj in prop.disjuncts]
    ds = [torch.tensor(dj.d) for dj in prop.disjuncts]

    def margin(params, x):
        y = functional_call(model64, params, (x.reshape(1, *input_shape),))[0].flatten()
        return torch.stack([(C @ y - d).max() for C, d in zip(Cs, ds)]).min()
    return margin


def _boxes(prop: VnnlibProperty):
    return [(torch.tensor(g.input_lower), torch.tensor(g.input_upper)) for g in prop.input_groups()]


def sampled_min_margin(model: nn.Module, domain: Orthotope, prop: VnnlibProperty, input_shape, n: int,
                       seed: int = 0, chunk: int = 500) -> float:
    """Smallest property margin over ``n`` (weights, inputs) pairs per input box, half of them corners."""
    model64, dom = copy.deepcopy(model).double(), domain.to(dtype=torch.float64)
    margin = vmap(_margin_fn(model64, prop, input_shape))
    g = torch.Generator().manual_seed(seed)
    worst = float("inf")
    for lo, up in _boxes(prop):
        for start in range(0, n, chunk):
            k = min(chunk, n - start)
            weights = dom.sample(k, generator=g, corner_fraction=0.5)
            u = torch.rand(k, lo.numel(), generator=g, dtype=torch.float64)
            u[: k // 2] = (u[: k // 2] > 0.5).double()
            worst = min(worst, float(margin(weights, lo + u * (up - lo)).min()))
    return worst


def attacked_min_margin(model: nn.Module, domain: Orthotope, prop: VnnlibProperty, input_shape,
                        restarts: int = 48, steps: int = 150, seed: int = 0) -> float:
    """PGD on weights and inputs jointly: signed steps of 1/20 (then 1/100) of each box's width, clamped
    to the weight domain and the input box; restart 0 starts at (θ₀, box centre), the others at random
    points. Returns the smallest margin found."""
    model64, dom = copy.deepcopy(model).double(), domain.to(dtype=torch.float64)
    bounds = dom.exact_bounds()
    margin = vmap(_margin_fn(model64, prop, input_shape))
    g = torch.Generator().manual_seed(seed)
    worst = float("inf")
    for lo_x, up_x in _boxes(prop):
        w = {k: lo + torch.rand(restarts, *lo.shape, generator=g, dtype=torch.float64) * (hi - lo)
             for k, (lo, hi) in bounds.items()}
        x = lo_x + torch.rand(restarts, lo_x.numel(), generator=g, dtype=torch.float64) * (up_x - lo_x)
        for k in w:
            w[k][0] = dom.reference[k]
        x[0] = (lo_x + up_x) / 2
        for step in range(steps):
            frac = 20 if step < steps // 2 else 100
            w = {k: t.requires_grad_(True) for k, t in w.items()}
            x = x.requires_grad_(True)
            m = margin(w, x)
            worst = min(worst, float(m.detach().min()))
            grads = torch.autograd.grad(m.sum(), [*w.values(), x])
            with torch.no_grad():
                w = {k: torch.minimum(torch.maximum(t - (bounds[k][1] - bounds[k][0]) / frac * gr.sign(),
                                                    bounds[k][0]), bounds[k][1])
                     for (k, t), gr in zip(w.items(), grads[:-1])}
                x = torch.minimum(torch.maximum(x - (up_x - lo_x) / frac * grads[-1].sign(), lo_x), up_x)
        with torch.no_grad():
            worst = min(worst, float(margin(w, x).min()))
    return worst


# ------------------------------------------------------------------------------ the run
def test_certify_gives_a_nonempty_domain_certified_deterministically(run):
    code, out, _, vnnlib_file = run
    assert code == 0
    cert = Certificate.load(out / "certificate.json")
    assert cert.kind == "vnnlib" and cert.guarantee == "deterministic" and (cert.k, cert.n) == (1, 1)
    assert cert.bound == 1.0 and cert.delta == 0.0 and "Deterministic (no sampling)" in cert.statement
    assert float(cert.domain.mean_width()) > 1e-3 and cert.domain.numel() == 13305   # every weight and bias
    prop_record = cert.spec["properties"][0]
    assert Path(prop_record["path"]) == vnnlib_file.resolve() and len(prop_record["sha256"]) == 64
    assert cert.model["format"] == "onnx" and cert.model["input_shape"] == [1, 1, 5]


def test_crown_proves_the_property_on_the_whole_domain(run):
    _, out, onnx_file, vnnlib_file = run
    cert = Certificate.load(out / "certificate.json")
    net = load_onnx(onnx_file)
    spec = VnnlibSpecification.from_files(vnnlib_file, net.input_shape)     # the shipped file, parsed afresh
    with torch.no_grad():
        margins = compute_margins(bounded_network(net.module), spec, cert.domain, "CROWN", dtype=torch.float64)
        wider = compute_margins(bounded_network(net.module), spec, _scaled(cert.domain, 4.0), "CROWN",
                                dtype=torch.float64)
    assert bool(spec.certified(margins)[0])
    assert not bool(spec.certified(wider)[0])   # not trivially certifiable: 4x the domain is too wide
    assert recheck(out / "certificate.json", net.module).ok   # re-reads the recorded file, checks its SHA-256


def _scaled(domain: Orthotope, s: float) -> Orthotope:
    return domain.with_offsets({n: t * s for n, t in domain.lower.items()},
                               {n: t * s for n, t in domain.upper.items()})


def test_sampling_weights_and_inputs_finds_no_counterexample(run):
    _, out, onnx_file, vnnlib_file = run
    cert = Certificate.load(out / "certificate.json")
    net = load_onnx(onnx_file)
    prop = parse_vnnlib(vnnlib_file)
    worst = sampled_min_margin(net.module, cert.domain, prop, net.input_shape, n=10_000)
    assert worst > 0, f"counterexample sampled: margin {worst}"


def test_joint_pgd_attack_finds_no_counterexample(run):
    _, out, onnx_file, vnnlib_file = run
    cert = Certificate.load(out / "certificate.json")
    net = load_onnx(onnx_file)
    prop = parse_vnnlib(vnnlib_file)
    attacked = attacked_min_margin(net.module, cert.domain, prop, net.input_shape)
    sampled = sampled_min_margin(net.module, cert.domain, prop, net.input_shape, n=2000, seed=1)
    assert attacked > 0, f"PGD found a counterexample: margin {attacked}"
    assert attacked <= sampled   # the attack does at least as well as sampling


def test_the_attack_finds_counterexamples_where_they_exist():
    """Oracle check: on a `sat` instance (N1,7, property 3) the same attack, with a width-0 weight domain,
    finds an input that violates the property."""
    onnx_file, vnnlib_file = _files("1_7", 3)
    assert _truth("1_7", 3) == "sat"
    net = load_onnx(onnx_file)
    prop = parse_vnnlib(vnnlib_file)
    assert attacked_min_margin(net.module, Orthotope.around(net.module), prop, net.input_shape, restarts=32,
                               steps=60) <= 0


def test_written_vnnlib_and_onnx_let_abcrown_reverify(run):
    _, out, onnx_file, vnnlib_file = run
    cert = Certificate.load(out / "certificate.json")
    rows = list(csv.reader((out / "instances.csv").open()))
    assert len(rows) == 1 and rows[0][0] == "model.onnx" and float(rows[0][2]) > 0
    written = parse_vnnlib(out / rows[0][1])
    assert written == parse_vnnlib(vnnlib_file)               # the certified property, exactly
    original, exported = load_onnx(onnx_file), load_onnx(out / "model.onnx")
    assert verify_update(exported.module, cert).ok           # θ₀, exported, lies in the domain
    x = torch.rand(256, *original.input_shape) * 2 - 1
    with torch.no_grad():
        assert torch.equal(original.module(x), exported.module(x))


def test_projected_update_exported_as_onnx_is_covered_and_equal(run, tmp_path):
    _, out, onnx_file, _ = run
    update = BENCH / "onnx" / "ACASXU_run2a_2_5_batch_2000.onnx"    # a different network: a big "update"
    projected = tmp_path / "projected.onnx"
    assert main(["verify-update", str(update), str(out / "certificate.json"), "--quiet"]) == 1
    assert main(["project", str(update), str(out / "certificate.json"), "-o", str(projected), "--quiet"]) == 0
    assert main(["verify-update", str(projected), str(out / "certificate.json"), "--recheck", "--quiet"]) == 0
    cert = Certificate.load(out / "certificate.json")
    reference = copy.deepcopy(load_onnx(update).module)
    cert.domain.project_(reference)
    exported = load_onnx(projected).module
    x = torch.rand(256, 1, 1, 5) * 2 - 1
    with torch.no_grad():
        assert torch.equal(reference(x), exported(x))
    pt = tmp_path / "projected.pt"
    assert main(["project", str(update), str(out / "certificate.json"), "-o", str(pt), "--quiet"]) == 0
    state = torch.load(pt, weights_only=True)
    assert all(torch.equal(state[k], v) for k, v in reference.state_dict().items())


def test_several_properties_of_one_network_in_one_specification(tmp_path):
    """N2,9 satisfies properties 3 and 4 (both certified by CROWN at θ₀): one spec, two items."""
    onnx_file, p3 = _files("2_9", 3)
    _, p4 = _files("2_9", 4)
    assert _truth("2_9", 3) == _truth("2_9", 4) == "unsat"
    out = tmp_path / "out"
    assert main(["certify", str(_config(tmp_path, onnx_file, [p3, p4], 30)), "-o", str(out), "--quiet"]) == 0
    cert = Certificate.load(out / "certificate.json")
    assert (cert.k, cert.n) == (2, 2) and len(list((out / "vnnlib").glob("*.vnnlib"))) == 2
    net = load_onnx(onnx_file)
    for p in (p3, p4):
        assert sampled_min_margin(net.module, cert.domain, parse_vnnlib(p), net.input_shape, n=2000) > 0
