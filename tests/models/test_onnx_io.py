"""ONNX import/export: VNN-COMP networks load and match onnxruntime, files round-trip, loaded networks
are bounded soundly over weight boxes, and malformed or unsupported files fail with a clear error."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn
from torch.func import functional_call, vmap

from lirpa_lid import ElementwiseAffine, InputBox, ModelError, NativeBoundedNetwork, Orthotope
from lirpa_lid.datasets import data_dir
from lirpa_lid.errors import InputError
from lirpa_lid.models.onnx import OnnxNetwork, load_onnx, save_onnx

ort = pytest.importorskip("onnxruntime")

DATA = data_dir(must_exist=False) / "vnncomp2022"
ACAS_DIR = DATA / "acasxu" / "onnx"
MNIST_FC_DIR = DATA / "mnist_fc" / "onnx"
ACAS_FILES = sorted(p.name for p in ACAS_DIR.glob("*.onnx")) if ACAS_DIR.is_dir() else []
MNIST_FC_FILES = sorted(p.name for p in MNIST_FC_DIR.glob("*.onnx")) if MNIST_FC_DIR.is_dir() else []
ACAS_1_1 = "ACASXU_run2a_1_1_batch_2000.onnx"


def _data_file(folder: Path, name: str) -> Path:
    if not (folder / name).is_file():
        pytest.skip(f"VNN-COMP 2022 data not found in {folder} (set LIRPA_LID_DATA)")
    return folder / name


def _onnxruntime(path: Path, x: torch.Tensor) -> np.ndarray:
    """Outputs of the file on ``x`` ``[B, ...]``, one example at a time (VNN-COMP files fix batch 1)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    rows = [session.run(None, {name: row[None].numpy()})[0] for row in x]
    return np.concatenate([r.reshape(1, -1) for r in rows])


def _assert_matches_onnxruntime(path: Path, net: OnnxNetwork, x: torch.Tensor) -> None:
    expected = _onnxruntime(path, x)
    with torch.no_grad():
        got = net.module(x).reshape(len(x), -1).numpy()
    assert got.shape == (len(x), net.output_size)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(expected).max())))


def _inputs(shape: tuple[int, ...], n: int = 8, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _linears(module: nn.Module) -> list[nn.Linear]:
    return [m for m in module if isinstance(m, nn.Linear)]


# --------------------------------------------------------------------------- VNN-COMP 2022 networks
@pytest.mark.parametrize("name", ACAS_FILES or ["(no ACAS Xu files)"])
def test_acasxu_loads_and_matches_onnxruntime(name):
    path = _data_file(ACAS_DIR, name)
    net = load_onnx(path)
    assert net.input_shape == (1, 1, 5) and net.output_size == 5
    assert isinstance(net.module, nn.Sequential)
    linears = _linears(net.module)
    assert [(l.in_features, l.out_features) for l in linears] == [(5, 50)] + [(50, 50)] * 5 + [(50, 5)]
    assert all(isinstance(l.weight, nn.Parameter) and isinstance(l.bias, nn.Parameter) for l in linears)
    assert len(list(net.module.parameters())) == 14  # MatMul + Add pairs became Linear weights and biases
    _assert_matches_onnxruntime(path, net, _inputs(net.input_shape))


def test_all_45_acasxu_networks_present():
    if not ACAS_DIR.is_dir():
        pytest.skip(f"VNN-COMP 2022 data not found in {ACAS_DIR} (set LIRPA_LID_DATA)")
    assert len(ACAS_FILES) == 45


@pytest.mark.parametrize("name", MNIST_FC_FILES or ["(no mnist_fc files)"])
def test_mnist_fc_loads_and_matches_onnxruntime(name):
    path = _data_file(MNIST_FC_DIR, name)
    net = load_onnx(path)
    assert net.input_shape == (784, 1) and net.output_size == 10
    hidden = int(Path(name).stem.rsplit("x", 1)[1])  # mnist-net_256x<hidden layers>
    assert len(_linears(net.module)) == hidden + 1
    x = torch.rand(6, *net.input_shape, generator=torch.Generator().manual_seed(1))
    _assert_matches_onnxruntime(path, net, x)


# --------------------------------------------------------------------------- small hand-built graphs
def _write(tmp_path: Path, nodes, initializers: dict[str, np.ndarray], in_shape, out_shape,
           opset: int = 13, inputs=None, name: str = "model.onnx", extra_opsets=None) -> Path:
    """A float32 graph with input "x" and output "y" (batch dimension symbolic)."""
    graph = helper.make_graph(
        nodes, "test",
        inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", *in_shape])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", *out_shape])],
        [numpy_helper.from_array(np.asarray(v, dtype=np.float32 if v.dtype.kind == "f" else v.dtype), k)
         for k, v in initializers.items()])
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in (extra_opsets or {}).items()]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 7
    onnx.checker.check_model(model)
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def _rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("trans_b, alpha, beta, c_shape", [
    (0, 1.0, 1.0, (3,)), (1, 0.5, 2.0, (1, 3)), (0, -1.5, 0.25, ()), (1, 1.0, 1.0, None)])
def test_gemm_attributes_are_respected(tmp_path, trans_b, alpha, beta, c_shape):
    b = _rand(3, 4) if trans_b else _rand(4, 3)
    inits = {"B": b} | ({} if c_shape is None else {"C": _rand(*c_shape, seed=1)})
    node = helper.make_node("Gemm", ["x", "B"] + ([] if c_shape is None else ["C"]), ["y"],
                            transB=trans_b, alpha=alpha, beta=beta)
    path = _write(tmp_path, [node], inits, [4], [3])
    net = load_onnx(path)
    assert len(net.module) == 1 and isinstance(net.module[0], nn.Linear)
    assert (net.module[0].bias is None) == (c_shape is None)
    _assert_matches_onnxruntime(path, net, _inputs((4,)))


def test_gemm_with_transposed_data_is_rejected(tmp_path):
    path = _write(tmp_path, [helper.make_node("Gemm", ["x", "B"], ["y"], transA=1, name="g")],
                  {"B": _rand(1, 3)}, [1], [3])  # ORT-valid only for batch 1; moves the batch dimension
    with pytest.raises(ModelError, match=r"Gemm node 'g'.*transA"):
        load_onnx(path)


def test_matmul_alone_and_matmul_add(tmp_path):
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h"]), helper.make_node("Add", ["h", "b1"], ["a"]),
             helper.make_node("Relu", ["a"], ["r"]), helper.make_node("MatMul", ["r", "W2"], ["y"])]
    path = _write(tmp_path, nodes, {"W1": _rand(4, 6), "b1": _rand(6), "W2": _rand(6, 2)}, [4], [2])
    net = load_onnx(path)
    kinds = [type(m) for m in net.module]
    assert kinds == [nn.Linear, nn.ReLU, nn.Linear]
    assert net.module[0].bias is not None and net.module[2].bias is None
    _assert_matches_onnxruntime(path, net, _inputs((4,)))


@pytest.mark.parametrize("op, const_first", [("Sub", True), ("Sub", False), ("Div", False), ("Mul", True),
                                             ("Add", True)])
def test_arithmetic_with_constants(tmp_path, op, const_first):
    c = np.abs(_rand(1, 2, 3, seed=2)) + 0.5  # leading batch dimension of size 1, squeezed on import
    args = ["c", "x"] if const_first else ["x", "c"]
    path = _write(tmp_path, [helper.make_node(op, args, ["h"]), helper.make_node("Tanh", ["h"], ["y"])],
                  {"c": c}, [2, 3], [2, 3])
    net = load_onnx(path)
    assert isinstance(net.module[0], ElementwiseAffine) and not list(net.module.parameters())
    _assert_matches_onnxruntime(path, net, _inputs((2, 3)))


def test_division_of_constant_by_data_is_rejected(tmp_path):
    path = _write(tmp_path, [helper.make_node("Div", ["c", "x"], ["y"], name="inv")], {"c": _rand(3)}, [3], [3])
    with pytest.raises(ModelError, match=r"Div node 'inv'.*not an affine map"):
        load_onnx(path)


@pytest.mark.parametrize("auto_pad, pads, strides", [("NOTSET", [1, 1, 1, 1], [2, 2]), ("NOTSET", None, [1, 1]),
                                                     ("VALID", None, [1, 2])])
def test_conv_padding_and_strides(tmp_path, auto_pad, pads, strides):
    attrs = {"auto_pad": auto_pad, "strides": strides} | ({"pads": pads} if pads else {})
    nodes = [helper.make_node("Conv", ["x", "W", "b"], ["c"], **attrs), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Flatten", ["r"], ["y"])]
    path = _write(tmp_path, nodes, {"W": _rand(3, 2, 3, 3), "b": _rand(3, seed=1)}, [2, 7, 7], ["n"])
    net = load_onnx(path)
    assert isinstance(net.module[0], nn.Conv2d) and isinstance(net.module[0].weight, nn.Parameter)
    _assert_matches_onnxruntime(path, net, _inputs((2, 7, 7)))


@pytest.mark.parametrize("attrs, message", [({"pads": [0, 0, 1, 1]}, r"Conv node 'c1'.*asymmetric padding"),
                                            ({"auto_pad": "SAME_UPPER"}, r"SAME_UPPER")])
def test_conv_with_asymmetric_padding_is_rejected(tmp_path, attrs, message):
    node = helper.make_node("Conv", ["x", "W"], ["y"], name="c1", **attrs)
    path = _write(tmp_path, [node], {"W": _rand(1, 1, 2, 2)}, [1, 4, 4], [1, 4, 4])
    with pytest.raises(ModelError, match=message):
        load_onnx(path)


@pytest.mark.parametrize("target, layers", [([-1, 12], [nn.Flatten]), ([1, 12], [nn.Flatten]),
                                            ([0, 4, 3], [nn.Flatten, nn.Unflatten]), ([0, 0, 6], [])])
def test_reshape_keeping_the_batch(tmp_path, target, layers):
    nodes = [helper.make_node("Reshape", ["x", "s"], ["h"]), helper.make_node("Sigmoid", ["h"], ["y"])]
    path = _write(tmp_path, nodes, {"s": np.array(target, dtype=np.int64)}, [2, 6], ["n"] * (len(target) - 1))
    net = load_onnx(path)
    assert [type(m) for m in net.module] == layers + [nn.Sigmoid]
    _assert_matches_onnxruntime(path, net, _inputs((2, 6)))


@pytest.mark.parametrize("target", [[12, -1], [-1, 6], [2, 6]])
def test_reshape_mixing_the_batch_is_rejected(tmp_path, target):
    path = _write(tmp_path, [helper.make_node("Reshape", ["x", "s"], ["y"], name="rs")],
                  {"s": np.array(target, dtype=np.int64)}, [2, 6], ["n", "m"])
    with pytest.raises(ModelError, match=r"Reshape node 'rs'.*batch"):
        load_onnx(path)


def test_flatten_merging_the_batch_is_rejected(tmp_path):
    path = _write(tmp_path, [helper.make_node("Flatten", ["x"], ["y"], axis=0, name="fl")], {}, [2, 3], ["n"])
    with pytest.raises(ModelError, match=r"Flatten node 'fl'.*axis=0"):
        load_onnx(path)


def test_old_opset_is_upgraded(tmp_path):
    """Opset 8 Flatten (what ACAS Xu files use) is not convertible by onnx2torch without the upgrade."""
    nodes = [helper.make_node("Flatten", ["x"], ["f"], axis=1), helper.make_node("MatMul", ["f", "W"], ["m"]),
             helper.make_node("Add", ["m", "b"], ["y"])]
    path = _write(tmp_path, nodes, {"W": _rand(6, 2), "b": _rand(2)}, [2, 3], [2], opset=8)
    net = load_onnx(path)
    assert [type(m) for m in net.module] == [nn.Flatten, nn.Linear]
    _assert_matches_onnxruntime(path, net, _inputs((2, 3)))


def test_constant_nodes_are_folded(tmp_path):
    nodes = [helper.make_node("Constant", [], ["w"], value=numpy_helper.from_array(_rand(3, 2), "w")),
             helper.make_node("Transpose", ["w"], ["wt"], perm=[1, 0]),  # a constant sub-graph
             helper.make_node("MatMul", ["x", "wt"], ["y"])]
    path = _write(tmp_path, nodes, {}, [2], [3])
    net = load_onnx(path)
    assert [type(m) for m in net.module] == [nn.Linear]
    _assert_matches_onnxruntime(path, net, _inputs((2,)))


# --------------------------------------------------------------------------- errors
def test_truncated_file(tmp_path):
    good = save_onnx(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)), tmp_path / "mlp.onnx", (4,))
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ModelError, match=r"truncated\.onnx.*not a valid ONNX model"):
        load_onnx(bad)


def test_text_file(tmp_path):
    bad = tmp_path / "notes.onnx"
    bad.write_text("this is not a network\n")
    with pytest.raises(ModelError, match=r"notes\.onnx.*not a valid ONNX model"):
        load_onnx(bad)


def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match=r"absent\.onnx.*file not found"):
        load_onnx(tmp_path / "absent.onnx")


@pytest.mark.parametrize("domain, op", [("", "Softmax"), ("com.example", "Frobnicate")])
def test_unsupported_operator(tmp_path, domain, op):
    nodes = [helper.make_node("Gemm", ["x", "B"], ["h"], transB=1),
             helper.make_node(op, ["h"], ["y"], name="last", domain=domain)]
    path = _write(tmp_path, nodes, {"B": _rand(3, 4)}, [4], [3], name="odd.onnx",
                  extra_opsets={domain: 1} if domain else None)
    qualified = f"{domain}::{op}" if domain else op
    with pytest.raises(ModelError, match=rf"odd\.onnx.*unsupported ONNX operator '{qualified}' \({op} node 'last'\)"):
        load_onnx(path)


def test_two_inputs(tmp_path):
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 3]) for n in ("x", "z")]
    path = _write(tmp_path, [helper.make_node("Add", ["x", "z"], ["y"])], {}, [3], [3], inputs=inputs)
    with pytest.raises(ModelError, match=r"2 data inputs \['x', 'z'\]"):
        load_onnx(path)


def test_residual_graph_is_not_a_chain(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Add", ["r", "x"], ["y"], name="skip")]
    path = _write(tmp_path, nodes, {}, [3], [3])
    with pytest.raises(ModelError, match=r"value 'x' is used 2 times.*chain"):
        load_onnx(path)


def test_fixed_batch_larger_than_one_is_rejected(tmp_path):
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 3])]
    path = _write(tmp_path, [helper.make_node("Relu", ["x"], ["y"])], {}, [3], [3], inputs=inputs)
    with pytest.raises(ModelError, match=r"fixed first dimension 4"):
        load_onnx(path)


class _Fails(nn.Module):
    def forward(self, x):
        raise RuntimeError("cannot trace this")


def test_failed_export_leaves_no_file(tmp_path):
    with pytest.raises(ModelError, match=r"could not export.*cannot trace this"):
        save_onnx(_Fails(), tmp_path / "out.onnx", (3,))
    assert list(tmp_path.iterdir()) == []
    existing = tmp_path / "keep.onnx"
    existing.write_bytes(b"previous content")
    with pytest.raises(ModelError):
        save_onnx(_Fails(), existing, (3,))
    assert existing.read_bytes() == b"previous content" and list(tmp_path.iterdir()) == [existing]


@pytest.mark.parametrize("shape", [(), (0, 3), (2.0,), "4", (-1,)])
def test_save_rejects_bad_input_shape(tmp_path, shape):
    with pytest.raises(InputError, match="input_shape"):
        save_onnx(nn.Linear(3, 2), tmp_path / "x.onnx", shape)


# --------------------------------------------------------------------------- round trips
def _round_trip(module: nn.Module, input_shape: tuple[int, ...], path: Path) -> OnnxNetwork:
    """save → (onnxruntime with a batch of 7 equals the module) → load → same outputs."""
    module.eval()
    save_onnx(module, path, input_shape)
    x = _inputs(input_shape, n=7, seed=3)
    with torch.no_grad():
        expected = module(x)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    assert [o.name for o in session.get_outputs()] == ["output"]
    batched = session.run(None, {"input": x.numpy()})[0]  # dynamic batch axis
    np.testing.assert_allclose(batched, expected.numpy(), rtol=1e-5, atol=1e-6)
    net = load_onnx(path)
    assert net.input_shape == input_shape and net.output_size == expected[0].numel()
    with torch.no_grad():
        torch.testing.assert_close(net.module(x), expected, rtol=1e-5, atol=1e-6)
    return net


def test_round_trip_mlp(tmp_path):
    torch.manual_seed(0)
    module = nn.Sequential(ElementwiseAffine(torch.full((4,), 2.0), torch.linspace(-1, 1, 4)),
                           nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.Sigmoid(), nn.Linear(8, 3))
    net = _round_trip(module, (4,), tmp_path / "mlp.onnx")
    assert [type(m) for m in net.module] == [ElementwiseAffine, nn.Linear, nn.Tanh, nn.Linear, nn.Sigmoid,
                                             nn.Linear]


def test_round_trip_keeps_float64(tmp_path):
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    path = save_onnx(module, tmp_path / "double.onnx", (3,))
    net = load_onnx(path)
    assert all(p.dtype == torch.float64 for p in net.module.parameters())
    x = _inputs((3,), dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(net.module(x), module(x), rtol=1e-12, atol=1e-12)


def test_round_trip_cnn(tmp_path):
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3, stride=2, padding=1), nn.ReLU(),
                           nn.Flatten(), nn.Linear(2 * 3 * 3, 5))
    net = _round_trip(module, (1, 7, 7), tmp_path / "cnn.onnx")
    assert [type(m) for m in net.module] == [nn.Conv2d, nn.ReLU, nn.Conv2d, nn.ReLU, nn.Flatten, nn.Linear]
    assert net.module[2].stride == (2, 2) and net.module[2].padding == (1, 1)


def test_round_trip_acasxu(tmp_path):
    net = load_onnx(_data_file(ACAS_DIR, ACAS_1_1))
    again = _round_trip(net.module, net.input_shape, tmp_path / "acas.onnx")
    assert [type(m) for m in again.module] == [type(m) for m in net.module]


# --------------------------------------------------------------------------- soundness of bounds
def _sampled_outputs(module: nn.Module, domain: Orthotope, box: InputBox, n: int, chunk: int = 500):
    """Outputs ``[n, B, out]`` for ``n`` weight vectors of the domain and inputs of the box (half of
    each are corners), evaluated in chunks (one ACAS Xu weight vector has 13,305 numbers)."""
    g = torch.Generator().manual_seed(5)
    f = vmap(lambda params, x: functional_call(module, params, (x,)))
    outs = []
    for start in range(0, n, chunk):
        k = min(chunk, n - start)
        weights = domain.sample(k, generator=g)
        u = torch.rand(k, *box.lower.shape, generator=g, dtype=box.lower.dtype)
        u[: k // 2] = (u[: k // 2] > 0.5).to(u.dtype)
        outs.append(f(weights, box.lower + u * (box.upper - box.lower)))
    return torch.cat(outs)


def test_acasxu_bounds_contain_sampled_outputs():
    net = load_onnx(_data_file(ACAS_DIR, ACAS_1_1))
    module = net.module.double()
    domain = Orthotope.around(module, lower=1e-3)
    g = torch.Generator().manual_seed(4)
    x = torch.rand(3, *net.input_shape, generator=g, dtype=torch.float64) - 0.5
    box = InputBox.linf(x, 0.02)
    outs = _sampled_outputs(module, domain, box, n=10_000)
    bounded = NativeBoundedNetwork(module)
    for method in ("IBP", "CROWN"):
        b = bounded.compute_bounds(x, domain, method=method, input_box=box)
        assert b.lower.shape == b.upper.shape == (3, 5)
        assert (outs >= b.lower - 1e-5).all(), f"{method}: a lower bound is above a sampled output"
        assert (outs <= b.upper + 1e-5).all(), f"{method}: an upper bound is below a sampled output"
        if method == "CROWN":  # the check can fail: CROWN is close to the sampled range for some inputs
            assert ((b.upper - b.lower) < 3 * (outs.amax(0) - outs.amin(0))).any()
    # the sample exercises the weight box: it leaves the bounds computed for the reference weights alone
    fixed = bounded.compute_bounds(x, None, method="CROWN", input_box=box)
    assert ((outs < fixed.lower - 1e-5) | (outs > fixed.upper + 1e-5)).any()
