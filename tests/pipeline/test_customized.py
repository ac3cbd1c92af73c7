"""α,β-CROWN's Customized("module", "function", **kwargs) hooks: parsing (literals only), module
lookup (file next to the config, custom/ folder, sys.path), model and data calling conventions, and
errors; then the hooks of tests/abcrown_custom.py through a real specification file."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from lirpa_lid.errors import InputError, LirpaLidError, ModelError, SpecificationError
from lirpa_lid.pipeline.config import load_config
from lirpa_lid.pipeline.customized import Customized, call_data, call_model, parse_customized
from lirpa_lid.pipeline.problems import build_problem, load_spec

HERE = Path(__file__).resolve().parents[1]  # tests/
SPEC = {"type": "lp", "epsilon": 0.05, "norm": float("inf")}


def test_parse_customized_literal_arguments():
    hook = parse_customized('Customized("custom_model_data", "try_model_fsb", in_dim=784, sizes=[1, 2], '
                            'name="x", flag=True, none=None)', "model.name")
    assert hook == Customized("custom_model_data", "try_model_fsb", (),
                              {"in_dim": 784, "sizes": [1, 2], "name": "x", "flag": True, "none": None})
    assert parse_customized("Customized('a.py', 'f', 3, 4)", "w").args == (3, 4)
    assert str(parse_customized('Customized("a", "f", k=1)', "w")) == "Customized('a', 'f', k=1)"


@pytest.mark.parametrize("text, message", [
    ('Customized("a", "f", k=__import__("os"))', "must be literals"),
    ('Customized("a", "f", **opts)', "must be literals"),
    ('Customized("a")', "module and the function name"),
    ('Customized(1, "f")', "module and the function name"),
    ('Customized("a", "f"', "cannot parse"),
    ('Other("a", "f")', "expected Customized"),
    ('os.system("x")', "expected NAME or NAME"),
])
def test_parse_errors(text, message):
    with pytest.raises(SpecificationError, match=message):
        parse_customized(text, "model.name")


def test_module_lookup_file_name_custom_folder_and_sys_path(tmp_path, monkeypatch):
    shutil.copy(HERE / "abcrown_custom.py", tmp_path / "mine.py")
    (tmp_path / "custom").mkdir()
    shutil.copy(HERE / "abcrown_custom.py", tmp_path / "custom" / "in_custom.py")
    for module in ("mine.py", "mine", "in_custom", str(tmp_path / "mine.py")):
        model = call_model(Customized(module, "two_relu_toy_model", (), {"in_dim": 2}), tmp_path)
        assert isinstance(model, nn.Sequential) and model[2].bias.tolist() == [2.0, 0.0]
    other = tmp_path / "elsewhere"
    other.mkdir()
    shutil.copy(HERE / "abcrown_custom.py", other / "on_sys_path_mod.py")
    monkeypatch.syspath_prepend(str(other))
    assert isinstance(call_model(Customized("on_sys_path_mod", "two_relu_toy_model"), tmp_path), nn.Module)
    with pytest.raises(InputError, match="not found: looked for"):
        call_model(Customized("nowhere", "f"), tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        call_model(Customized("nowhere.py", "f"), tmp_path)
    with pytest.raises(InputError, match="has no function 'missing'"):
        call_model(Customized("mine", "missing"), tmp_path)
    (tmp_path / "broken.py").write_text("import no_such_package_xyz\n")
    with pytest.raises(InputError, match="importing broken.py .* failed: ModuleNotFoundError"):
        call_model(Customized("broken.py", "f"), tmp_path)


def test_model_hook_errors():
    with pytest.raises(ModelError, match="raised RuntimeError: the weights file is corrupt"):
        call_model(Customized("abcrown_custom.py", "broken_model"), HERE)
    with pytest.raises(ModelError, match="returned a str"):
        call_model(Customized("abcrown_custom.py", "not_a_model"), HERE)
    with pytest.raises(ModelError, match="unexpected keyword"):
        call_model(Customized("abcrown_custom.py", "two_relu_toy_model", (), {"typo": 1}), HERE)


@pytest.mark.parametrize("kwargs", [{}, {"with_runnerup": True}, {"as_dict": True}])
def test_data_hook_conventions_5_6_tuple_and_dict(kwargs):
    out = call_data(Customized("abcrown_custom.py", "separable_data", (), {"n": 10, **kwargs}), SPEC, HERE)
    assert out.X.shape == (10, 2) and out.labels.tolist() == [0, 1] * 5
    assert out.data_max.shape == (1, 2) and float(out.eps) == pytest.approx(0.05)


def test_data_hook_gets_the_specification_section():
    out = call_data(Customized("abcrown_custom.py", "simple_box_data"), {**SPEC, "epsilon": None}, HERE)
    assert float(out.eps.flatten()[0]) == 2.0           # the hook's own default when epsilon is null
    with pytest.raises(SpecificationError, match="returned a 2-tuple|raised"):
        call_data(Customized("abcrown_custom.py", "two_relu_toy_model"), SPEC, HERE)


def _write_config(tmp_path: Path, text: str) -> Path:
    shutil.copy(HERE / "abcrown_custom.py", tmp_path / "abcrown_custom.py")
    f = tmp_path / "spec.yaml"
    f.write_text(text)
    return f


def test_specification_file_with_customized_model_and_data(tmp_path):
    f = _write_config(tmp_path, """
model:
  name: Customized("abcrown_custom", "separable_model", width=16)
data:
  dataset: Customized("abcrown_custom", "separable_data", n=100)
  num_outputs: 2
specification:
  type: lp
  epsilon: 0.05
lid:
  threshold: 0.9
  held_out: 0.4
""")
    problem = build_problem(load_config(f))
    assert problem.spec.kind == "local_robustness" and len(problem.spec) == 60 and len(problem.held_out) == 40
    held = set(map(tuple, problem.held_out.x.tolist()))
    assert not held & set(map(tuple, problem.spec.x.tolist()))       # disjoint parts
    assert problem.base_value == 1.0 and problem.spec.threshold == 0.9 and problem.required == 0.9
    # the data hook's clip range [-1, 1] and eps are used: boxes are x ± 0.05 inside it
    torch.testing.assert_close(problem.spec.upper - problem.spec.x, torch.full_like(problem.spec.x, 0.05))
    spec = load_spec(load_config(f))
    assert len(spec) == 100


@pytest.mark.parametrize("body, error, message", [
    ("model:\n  name: Customized(\"abcrown_custom\", \"separable_model\")\ndata:\n  dataset: Customized("
     "\"abcrown_custom\", \"separable_data\")\n  num_outputs: 3\nspecification:\n  type: certified-accuracy\n"
     "lid:\n  threshold: 0.5\n", SpecificationError, "num_outputs is 3, the model has 2"),
    ("model:\n  name: mlp(sizes=[3, 2])\ndata:\n  dataset: "
     "Customized(\"abcrown_custom\", \"separable_data\")\nspecification:\n  type: certified-accuracy\nlid:\n"
     "  threshold: 0.5\n", LirpaLidError, "cannot process inputs of shape"),
    ("model:\n  name: Customized(\"abcrown_custom\", \"separable_model\")\ndata:\n  dataset: Customized("
     "\"abcrown_custom\", \"separable_data\")\nspecification:\n  type: lp\n  epsilon: 2.5\nlid:\n"
     "  threshold: 0.5\n", SpecificationError, "not satisfied|is not|leaves"),
    ("model:\n  name: mlp(sizes=[2, 2])\ndata:\n  dataset: Customized(\"abcrown_custom\", \"separable_data\")\n"
     "specification:\n  type: certified-accuracy\nlid:\n  threshold: 0.5\n  held_out: 200\n",
     SpecificationError, "held_out=200 of 200 items"),
    ("model:\n  name: mlp(sizes=[2, 2])\ndata:\n  dataset: Customized(\"abcrown_custom\", \"separable_data\")\n"
     "specification:\n  type: certified-accuracy\nlid:\n  threshold: 0.5\n  free: ['9.*']\n",
     SpecificationError, "pattern '9.\\*' matches no parameter"),
    ("model:\n  name: Customized(\"abcrown_custom\", \"bn_model\")\ndata:\n  dataset: Customized(\"abcrown_custom\", "
     "\"separable_data\")\nspecification:\n  type: certified-accuracy\nlid:\n  threshold: 0.0\n  free: ['1.*']\n",
     LirpaLidError, "not weights or biases of a Linear/Conv2d layer"),
    ("model:\n  name: mlpp(sizes=[2, 2])\ndata:\n  dataset: MNIST\nspecification:\n  type: certified-accuracy\n"
     "lid:\n  threshold: 0.5\n", ModelError, "unknown model 'mlpp' \\(did you mean 'mlp'\\?\\)"),
    ("model:\n  name: mlp(sizes=[2, 2])\n  path: missing.pt\ndata:\n  dataset: MNIST\nspecification:\n"
     "  type: certified-accuracy\nlid:\n  threshold: 0.5\n", InputError, "model.path .*missing.pt does not exist"),
    ("model:\n  name: mlp(sizes=[2, 2])\nspecification:\n  vnnlib_path: p.vnnlib\n", SpecificationError,
     "needs model.input_shape"),
])
def test_problem_errors(tmp_path, body, error, message):
    f = _write_config(tmp_path, body)
    if "epsilon: 2.5" in body:
        # epsilon 2.5 makes the balls leave nothing certified: the width-0 value is 0 < threshold, which
        # build_problem reports through base_value (run_problem then says "not certified at theta0")
        problem = build_problem(load_config(f))
        assert problem.base_value == 0.0
        return
    with pytest.raises(error, match=message):
        build_problem(load_config(f))


def test_state_dict_conventions(tmp_path):
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 2))
    torch.save({"state_dict": model.state_dict()}, tmp_path / "w.pt")        # alpha,beta-CROWN's wrapped form
    torch.save({"0.weight": torch.zeros(2, 2)}, tmp_path / "bad.pt")
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    base = ("model:\n  name: mlp(sizes=[2, 2])\n  path: {}\ndata:\n  dataset: Customized(\"abcrown_custom\", "
            "\"separable_data\")\nspecification:\n  type: certified-accuracy\nlid:\n  threshold: 0.0\n")
    problem = build_problem(load_config(_write_config(tmp_path, base.format("w.pt"))))
    torch.testing.assert_close(problem.model[1].weight, model[1].weight)
    assert problem.model_record["sha256"]
    with pytest.raises(ModelError, match="does not fit the model: missing"):
        build_problem(load_config(_write_config(tmp_path, base.format("bad.pt"))))
    with pytest.raises(ModelError, match="not a PyTorch state dict"):
        build_problem(load_config(_write_config(tmp_path, base.format("junk.pt"))))


def test_hook_module_is_not_left_on_sys_path(tmp_path):
    before = list(sys.path)
    call_model(Customized(str(HERE / "abcrown_custom.py"), "two_relu_toy_model"), tmp_path)
    assert sys.path == before
