"""VNN-LIB parsing, normal form, writing, and the certified-safety decision.

The shipped VNN-COMP 2022 files are checked against contents read by hand, against the networks'
ground truth (sampled counterexamples only for 'sat' instances, CROWN certificates only for 'unsat'
ones), and through a write → parse round trip.
"""
from __future__ import annotations

import csv
import gzip
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lirpa_lid import InputError, bounded_network
from lirpa_lid.datasets import data_dir
from lirpa_lid.errors import SpecificationError
from lirpa_lid.models.onnx import load_onnx
from lirpa_lid.specification.vnnlib import parse as vnnlib
from lirpa_lid.specification.vnnlib import syntax as vnnlib_syntax
from lirpa_lid.specification.vnnlib.parse import Disjunct, VnnlibProperty, parse_vnnlib, write_vnnlib

BENCH = data_dir(must_exist=False) / "vnncomp2022"
SHAPES = {"acasxu": (5, 5, 10), "mnist_fc": (784, 10, 30)}  # inputs, outputs, number of files


def _bench_dir(name: str) -> Path:
    path = BENCH / name
    if not (path / "vnnlib").is_dir():
        pytest.skip(f"VNN-COMP 2022 {name} data not found under {BENCH}")
    return path


@pytest.fixture(scope="module")
def shipped() -> dict[str, dict[str, VnnlibProperty]]:
    """Every shipped property, parsed once: ``{benchmark: {file name: property}}``."""
    out = {}
    for name, (n_in, n_out, _) in SHAPES.items():
        path = BENCH / name / "vnnlib"
        if path.is_dir():
            out[name] = {f.name: parse_vnnlib(f, n_inputs=n_in, n_outputs=n_out)
                         for f in sorted(path.glob("*.vnnlib"))}
    return out


def _acas(shipped, i: int) -> VnnlibProperty:
    _bench_dir("acasxu")
    return shipped["acasxu"][f"prop_{i}.vnnlib"]


def _le(a: int, b: int, n: int = 5) -> list[float]:
    """C row of ``Y_a ≤ Y_b`` (i.e. ``Y_a − Y_b ≤ 0``)."""
    row = [0.0] * n
    row[a], row[b] = 1.0, -1.0
    return row


# ------------------------------------------------------------------------------ shipped files, by hand
@pytest.mark.parametrize("bench", sorted(SHAPES))
def test_every_shipped_file_parses_with_expected_shapes(shipped, bench):
    _bench_dir(bench)
    n_in, n_out, n_files = SHAPES[bench]
    props = shipped[bench]
    assert len(props) == n_files
    for name, prop in props.items():
        assert (prop.n_inputs, prop.n_outputs) == (n_in, n_out), name
        for dj in prop.disjuncts:
            assert dj.input_lower.shape == dj.input_upper.shape == (n_in,)
            assert dj.C.shape[1] == n_out and dj.n_rows >= 1
            assert np.all(dj.input_lower <= dj.input_upper)


def test_acasxu_prop_1_contents(shipped):
    prop = _acas(shipped, 1)
    (dj,) = prop.disjuncts
    np.testing.assert_array_equal(dj.input_lower, [0.6, -0.5, -0.5, 0.45, -0.5])
    np.testing.assert_array_equal(dj.input_upper, [0.679857769, 0.5, 0.5, 0.5, -0.45])
    # unsafe if Y_0 >= 3.991125645861615  <=>  -Y_0 <= -3.991125645861615
    np.testing.assert_array_equal(dj.C, [[-1.0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(dj.d, [-3.991125645861615])


# Output constraints of ACAS Xu properties 2-10, read from the files: one list of (a, b) pairs
# "Y_a <= Y_b" per alternative of the output disjunction.
ACAS_OUTPUTS = {
    2: [[(1, 0), (2, 0), (3, 0), (4, 0)]],             # COC maximal
    3: [[(0, 1), (0, 2), (0, 3), (0, 4)]],             # COC minimal
    4: [[(0, 1), (0, 2), (0, 3), (0, 4)]],
    5: [[(0, 4)], [(1, 4)], [(2, 4)], [(3, 4)]],       # strong right not minimal
    6: [[(1, 0)], [(2, 0)], [(3, 0)], [(4, 0)]],       # COC not minimal (two input boxes)
    7: [[(3, 0), (3, 1), (3, 2)], [(4, 0), (4, 1), (4, 2)]],
    8: [[(2, 0), (2, 1)], [(3, 0), (3, 1)], [(4, 0), (4, 1)]],
    9: [[(0, 3)], [(1, 3)], [(2, 3)], [(4, 3)]],
    10: [[(1, 0)], [(2, 0)], [(3, 0)], [(4, 0)]],
}


@pytest.mark.parametrize("i", sorted(ACAS_OUTPUTS))
def test_acasxu_normal_form_matches_the_files(shipped, i):
    prop = _acas(shipped, i)
    outputs = ACAS_OUTPUTS[i]
    n_boxes = 2 if i == 6 else 1
    assert len(prop.disjuncts) == n_boxes * len(outputs)
    for k, dj in enumerate(prop.disjuncts):
        pairs = outputs[k % len(outputs)]
        np.testing.assert_array_equal(dj.C, [_le(a, b) for a, b in pairs])
        np.testing.assert_array_equal(dj.d, np.zeros(len(pairs)))
    groups = prop.input_groups()
    assert len(groups) == n_boxes
    if i == 6:  # "X_1 in (0.7, pi)" or "X_1 in (-pi, -0.7)", then the four output alternatives
        assert [g.disjunct_indices for g in groups] == [(0, 1, 2, 3), (4, 5, 6, 7)]
        assert (groups[0].input_lower[1], groups[0].input_upper[1]) == (0.11140846, 0.499999896)
        assert (groups[1].input_lower[1], groups[1].input_upper[1]) == (-0.499999896, -0.11140846)
        np.testing.assert_array_equal(groups[0].input_lower[[0, 2, 3, 4]],
                                      [-0.129289109, -0.499999896, -0.5, -0.5])
    if i == 4:  # a degenerate box side: X_2 in [0, 0]
        assert prop.disjuncts[0].input_lower[2] == prop.disjuncts[0].input_upper[2] == 0.0


def test_mnist_fc_properties_are_local_robustness(shipped):
    bench = _bench_dir("mnist_fc")
    for name, prop in shipped[bench.name].items():
        eps = float(re.fullmatch(r"prop_\d+_(0\.\d+)\.vnnlib", name)[1])
        first_line = (bench / "vnnlib" / name).read_text().splitlines()[0]
        label = int(re.search(r"label: (\d+)", first_line)[1])
        others = [j for j in range(10) if j != label]
        assert len(prop.disjuncts) == 9 and len(prop.input_groups()) == 1
        for j, dj in zip(others, prop.disjuncts):  # unsafe if Y_j >= Y_label: Y_label - Y_j <= 0
            np.testing.assert_array_equal(dj.C, [_le(label, j, 10)])
            np.testing.assert_array_equal(dj.d, [0.0])
        lo, up = prop.disjuncts[0].input_lower, prop.disjuncts[0].input_upper
        assert lo.min() >= 0.0 and up.max() <= 1.0
        assert np.all(up - lo <= 2 * eps + 1e-7) and np.any(up - lo > 1.9 * eps)


# ------------------------------------------------------------------------------ round trip
def test_round_trip_of_every_shipped_file(shipped, tmp_path):
    if not shipped:
        pytest.skip(f"no VNN-COMP 2022 data under {BENCH}")
    for bench, props in shipped.items():
        for name, prop in props.items():
            path = write_vnnlib(prop, tmp_path / f"{bench}-{name}")
            assert parse_vnnlib(path) == prop, name
    text = (tmp_path / "acasxu-prop_2.vnnlib").read_text()
    assert "(assert (<= Y_1 Y_0))" in text and "or" not in text.split("(declare-const Y_4 Real)")[1]


def _random_property(rng: np.random.Generator) -> VnnlibProperty:
    n_in, n_out = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    boxes = []
    for _ in range(int(rng.integers(1, 3))):
        a = rng.normal(size=n_in) * 10.0 ** rng.integers(-8, 8, size=n_in)
        boxes.append((a, a + rng.exponential(size=n_in) * rng.choice([0.0, 1e-12, 1.0, 1e6])))
    disjuncts = []
    for _ in range(int(rng.integers(1, 5))):
        k = int(rng.integers(0, 4))
        C = rng.normal(size=(k, n_out)) * (rng.random((k, n_out)) < 0.6)
        C[np.arange(k), rng.integers(0, n_out, size=k)] = rng.choice([1.0, -1.0, 0.3, -7e-20], size=k)
        d = rng.normal(size=k) * 10.0 ** rng.integers(-300, 300, size=k)
        d[rng.random(k) < 0.3] = -0.0
        lo, up = boxes[int(rng.integers(len(boxes)))]
        disjuncts.append(Disjunct(lo, up, C, d))
    return VnnlibProperty(n_in, n_out, tuple(disjuncts))


def test_round_trip_is_exact_for_random_properties(tmp_path):
    rng = np.random.default_rng(0)
    for t in range(200):
        prop = _random_property(rng)
        assert parse_vnnlib(write_vnnlib(prop, tmp_path / "p.vnnlib")) == prop, t


def test_write_is_atomic(tmp_path, monkeypatch):
    prop = VnnlibProperty(1, 2, (Disjunct([0.0], [1.0], [[1.0, -1.0]], [0.0]),
                                 Disjunct([0.0], [2.0], [[1.0, 0.0]], [0.5])))
    target = tmp_path / "p.vnnlib"
    target.write_text("old content\n")

    def broken(*args):
        raise RuntimeError("disk full")
    monkeypatch.setattr(vnnlib, "_row_text", broken)  # fails after the declarations are written
    with pytest.raises(RuntimeError, match="disk full"):
        write_vnnlib(prop, target)
    assert target.read_text() == "old content\n"
    assert [p.name for p in tmp_path.iterdir()] == ["p.vnnlib"]  # no temporary file left behind
    monkeypatch.undo()
    assert parse_vnnlib(write_vnnlib(prop, target)) == prop


def test_sources_path_string_text_and_gzip(tmp_path):
    text = HEAD + BOX + "(assert (<= Y_0 Y_1))\n"
    expected = parse_vnnlib(text)
    (tmp_path / "p.vnnlib").write_text(text)
    with gzip.open(tmp_path / "p.vnnlib.gz", "wt") as f:
        f.write(text)
    for source in (tmp_path / "p.vnnlib", str(tmp_path / "p.vnnlib"), tmp_path / "p.vnnlib.gz"):
        assert parse_vnnlib(source) == expected
    with pytest.raises(SpecificationError, match="cannot read VNN-LIB file .*missing.vnnlib"):
        parse_vnnlib(tmp_path / "missing.vnnlib")


# ------------------------------------------------------------------------------ dialect and normal form
HEAD = ("(declare-const X_0 Real)\n(declare-const X_1 Real)\n"
        "(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n")  # lines 1-4
BOX = "(assert (<= X_0 1))\n(assert (>= X_0 0))\n(assert (<= X_1 1))\n(assert (>= X_1 0))\n"  # lines 5-8


def _one(text: str) -> Disjunct:
    (dj,) = parse_vnnlib(text).disjuncts
    return dj


def test_numbers_and_linear_terms():
    dj = _one(HEAD + """; comment (with parentheses
    (assert (<= X_0 (- 0.5)))  ; trailing comment
    (assert (>= X_0 -1.5e+0))
    (assert (<= (* 2 X_1) 3E-1))      ; X_1 <= 0.15
    (assert (>= (* -4 X_1) -2))       ; X_1 <= 0.5 (looser), and no lower bound from it
    (assert (> X_1 -.25))             ; strict read as non-strict
    (assert (<= (+ Y_0 (* 3 Y_1) 1) (- 2 Y_1)))       ; Y_0 + 4 Y_1 <= 1
    (assert (>= (- Y_0 Y_1 Y_1) 7.))                  ; -Y_0 + 2 Y_1 <= -7
    (assert (< Y_1 1e2))
    (check-sat)
    """)
    np.testing.assert_array_equal(dj.input_lower, [-1.5, -0.25])
    np.testing.assert_array_equal(dj.input_upper, [-0.5, 0.15])
    np.testing.assert_array_equal(dj.C, [[1, 4], [-1, 2], [0, 1]])
    np.testing.assert_array_equal(dj.d, [1, -7, 100])


def test_strict_comparisons_equal_non_strict_ones():
    strict = parse_vnnlib(HEAD + "(assert (< X_0 1))(assert (> X_0 0))(assert (< X_1 1))(assert (> X_1 0))"
                          "(assert (> Y_1 Y_0))")
    assert strict == parse_vnnlib(HEAD + BOX + "(assert (>= Y_1 Y_0))")


def test_chains_equality_and_constants():
    dj = _one(HEAD + "(assert (<= 0 X_0 1))(assert (= X_1 0.5))(assert (<= 1 2))"
                     "(assert (<= Y_0 Y_1 3))(assert (= Y_0 (- Y_0 0)))")
    np.testing.assert_array_equal([dj.input_lower, dj.input_upper], [[0, 0.5], [1, 0.5]])
    np.testing.assert_array_equal(dj.C, [_le(0, 1, 2), [0, 1]])
    np.testing.assert_array_equal(dj.d, [0, 3])


def test_or_is_distributed_in_file_order():
    prop = parse_vnnlib(HEAD + "(assert (or (and (<= X_0 1) (>= X_0 0)) (and (<= X_0 3) (>= X_0 2))))"
                               "(assert (<= X_1 1))(assert (>= X_1 0))"
                               "(assert (and (or (<= Y_0 1) (<= Y_1 2)) (>= Y_0 -5)))")
    assert len(prop.disjuncts) == 4
    assert [dj.input_upper[0] for dj in prop.disjuncts] == [1, 1, 3, 3]
    assert [dj.d.tolist() for dj in prop.disjuncts] == [[5, 1], [5, 2]] * 2
    assert [g.disjunct_indices for g in prop.input_groups()] == [(0, 1), (2, 3)]


def test_empty_alternatives_are_dropped_but_not_all_of_them():
    prop = parse_vnnlib(HEAD + BOX + "(assert (or (and (<= X_0 -1) (<= Y_0 1)) (<= Y_1 2)"
                                     "                (and (<= 1 0) (<= Y_0 0))))")
    (dj,) = prop.disjuncts
    np.testing.assert_array_equal(dj.C, [[0, 1]])


def test_blow_up_is_capped(monkeypatch):
    monkeypatch.setattr(vnnlib_syntax, "MAX_DISJUNCTS", 100)
    ors = [f"(assert (or (<= Y_0 {i}) (<= Y_1 {i}) (<= Y_0 -{i})))\n" for i in range(5)]
    assert len(parse_vnnlib(HEAD + BOX + "".join(ors[:4])).disjuncts) == 3 ** 4
    with pytest.raises(SpecificationError, match=r"line 13: distributing 'and' over 'or' .* 100"):
        parse_vnnlib(HEAD + BOX + "".join(ors))
    wide = "(assert (or " + " ".join(f"(<= Y_0 {i})" for i in range(101)) + "))"
    with pytest.raises(SpecificationError, match=r"line 9: this 'or' has 101 alternatives"):
        parse_vnnlib(HEAD + BOX + wide)


def test_given_shapes_must_match():
    text = HEAD + BOX + "(assert (<= Y_0 Y_1))"
    assert parse_vnnlib(text, n_inputs=2, n_outputs=2).n_inputs == 2
    with pytest.raises(SpecificationError, match=r"<string>, line 2: .*2 inputs.*n_inputs=5"):
        parse_vnnlib(text, n_inputs=5)
    with pytest.raises(SpecificationError, match=r"line 4: .*2 outputs.*n_outputs=10"):
        parse_vnnlib(text, n_outputs=10)


# (name, text after the 4 declaration lines and the 4 box lines, expected line, message fragment)
MALFORMED = [
    ("unclosed", "(assert (<= Y_0 1)\n(assert (<= Y_1 1))\n", 9, "never closed"),
    ("extra )", "(assert (<= Y_0 1))\n\n(assert (<= Y_1 1)))\n", 11, "without a matching"),
    ("undeclared", "(assert (<= Y_0 1))\n(assert (or\n  (<= Y_2 1)))\n", 11, "undeclared variable Y_2"),
    ("unknown", "(assert (<= Z_0 1))\n", 9, "unknown symbol 'Z_0'"),
    ("non-linear", "(assert (<= 0\n (* Y_0 Y_1)))\n", 10, "non-linear"),
    ("operator", "(assert (not (<= Y_0 1)))\n", 9, "unsupported operator 'not'"),
    ("term op", "(assert (<= (/ Y_0 2) 1))\n", 9, "unsupported operator '/'"),
    ("number", "(assert (<= Y_0 1.2.3))\n", 9, "malformed number '1.2.3'"),
    ("hex float", "(assert (<= Y_0 0x1.8p+1))\n", 9, "malformed number"),
    ("overflow", "(assert (<= Y_0 1e400))\n", 9, "out of float64 range"),
    ("mixed", "(assert (<= Y_0 X_0))\n", 9, "mixes inputs X and outputs Y"),
    ("not a box", "(assert (<= (+ X_0 X_1) 1))\n", 9, "2 X variables"),
    ("command", "(define-fun f () Real 1)\n", 9, "unsupported command 'define-fun'"),
    ("declare", "(declare-const W Real)\n", 9, "unknown variable name 'W'"),
    ("sort", "(declare-const X_2 Int)\n", 9, "sort 'Int'"),
    ("twice", "(declare-const Y_0 Real)\n", 9, "declared twice (first at line 3)"),
    ("empty or", "(assert (or))\n", 9, "at least one argument"),
    ("formula", "(assert Y_0)\n", 9, "expected a constraint"),
    ("term", "(assert (<= (<= Y_0 1) 1))\n", 9, "expected a linear term"),
]


@pytest.mark.parametrize("case", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_input_names_file_and_line(case, tmp_path):
    _, tail, line, fragment = case
    path = tmp_path / "bad.vnnlib"
    path.write_text(HEAD + BOX + tail)
    with pytest.raises(SpecificationError) as info:
        parse_vnnlib(path)
    message = str(info.value)
    assert message.startswith(f"{path}, line {line}: "), message
    assert fragment in message


@pytest.mark.parametrize("text, line, fragment", [
    (HEAD + "(assert (<= X_0 1))\n(assert (>= X_0 0))\n(assert (<= X_1 1))\n",
     2, "X_1 (declared here) has no finite lower"),
    (HEAD + "(assert (or (and (<= X_0 1) (>= X_0 0)) (>= X_0 2)))\n(assert (<= X_1 1))\n"
     "(assert (>= X_1 0))\n",
     1, "X_0 (declared here) has no finite upper bound in alternative 2 of 2"),
    (HEAD + "(assert (<= X_0 0))\n(assert (>= X_0 1))\n(assert (<= X_1 1))\n(assert (>= X_1 0))\n", 5,
     "every alternative of the unsafe set is empty"),
    ("(declare-const X_0 Real)\n(declare-const X_2 Real)\n(declare-const Y_0 Real)\n",
     2, "X_1 is not declared"),
    ("(declare-const X_0 Real)\n\n", 1, "no output variables"),
    (HEAD, 4, "no assertions"),
])
def test_semantic_errors_name_the_line(text, line, fragment):
    with pytest.raises(SpecificationError, match=rf"^t\.vnnlib, line {line}: .*{re.escape(fragment)}"):
        parse_vnnlib(text, name="t.vnnlib")


def test_disjunct_validation():
    with pytest.raises(SpecificationError, match="lower > upper"):
        Disjunct([1.0], [0.0], np.zeros((0, 1)), [])
    with pytest.raises(SpecificationError, match="all zeros"):
        Disjunct([0.0], [1.0], [[0.0, 0.0]], [1.0])
    with pytest.raises(SpecificationError, match="NaN or inf"):
        Disjunct([0.0], [math.inf], [[1.0]], [1.0])
    with pytest.raises(SpecificationError, match="3 rows but d has 1"):
        Disjunct([0.0], [1.0], np.ones((3, 2)), [1.0])
    dj = Disjunct([0.0], [1.0], [[1.0, -1.0]], [-0.0])
    with pytest.raises(SpecificationError, match="at least one disjunct"):
        VnnlibProperty(1, 2, ())
    with pytest.raises(SpecificationError, match="has 1 inputs and 2 outputs"):
        VnnlibProperty(1, 3, (dj,))
    with pytest.raises(ValueError):
        dj.C[0, 0] = 5.0  # read-only
    same = Disjunct([0.0], [1.0], [[1.0, -1.0]], [0.0])  # -0.0 == 0.0, and hashes alike
    assert dj == same and hash(dj) == hash(same)


# ------------------------------------------------------------------------------ decisions
def _oracles() -> dict[int, callable]:
    """Unsafe-set membership of y (x inside the box) for ACAS Xu 1-10, written from the comments."""
    def minimal(y, i, among):  # y_i <= y_j for every j in among
        return np.all(y[..., [i]] <= y[..., among], axis=-1)
    return {
        1: lambda y: y[..., 0] >= 3.991125645861615,
        2: lambda y: minimal(-y, 0, [1, 2, 3, 4]),                         # COC maximal
        3: lambda y: minimal(y, 0, [1, 2, 3, 4]),                          # COC minimal
        4: lambda y: minimal(y, 0, [1, 2, 3, 4]),
        5: lambda y: ~np.all(y[..., [4]] < y[..., [0, 1, 2, 3]], axis=-1),  # not strictly minimal
        6: lambda y: ~np.all(y[..., [0]] < y[..., [1, 2, 3, 4]], axis=-1),
        7: lambda y: minimal(y, 3, [0, 1, 2]) | minimal(y, 4, [0, 1, 2]),
        8: lambda y: minimal(y, 2, [0, 1]) | minimal(y, 3, [0, 1]) | minimal(y, 4, [0, 1]),
        9: lambda y: ~np.all(y[..., [3]] < y[..., [0, 1, 2, 4]], axis=-1),
        10: lambda y: ~np.all(y[..., [0]] < y[..., [1, 2, 3, 4]], axis=-1),
    }


@pytest.mark.parametrize("i", range(1, 11))
def test_counterexamples_and_point_certificates_match_the_meaning_of_the_file(shipped, i):
    """At a single point the per-row test is complete: certified safe <=> not in the unsafe set."""
    prop = _acas(shipped, i)
    oracle = _oracles()[i]
    rng = np.random.default_rng(i)
    y = rng.integers(0, 3, size=(400, 5)).astype(float)  # many ties: the boundary cases
    y[:100] += 3.991125645861615 - 1.0                     # property 1's threshold, hit exactly
    for g in prop.input_groups():
        x = g.input_lower + rng.random((400, 5)) * (g.input_upper - g.input_lower)
        x[0], x[1] = g.input_lower, g.input_upper
        expected = oracle(y)
        assert 0 < expected.sum() < len(expected)
        np.testing.assert_array_equal(prop.is_counterexample(x, y), expected)
        others_certified = [np.full(dj.n_rows, np.inf) for dj in prop.disjuncts]  # other boxes
        for yk, unsafe in zip(y[:60], expected[:60]):
            margins = list(others_certified)
            for k in g.disjunct_indices:
                margins[k] = prop.disjuncts[k].margins(yk)
            assert prop.is_certified_safe(margins) == (not unsafe)
    outside = prop.disjuncts[0].input_upper + 1.0
    assert not prop.is_counterexample(outside, y).any()


def test_per_row_test_is_sound_but_incomplete(shipped):
    """Property 2 (unsafe: Y_0 maximal). Two outputs, each safe through a different row: over a box
    containing both, no single row is positive, so the box is not certified although it is safe."""
    prop = _acas(shipped, 2)
    (dj,) = prop.disjuncts
    y_a, y_b = np.array([0.0, 1, -1, -1, -1]), np.array([0.0, -1, 1, -1, -1])
    assert prop.is_certified_safe([dj.margins(y_a)]) and prop.is_certified_safe([dj.margins(y_b)])
    lower = np.minimum(dj.margins(y_a), dj.margins(y_b))  # the best bound valid for both points
    assert not prop.is_certified_safe([lower])
    assert not prop.is_certified_safe([np.zeros(4)])  # margin 0: Y_i = Y_0 is unsafe (ties)


def test_certified_margin_batched_torch_and_errors():
    prop = VnnlibProperty(1, 2, (Disjunct([0.0], [1.0], [[1.0, -1.0], [0.0, 1.0]], [0.0, 2.0]),
                                 Disjunct([0.0], [1.0], np.zeros((0, 2)), [])))
    lb = torch.tensor([[0.5, -1.0], [-0.1, -0.2]], requires_grad=True)
    margin = prop.certified_margin([lb, torch.zeros(2, 0)])
    assert margin.tolist() == [-math.inf, -math.inf]  # a disjunct without rows is never certified
    single = VnnlibProperty(1, 2, prop.disjuncts[:1])
    margin = single.certified_margin([lb])
    assert torch.allclose(margin, torch.tensor([0.5, -0.1]))
    margin.sum().backward()
    assert lb.grad.tolist() == [[1.0, 0.0], [1.0, 0.0]]
    assert single.is_certified_safe([np.array([0.5, -1.0])])
    assert not single.is_certified_safe([np.array([math.nan, -1.0])])
    assert (single.certified_margin([np.array([[1.0, -1.0], [-1.0, -1.0]])]) > 0).tolist() == [True, False]
    with pytest.raises(InputError, match="expected margin lower bounds for 2 disjuncts"):
        prop.certified_margin([lb])
    with pytest.raises(InputError, match=r"shape \[\.\.\., 2\]"):
        single.certified_margin([np.ones(3)])
    with pytest.raises(InputError, match="unbatched"):
        single.is_certified_safe([np.ones((2, 2))])


def test_nan_margins_never_certify():
    prop = VnnlibProperty(1, 1, (Disjunct([0.0], [1.0], [[1.0], [-1.0]], [0.0, 0.0]),))
    for lb in ([math.nan, 1.0], [1.0, math.nan], [math.nan, math.nan]):
        assert not prop.is_certified_safe([np.array(lb)])
        assert not prop.is_certified_safe([torch.tensor(lb)])


def test_input_groups_split_and_spec_tensors(shipped):
    prop = _acas(shipped, 6)
    g = prop.input_groups()[1]
    C, d = g.spec_tensors(dtype=torch.float64)
    assert torch.equal(C, torch.tensor([_le(k, 0) for k in range(1, 5)], dtype=torch.float64))
    assert torch.equal(d, torch.zeros(4, dtype=torch.float64))
    parts = g.split(torch.arange(4.0))
    assert [p.tolist() for p in parts] == [[0.0], [1.0], [2.0], [3.0]]
    with pytest.raises(InputError, match=r"\[\.\.\., 4\]"):
        g.split(torch.zeros(3))
    box = g.input_box(input_shape=(1, 1, 5), dtype=torch.float64)
    assert box.lower.shape == (1, 1, 1, 5) and box.lower.flatten().tolist() == g.input_lower.tolist()
    with pytest.raises(InputError, match="input_shape"):
        g.input_box(input_shape=(784,))


def test_float32_conversion_rounds_in_the_sound_direction(shipped):
    prop = _acas(shipped, 1)
    (dj,) = prop.disjuncts
    C, d = dj.spec_tensors()  # float32
    assert C.dtype == d.dtype == torch.float32
    assert float(d[0]) >= dj.d[0] and float(d[0]) != dj.d[0]  # 3.99... is inexact in float32: rounded up
    box = dj.input_box()
    lo, up = box.lower.double().numpy()[0], box.upper.double().numpy()[0]
    assert np.all(lo <= dj.input_lower) and np.all(up >= dj.input_upper)
    assert np.any(lo < dj.input_lower) and np.all(up - lo < dj.input_upper - dj.input_lower + 1e-6)
    lo32, up32 = box.lower.numpy()[0], box.upper.numpy()[0]  # and the tightest such float32 box
    assert np.all(np.nextafter(lo32, np.float32(np.inf)).astype(np.float64) > dj.input_lower)
    assert np.all(np.nextafter(up32, np.float32(-np.inf)).astype(np.float64) < dj.input_upper)


# ------------------------------------------------------------------------------ real networks
def _mlp_from_onnx(path: Path) -> nn.Sequential:
    """A VNN-COMP network as a float64 module on flat inputs ``[B, n_inputs]`` (VNN-LIB's X order)."""
    net = load_onnx(path)
    return nn.Sequential(nn.Unflatten(1, net.input_shape), net.module).double().eval()


def _instances(bench: Path) -> list[tuple[Path, Path, str]]:
    """(onnx, vnnlib, ground truth) per instance."""
    truth = {r["instance"]: r["result"] for r in csv.DictReader((bench / "ground_truth.csv").open())}
    out = []
    for onnx_file, vnnlib_file, _ in csv.reader((bench / "instances.csv").open()):
        key = f"{Path(onnx_file).stem}-{Path(vnnlib_file).stem}"
        out.append((bench / onnx_file, bench / vnnlib_file, truth[key]))
    return out


def _sampled_counterexample(prop: VnnlibProperty, net: nn.Module, n: int, gen: torch.Generator) -> bool:
    found = False
    for g in prop.input_groups():
        lo, up = torch.tensor(g.input_lower), torch.tensor(g.input_upper)
        u = torch.rand(n, lo.numel(), generator=gen, dtype=torch.float64)
        u[: n // 4] = (u[: n // 4] > 0.5).double()  # some box corners
        x = lo + u * (up - lo)
        with torch.no_grad():
            y = net(x)
        found |= bool(prop.is_counterexample(x.numpy(), y.numpy()).any())
    return found


@pytest.mark.parametrize("bench, n, min_found", [("acasxu", 1000, 25), ("mnist_fc", 100, 0)])
def test_sampled_counterexamples_exist_only_for_sat_instances(shipped, bench, n, min_found):
    """A sampled point in the parsed unsafe set is a real counterexample: never for an 'unsat' instance.
    On ACAS Xu random sampling finds many of the 47 'sat' ones (a sign error would flip both)."""
    gen = torch.Generator().manual_seed(0)
    nets: dict[Path, nn.Module] = {}
    found_sat = 0
    for onnx_file, vnnlib_file, truth in _instances(_bench_dir(bench)):
        if truth not in ("sat", "unsat"):  # mnist_fc has one unknown ('-') instance
            continue
        if onnx_file not in nets:
            nets[onnx_file] = _mlp_from_onnx(onnx_file)
        net = nets[onnx_file]
        prop = shipped[bench][vnnlib_file.name]
        found = _sampled_counterexample(prop, net, n, gen)
        assert not (found and truth == "unsat"), f"{onnx_file.name} {vnnlib_file.name}"
        found_sat += found
    print(f"{bench}: counterexamples sampled for {found_sat} sat instances")
    assert found_sat >= min_found


def _crown_certified(prop: VnnlibProperty, net: nn.Module) -> bool:
    backend = bounded_network(net)
    margins: list = [None] * len(prop.disjuncts)
    for g in prop.input_groups():
        box = g.input_box(dtype=torch.float64)
        C, d = g.spec_tensors(dtype=torch.float64)
        lower = backend.compute_bounds(box.center(), C=C, input_box=box, bound_upper=False).lower[0] - d
        for k, m in zip(g.disjunct_indices, g.split(lower)):
            margins[k] = m
    return prop.is_certified_safe(margins)


def _acas_instance(bench: Path, net: str, prop: int) -> tuple[Path, Path]:
    return bench / "onnx" / f"ACASXU_run2a_{net}_batch_2000.onnx", bench / "vnnlib" / f"prop_{prop}.vnnlib"


def test_crown_certificates_agree_with_ground_truth():
    """End to end (parse → input box and spec → native CROWN → decision): the 'sat' instances of
    properties 3 and 4 are never certified, and some 'unsat' ones are."""
    bench = _bench_dir("acasxu")
    truth = {(o.name, v.name): t for o, v, t in _instances(bench)}
    certified = 0
    for net, prop_i in [("1_7", 3), ("1_8", 3), ("1_9", 3), ("1_7", 4), ("1_8", 4), ("1_9", 4),
                        ("1_6", 3), ("2_4", 3), ("2_9", 4)]:
        onnx_file, vnnlib_file = _acas_instance(bench, net, prop_i)
        ok = _crown_certified(parse_vnnlib(vnnlib_file), _mlp_from_onnx(onnx_file))
        assert not (ok and truth[(onnx_file.name, vnnlib_file.name)] == "sat"), (net, prop_i)
        certified += ok
    assert certified >= 1


@pytest.mark.slow
def test_crown_certificates_agree_with_ground_truth_on_every_acasxu_instance():
    bench = _bench_dir("acasxu")
    certified = 0
    for onnx_file, vnnlib_file, truth in _instances(bench):
        ok = _crown_certified(parse_vnnlib(vnnlib_file), _mlp_from_onnx(onnx_file))
        assert not (ok and truth == "sat"), (onnx_file.name, vnnlib_file.name)
        certified += ok
    assert certified >= 10
