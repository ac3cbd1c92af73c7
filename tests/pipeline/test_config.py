"""YAML specification files: every shipped file parses; α,β-CROWN names and defaults; unknown keys with
suggestions; ignored and unsupported α,β-CROWN settings; consistency rules; paths."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from lirpa_lid.errors import SpecificationError
from lirpa_lid.pipeline.config import RunConfig, load_config, parse_config

SPECS = Path(__file__).resolve().parents[2] / "specs"
ACAS = {"model": {"onnx_path": "net.onnx"}, "specification": {"vnnlib_path": "prop.vnnlib"}}
MNIST = {"model": {"name": "mlp(sizes=[784, 10])"}, "data": {"dataset": "MNIST"},
         "specification": {"type": "lp", "epsilon": 0.01}, "lid": {"threshold": 0.5}}


def _with(base: dict, section: str, **keys) -> dict:
    out = {k: dict(v) for k, v in base.items()}
    out.setdefault(section, {}).update(keys)
    return out


def test_every_shipped_specification_file_parses():
    files = sorted(SPECS.glob("*.yaml"))
    assert len(files) >= 5
    kinds = set()
    for f in files:
        cfg = load_config(f)
        assert isinstance(cfg, RunConfig) and cfg.path == f.resolve() and cfg.ignored == ()
        kinds.add("batch" if cfg.is_batch else cfg.specification.type)
    assert kinds >= {"lp", "vnnlib", "certified-accuracy", "batch"}


def test_abcrown_names_and_defaults():
    cfg = parse_config({"general": {"device": "cpu", "seed": 3},
                        "model": {"onnx_path": "a.onnx", "input_shape": [-1, 1, 28, 28]},
                        "data": {"dataset": "MNIST", "mean": [0.1307], "std": 0.3081, "start": 5, "end": 10},
                        "specification": {"type": "lp", "epsilon": 0.02, "norm": math.inf,
                                          "robustness_type": "verified-acc"},
                        "lid": {"increment": 0.1, "limit": 0.9}})
    assert cfg.model.input_shape == (1, 28, 28)          # alpha,beta-CROWN's -1 batch dimension dropped
    assert cfg.data.mean == (0.1307,) and cfg.data.std == 0.3081 and cfg.data.split == "test"
    assert cfg.specification.norm == math.inf and cfg.general.seed == 3
    assert cfg.lid.method == "CROWN" and cfg.lid.domain == "orthotope"


def test_vnnlib_path_overrides_the_lp_default_as_in_abcrown():
    cfg = parse_config(ACAS)
    assert cfg.specification.type == "vnnlib" and cfg.specification.vnnlib_path == ("prop.vnnlib",)
    several = parse_config(_with(ACAS, "specification", vnnlib_path=["a.vnnlib", "b.vnnlib"]))
    assert several.specification.vnnlib_path == ("a.vnnlib", "b.vnnlib")


@pytest.mark.parametrize("raw, message", [
    (_with(ACAS, "lid", treshold=0.5), r"unknown key 'treshold' in section 'lid' \(did you mean 'threshold'\?\)"),
    (_with(ACAS, "model", onx_path="x"), r"did you mean 'onnx_path'"),
    (_with(ACAS, "specification", epsilom=0.1), r"section 'specification'.*did you mean 'epsilon'"),
    ({**ACAS, "lids": {}}, r"unknown section 'lids' \(did you mean 'lid'\?\)"),
    (_with(ACAS, "lid", domain="zonotope"), "zonotope domains are not implemented yet"),
    (_with(ACAS, "general", device="tpu"), "CPU only"),  # cuda falls back to the CPU (test_abcrown_keys.py)
    (_with(ACAS, "model", onnx_quirks="{}"), "model.onnx_quirks is an alpha,beta-CROWN option that lirpa_lid "
                                             "does not support"),
    (_with(MNIST, "data", data_idx_file="idx.txt"), "data.data_idx_file is an alpha,beta-CROWN option"),
    (_with(MNIST, "specification", type="box"), "'box' specification"),
    (_with(MNIST, "specification", norm=2), "only the L-inf norm"),
    (_with(MNIST, "specification", robustness_type="runnerup"), "verified-acc"),
    (_with(MNIST, "specification", epsilon=0), "must be > 0"),
    (_with(MNIST, "specification", type="certified-accuracy"), "epsilon is set but type is certified-accuracy"),
    (_with(MNIST, "lid", method="beta-CROWN"), "unknown bound method"),
    (_with(MNIST, "lid", certify_method="beta-CROWN"), r"lid\.certify_method.*unknown bound method"),
    (_with(MNIST, "lid", grow=0.5), r"lid\.grow must be >= 1"),
    (_with(MNIST, "lid", threshold=1.5), "must be <= 1"),
    (_with(MNIST, "lid", increment=0.1), "alternatives"),
    (_with(MNIST, "data", dataset="CIFAR"), "unknown dataset 'CIFAR'"),
    (_with(MNIST, "data", dataset="MNSIT"), "did you mean 'MNIST'"),
    (_with(MNIST, "data", start=10, end=5), "must be larger than data.start"),
    (_with(MNIST, "data", std=0), "must be > 0"),
    (_with(ACAS, "lid", held_out=0.5), "no meaning for a vnnlib specification"),
    (_with(ACAS, "lid", iterations=2.5), "must be an integer"),
    (_with(ACAS, "model", name="m"), "both set"),
    (_with(ACAS, "model", name="Customized(\"m.py\", \"f\", x=open('/etc'))"), "must be literals"),
    (_with(ACAS, "model", name="Customized(\"m.py\")"), "module and the function name"),
    (_with(MNIST, "lid", threshold=None, limit=None), None),
    ({"model": {"onnx_path": "a.onnx"}}, "needs data.dataset"),
    ({"specification": {"vnnlib_path": "a"}}, "needs name"),
    ({"general": {"csv_name": "i.csv"}, "model": {"onnx_path": "a.onnx"}}, "do not also set"),
    ([1, 2], "must be a mapping of sections"),
    ({"model": [1]}, "must be a mapping"),
])
def test_bad_configurations_name_section_and_key(raw, message):
    if message is None:  # threshold: null means "not given" → then some rule is required
        raw = _with(MNIST, "lid")
        raw["lid"] = {"threshold": None}
        message = "needs threshold, or increment"
    with pytest.raises(SpecificationError, match=message):
        parse_config(raw)


def test_abcrown_search_sections_and_harmless_keys_are_ignored_and_reported():
    raw = _with(ACAS, "general", conv_mode="patches", complete_verifier="bab", root_path="")
    raw["solver"] = {"batch_size": 64, "alpha-crown": {"iteration": 20}}
    raw["bab"] = {"timeout": 120}
    raw["attack"] = {"pgd_order": "before"}
    cfg = parse_config(raw)
    assert set(cfg.ignored) == {"general.conv_mode", "general.complete_verifier", "solver", "bab", "attack"}
    assert cfg.general.root_path is None


def test_certify_method_and_grow():
    cfg = parse_config(_with(ACAS, "lid", method="ibp", certify_method="crown", grow=4))
    assert (cfg.lid.method, cfg.lid.certify_method, cfg.lid.grow) == ("IBP", "CROWN", 4.0)
    default = parse_config(ACAS)
    assert default.lid.certify_method is None and default.lid.grow == 1.0


def test_null_values_mean_defaults():
    cfg = parse_config(_with(ACAS, "lid", method=None, iterations=None))
    assert cfg.lid.method == "CROWN" and cfg.lid.iterations == 200


def test_paths_are_relative_to_the_file_or_root_path_and_expand_data_dir(tmp_path):
    f = tmp_path / "sub" / "spec.yaml"
    f.parent.mkdir()
    f.write_text("model:\n  onnx_path: net.onnx\nspecification:\n  vnnlib_path: '{data_dir}/p.vnnlib'\n")
    cfg = load_config(f)
    assert cfg.resolve("net.onnx") == f.parent / "net.onnx"
    assert cfg.resolve("{data_dir}/p.vnnlib", data_dir=tmp_path) == tmp_path / "p.vnnlib"
    rooted = parse_config({**ACAS, "general": {"root_path": "../bench"}}, f)
    assert rooted.resolve("net.onnx") == f.parent / "../bench" / "net.onnx"
    assert rooted.resolve(str(tmp_path / "abs.onnx")) == tmp_path / "abs.onnx"


def test_malformed_yaml_reports_file_and_line(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("model:\n  onnx_path: a.onnx\n  vnnlib_path: [unclosed\nlid: {}\n")
    with pytest.raises(SpecificationError, match=r"bad.yaml, line \d+, column \d+: malformed YAML"):
        load_config(f)
    with pytest.raises(SpecificationError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    f.write_text("model:\n  onnx_path: a.onnx\n  onx: 1\n")
    with pytest.raises(SpecificationError, match=r"bad.yaml: unknown key 'onx' in section 'model'"):
        load_config(f)
