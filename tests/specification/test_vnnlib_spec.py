"""VNN-LIB properties as a specification: the query, the hard decision (against VnnlibProperty's own
certified_margin), disjunctive safe sets, the soft surrogate, subsets and digests."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lirpa_lid import bounded_network, load_onnx
from lirpa_lid.datasets import data_dir
from lirpa_lid.errors import SpecificationError
from lirpa_lid.margin import compute_margins
from lirpa_lid.specification.vnnlib.parse import Disjunct, VnnlibProperty, parse_vnnlib
from lirpa_lid.specification.vnnlib.spec import VnnlibSpecification

BENCH = data_dir(must_exist=False) / "vnncomp2022"


def _bench(name: str):
    path = BENCH / name
    if not (path / "vnnlib").is_dir():
        pytest.skip(f"VNN-COMP 2022 {name} data not found under {BENCH}")
    return path


def _prop(disjuncts) -> VnnlibProperty:
    """Disjuncts as (lower, upper, C, d) with 2 inputs and 3 outputs."""
    return VnnlibProperty(2, 3, tuple(Disjunct(np.array(lo, float), np.array(up, float), np.array(C, float),
                                               np.array(d, float)) for lo, up, C, d in disjuncts))


BOX = ([0.0, 0.0], [1.0, 1.0])
OTHER_BOX = ([2.0, 2.0], [3.0, 3.0])


def _two_box_spec():
    """Property 0: one box, disjunct A (2 rows) or B (1 row); property 1: two boxes, one row each."""
    p0 = _prop([(*BOX, [[1, -1, 0], [1, 0, -1]], [0, 0]), (*BOX, [[0, 1, -1]], [0.5])])
    p1 = _prop([(*BOX, [[-1, 1, 0]], [0]), (*OTHER_BOX, [[0, 0, 1]], [1.0])])
    return VnnlibSpecification([p0, p1], (2,), dtype=torch.float64)


def test_query_stacks_input_groups_and_pads_rows():
    spec = _two_box_spec()
    q = spec.query()
    assert len(spec) == 2 and spec.num_queries == 3           # p0: one box; p1: two boxes
    assert q.x.shape == (3, 2) and q.C.shape == (3, 3, 3) and q.d.shape == (3, 3)
    torch.testing.assert_close(q.lower[2], torch.tensor([2.0, 2.0], dtype=torch.float64))
    assert not q.C[1, 1:].any() and not q.C[2, 1:].any()       # padding rows are zero
    assert q.d[0].tolist() == [0.0, 0.0, 0.5]
    assert ((q.lower <= q.x) & (q.x <= q.upper)).all()


def test_hard_decision_equals_the_property_own_certified_margin():
    """min over disjuncts of max over rows, per property, exactly VnnlibProperty.certified_margin."""
    spec = _two_box_spec()
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        m = torch.randn(3, 3, generator=g, dtype=torch.float64)
        got = spec.certified_margins(m)
        # p0: disjunct A = rows 0,1 of query 0, disjunct B = row 2 of query 0
        expected0 = spec.properties[0].certified_margin([m[0, :2], m[0, 2:3]])
        expected1 = spec.properties[1].certified_margin([m[1, :1], m[2, :1]])
        assert float(got[0]) == float(expected0) and float(got[1]) == float(expected1)
        assert spec.certified(m).tolist() == [float(expected0) > 0, float(expected1) > 0]


def test_disjunctive_safe_set_one_row_suffices_but_every_disjunct_needs_one():
    spec = _two_box_spec()
    m = torch.full((3, 3), -1.0, dtype=torch.float64)
    m[0, 1] = 0.2          # disjunct A excluded by its second row
    assert not spec.certified(m)[0]   # disjunct B still possible
    m[0, 2] = 0.1
    assert spec.certified(m)[0]
    m[0, 2] = 0.0          # a margin of exactly 0 is not certified (strict)
    assert not spec.certified(m)[0]


def test_soft_value_is_differentiable_increasing_and_tracks_the_hard_value():
    spec = _two_box_spec()
    m = torch.tensor([[0.3, -2.0, 0.4], [0.5, 0, 0], [0.2, 0, 0]], dtype=torch.float64, requires_grad=True)
    v = spec.soft_value(m)
    v.backward()
    assert torch.isfinite(m.grad).all() and (m.grad >= 0).all()
    assert float(spec.hard_value(m.detach())) == 1.0 and float(v.detach()) > 0.9
    with torch.no_grad():
        worse = m.detach().clone()
        worse[0, 0] -= 1.0
        assert float(spec.soft_value(worse)) < float(v)
    huge = torch.tensor([[1e6, -1e6, 1e6], [-1e6, 0, 0], [1e6, 0, 0]], dtype=torch.float64, requires_grad=True)
    spec.soft_value(huge).backward()
    assert torch.isfinite(huge.grad).all()


def test_zero_row_disjunct_is_never_certified():
    p = _prop([(*BOX, np.zeros((0, 3)), [])])
    spec = VnnlibSpecification(p, (2,))
    m = torch.zeros(1, 1)
    assert not spec.certified(m)[0] and math.isfinite(float(spec.soft_value(m)))


def test_subset_threshold_digest_and_describe(tmp_path):
    spec = _two_box_spec()
    sub = spec.subset(torch.tensor([1]))
    assert len(sub) == 1 and sub.num_queries == 2 and sub.properties[0] is spec.properties[1]
    assert spec.with_threshold(0.5).threshold == 0.5
    assert spec.digest() == _two_box_spec().digest() != sub.digest()
    d = spec.describe()
    assert d["kind"] == "vnnlib" and d["n"] == 2 and d["input_shape"] == [2]
    assert spec.guarantee == "deterministic"


@pytest.mark.parametrize("kwargs, message", [
    (dict(input_shape=(3,)), "has 2 inputs"),
    (dict(threshold=1.5), "threshold"),
    (dict(temperature=0.0), "temperature"),
    (dict(properties=[]), "at least one"),
    (dict(sources=["a", "b"]), "sources"),
])
def test_bad_arguments(kwargs, message):
    args = dict(properties=_prop([(*BOX, [[1, -1, 0]], [0])]), input_shape=(2,)) | kwargs
    with pytest.raises(SpecificationError, match=message):
        VnnlibSpecification(**args)


def test_float32_query_contains_the_exact_box_and_never_enlarges_margins():
    p = _prop([([0.1, 1 / 3], [0.7, 2 / 3], [[1, -1, 0]], [0.1])])
    q = VnnlibSpecification(p, (2,)).query(torch.float32)
    lo, up = p.disjuncts[0].input_lower, p.disjuncts[0].input_upper
    assert (q.lower.double().numpy() <= lo).all() and (q.upper.double().numpy() >= up).all()
    assert float(q.d[0, 0].double()) >= 0.1


def test_every_shipped_property_matches_crown_decision_of_the_property_code():
    """On real files: the spec's decision from compute_margins equals the README recipe's (per input
    group, VnnlibProperty.is_certified_safe) for ACAS Xu props 1-10 on one network (prop 6 and 10 have
    several boxes / disjuncts) and one mnist_fc property."""
    bench = _bench("acasxu")
    net = load_onnx(bench / "onnx" / "ACASXU_run2a_2_4_batch_2000.onnx")
    model = net.module.double()
    backend = bounded_network(model)
    for i in range(1, 11):
        prop = parse_vnnlib(bench / "vnnlib" / f"prop_{i}.vnnlib")
        spec = VnnlibSpecification(prop, net.input_shape, dtype=torch.float64)
        with torch.no_grad():
            mine = bool(spec.certified(compute_margins(backend, spec, None, "CROWN"))[0])
            margins = [None] * len(prop.disjuncts)
            for g in prop.input_groups():
                box = g.input_box(net.input_shape, dtype=torch.float64)
                C, d = g.spec_tensors(dtype=torch.float64)
                lower = backend.compute_bounds(box.center(), C=C, input_box=box, bound_upper=False).lower[0] - d
                for k, m in zip(g.disjunct_indices, g.split(lower)):
                    margins[k] = m
        assert mine == prop.is_certified_safe(margins), i
    fc = _bench("mnist_fc")
    net = load_onnx(fc / "onnx" / "mnist-net_256x2.onnx")
    spec = VnnlibSpecification.from_files(fc / "vnnlib" / "prop_0_0.03.vnnlib", net.input_shape)
    assert len(spec.properties[0].disjuncts) == 9 and spec.num_queries == 1   # 9 alternatives, one box
    assert spec.describe()["properties"][0]["sha256"]


def test_margins_within_an_enclosing_box_are_sound_for_vnnlib_queries():
    """Reusing margins of a larger weight box: only queries with an open (non-padding) row are bounded
    again, and every reused margin is a lower bound over sampled weights and inputs of the smaller box."""
    from lirpa_lid import Orthotope
    from lirpa_lid.margin import margins_within
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).double()
    spec = _two_box_spec()
    net = bounded_network(model)
    big = Orthotope.around(model, lower=0.01)
    small = big.scaled(0.5)
    known = compute_margins(net, spec, big, "CROWN", dtype=torch.float64)   # query 1 holds, padded rows
    q = spec.query()
    live = (q.C != 0).any(-1)
    open_queries = ~((known > 0) | ~live).all(dim=1)
    calls = []
    original = net.compute_bounds
    net.compute_bounds = lambda x, *a, **k: (calls.append(int(x.shape[0])), original(x, *a, **k))[1]
    reused = margins_within(net, spec, small, "CROWN", known)
    assert 0 < sum(calls) == int(open_queries.sum()) < len(q)
    assert (reused >= known).all()
    g = torch.Generator().manual_seed(1)
    weights = small.sample(300, generator=g)
    for i in range(300):
        u = torch.rand(q.x.shape, generator=g, dtype=torch.float64)
        x = q.lower + u * (q.upper - q.lower)
        out = torch.func.functional_call(model, {n: w[i] for n, w in weights.items()}, (x,))
        true = torch.einsum("qrk,qk->qr", q.C, out) - q.d
        assert (true >= reused).all()
