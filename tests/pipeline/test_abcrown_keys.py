"""α,β-CROWN's own configuration files are accepted (issue 26, items 1-3): keys at α,β-CROWN's default
values change nothing and are accepted silently, `general.device: cuda` falls back to the CPU with a note,
`specification.vnnlib_path: null` means no VNN-LIB, and `type: lp` with a csv runs the csv."""
from __future__ import annotations

import pytest

from lirpa_lid.errors import SpecificationError
from lirpa_lid.pipeline.config import parse_config

#: as α,β-CROWN prints its resolved configuration (complete_verifier/arguments.py defaults)
ABCROWN_DEFAULTS = {
    "model": {"onnx_quirks": "", "onnx_optimization_flags": [], "check_optimized": False,
              "flatten_final_output": False, "onnx_path_prefix": "", "onnx_loader": "default_onnx_and_vnnlib_loader",
              "optimize_graph": None, "with_jacobian": False},
    "data": {"data_idx_file": None, "select_instance": None, "pkl_path": None, "data_filter_path": None},
    "specification": {"rhs_offset": None, "epsilon_min": 0, "vnnlib_path_prefix": ""},
}


def _config(extra: dict) -> dict:
    base = {"model": {"onnx_path": "net.onnx"}, "specification": {"vnnlib_path": "prop.vnnlib"}}
    out = {k: dict(v) for k, v in base.items()}
    for section, keys in extra.items():
        out.setdefault(section, {}).update(keys)
    return out


@pytest.mark.parametrize("section, key", [(s, k) for s, keys in ABCROWN_DEFAULTS.items() for k in keys])
def test_a_key_at_its_abcrown_default_is_accepted(section, key, tmp_path):
    cfg = parse_config(_config({section: {key: ABCROWN_DEFAULTS[section][key]}}), tmp_path)
    assert cfg.specification.type == "vnnlib"


def test_all_defaults_together_and_a_changing_value_is_still_an_error(tmp_path):
    parse_config(_config(ABCROWN_DEFAULTS), tmp_path)
    with pytest.raises(SpecificationError, match="onnx_quirks"):
        parse_config(_config({"model": {"onnx_quirks": "{'Reshape': {'fix_batch_size': True}}"}}), tmp_path)
    with pytest.raises(SpecificationError, match="epsilon_min"):
        parse_config(_config({"specification": {"epsilon_min": 0.1}}), tmp_path)


def test_cuda_device_falls_back_to_the_cpu_with_a_note(tmp_path):
    cfg = parse_config(_config({"general": {"device": "cuda"}}), tmp_path)
    assert cfg.general.device == "cpu" and any("general.device=cuda" in note for note in cfg.ignored)


def test_null_vnnlib_path_means_no_vnnlib(tmp_path):
    cfg = parse_config({"model": {"name": "blobs_mlp"}, "data": {"dataset": "MNIST"},
                        "specification": {"vnnlib_path": None, "epsilon": 0.01}, "lid": {"limit": 0.9}}, tmp_path)
    assert cfg.specification.type != "vnnlib"


def test_lp_type_with_a_csv_runs_the_csv(tmp_path):
    cfg = parse_config({"general": {"csv_name": "instances.csv"}, "specification": {"type": "lp"}}, tmp_path)
    assert cfg.specification.type == "vnnlib"
