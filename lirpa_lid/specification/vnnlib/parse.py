"""VNN-LIB 1.0 properties (VNN-COMP dialect): parse into a disjunctive normal form, decide certified
safety from margin lower bounds, write back.

A VNN-LIB file describes the **unsafe** set: the property holds iff the conjunction of all its
assertions is unsatisfiable. We normalise it to a disjunction of alternatives (:class:`Disjunct`),
each meaning "unsafe if ``input_lower ≤ x ≤ input_upper`` and ``C·y ≤ d`` (every row)", ``y = f(x)``.
The *margin* of a row is ``C_r·y − d_r``; a positive margin means the row is violated, i.e. that
alternative of the unsafe set cannot hold (sign convention of the project: margin > 0 = satisfied).

Accepted: ``(declare-const X_i Real)``, ``(declare-const Y_j Real)``, ``(assert F)`` with F built from
``and``, ``or``, ``<=``, ``>=``, ``<``, ``>``, ``=`` (chains like ``(<= a b c)`` too) over linear terms
(numbers, variables, ``+``, ``-``, ``*`` by constants); numbers as ints, decimals, scientific notation,
``-0.5`` or ``(- 0.5)``; ``;`` comments. ``set-logic``, ``set-info``, ``check-sat``, ``get-model`` and
``exit`` are ignored. Input constraints must bound single X variables (a box); mixed X/Y constraints
are rejected (no VNN-COMP 2022 file has them). Numbers are rounded to the nearest float64, as in
α,β-CROWN. An alternative whose input box is empty (or that contains a false constant comparison) is
dropped, since it describes no point; a file in which *every* alternative is empty is an error.
"""
from __future__ import annotations

import gzip
import math
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import torch
from torch import Tensor

from lirpa_lid.bounds.core import InputBox
from lirpa_lid.errors import InputError, SpecificationError
from lirpa_lid.rounding import round_directed
from lirpa_lid.specification.vnnlib.syntax import Parser, alternative, check_count, conjoin, syntax_error

Array = Union[np.ndarray, Tensor]


# ---------------------------------------------------------------------------------------- data model
def _as_array(value: object, name: str, ndim: int) -> np.ndarray:
    """A read-only float64 copy with ``-0.0`` turned into ``0.0`` (so equal arrays hash alike)."""
    if isinstance(value, Tensor):
        value = value.detach().cpu().double().numpy()
    arr = np.array(value, dtype=np.float64) + 0.0
    if arr.ndim != ndim:
        raise SpecificationError(f"{name} must have {ndim} dimension(s), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise SpecificationError(f"{name} contains NaN or inf")
    arr.setflags(write=False)
    return arr


def _input_box(lower: np.ndarray, upper: np.ndarray, input_shape: Sequence[int] | None,
               dtype: torch.dtype, device: torch.device | str | None) -> InputBox:
    """``[1, *input_shape]`` box, rounded outwards when ``dtype`` is narrower than float64."""
    shape = (1, *(input_shape if input_shape is not None else (lower.size,)))
    if math.prod(shape) != lower.size:
        raise InputError(f"input_shape {tuple(shape[1:])} has {math.prod(shape[1:])} elements, the "
                         f"property has {lower.size} inputs")
    lo, up = _round_to(lower, dtype, -1), _round_to(upper, dtype, +1)
    return InputBox(lo.reshape(shape).to(device), up.reshape(shape).to(device))


def _round_to(values: np.ndarray, dtype: torch.dtype, direction: int) -> Tensor:
    """``values`` in ``dtype``, rounded towards −inf (direction −1) or +inf (+1) where inexact."""
    return round_directed(torch.from_numpy(np.array(values, dtype=np.float64)), dtype, direction)


def _spec_tensors(C: np.ndarray, d: np.ndarray, dtype: torch.dtype,
                  device: torch.device | str | None) -> tuple[Tensor, Tensor]:
    C_t = torch.from_numpy(np.array(C)).to(dtype=dtype, device=device)
    return C_t, _round_to(d, dtype, +1).to(device)


def _row_max(margins: Array, k: int, what: str) -> Array:
    """Largest row margin ``[...]`` of ``[..., k]`` margins; −inf when ``k == 0``."""
    if not isinstance(margins, Tensor):
        margins = np.asarray(margins, dtype=np.float64)
    if margins.shape[-1:] != (k,):
        raise InputError(f"{what}: expected margins of shape [..., {k}], got {tuple(margins.shape)}")
    if isinstance(margins, Tensor):
        if k == 0:
            return torch.full(margins.shape[:-1], -math.inf, dtype=margins.dtype, device=margins.device)
        return margins.amax(dim=-1)
    return np.full(margins.shape[:-1], -np.inf) if k == 0 else margins.max(axis=-1)


@dataclass(frozen=True, eq=False)
class Disjunct:
    """One alternative of the unsafe set: ``input_lower ≤ x ≤ input_upper`` and ``C·y ≤ d``.

    Shapes: ``input_lower``, ``input_upper`` ``[n_in]``; ``C`` ``[k, n_out]``; ``d`` ``[k]`` (float64,
    read-only). ``k = 0`` means every ``y`` is unsafe on the box. Strict comparisons of the file were
    widened to ``≤``: the unsafe set only grows, so a safety proof stays valid.
    """

    input_lower: np.ndarray
    input_upper: np.ndarray
    C: np.ndarray
    d: np.ndarray

    def __post_init__(self) -> None:
        for name, ndim in (("input_lower", 1), ("input_upper", 1), ("C", 2), ("d", 1)):
            object.__setattr__(self, name, _as_array(getattr(self, name), name, ndim))
        lo, up, C, d = self.input_lower, self.input_upper, self.C, self.d
        if lo.shape != up.shape or lo.size == 0:
            raise SpecificationError(f"input bounds have shapes {lo.shape} and {up.shape}; expected "
                                     "equal non-empty vectors")
        if (lo > up).any():
            raise SpecificationError(f"empty input box: lower > upper for X_{int(np.argmax(lo > up))}")
        if C.shape[0] != d.shape[0]:
            raise SpecificationError(f"C has {C.shape[0]} rows but d has {d.shape[0]} entries")
        zero = np.flatnonzero(~C.any(axis=1))
        if zero.size:
            raise SpecificationError(f"row {int(zero[0])} of C is all zeros (a constant constraint)")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Disjunct):
            return NotImplemented
        pairs = zip(self._arrays(), other._arrays())
        return all(a.shape == b.shape and np.array_equal(a, b) for a, b in pairs)

    def __hash__(self) -> int:
        return hash(tuple((a.shape, a.tobytes()) for a in self._arrays()))

    def _arrays(self) -> tuple[np.ndarray, ...]:
        return self.input_lower, self.input_upper, self.C, self.d

    @property
    def n_rows(self) -> int:
        """``k``, the number of output rows ``C·y ≤ d`` (0: every output is unsafe on the box)."""
        return self.C.shape[0]

    def margins(self, y: Array) -> np.ndarray:
        """Margins ``C·y − d`` of concrete outputs ``y`` ``[..., n_out]`` → ``[..., k]``."""
        return np.asarray(_numpy(y), dtype=np.float64) @ self.C.T - self.d

    def contains(self, x: Array, y: Array) -> np.ndarray:
        """Whether ``(x, y)`` (``[..., n_in]``, ``[..., n_out]``) lies in this unsafe alternative."""
        x = np.asarray(_numpy(x), dtype=np.float64)
        in_box = ((x >= self.input_lower) & (x <= self.input_upper)).all(axis=-1)
        return in_box & (self.margins(y) <= 0).all(axis=-1)

    def certified_margin(self, margin_lower: Array) -> Array:
        """Largest row of the margin lower bounds ``[..., k]`` (valid over the whole input box) → ``[...]``.

        Positive: this alternative is certified empty (one row is violated everywhere on the box).
        """
        return _row_max(margin_lower, self.n_rows, "certified_margin")

    def input_box(self, input_shape: Sequence[int] | None = None, dtype: torch.dtype = torch.float32,
                  device: torch.device | str | None = None) -> InputBox:
        """The input box as an :class:`InputBox` of shape ``[1, *input_shape]`` (default ``[1, n_in]``),
        rounded outwards to ``dtype`` (a larger box keeps a proof valid)."""
        return _input_box(self.input_lower, self.input_upper, input_shape, dtype, device)

    def spec_tensors(self, dtype: torch.dtype = torch.float32,
                     device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
        """``(C [k, n_out], d [k])`` for a bound backend: ``lower(C·f(x)) − d`` bounds the margins below.

        ``d`` is rounded up to ``dtype`` (so rounding never enlarges a margin); entries of ``C`` are
        rounded to nearest (exact for the ±1 coefficients of the VNN-COMP files).
        """
        return _spec_tensors(self.C, self.d, dtype, device)


@dataclass(frozen=True, eq=False)
class InputGroup:
    """Disjuncts that share one input box, with their rows stacked so the box is bounded once.

    ``C`` ``[K, n_out]`` and ``d`` ``[K]`` stack the rows of ``disjunct_indices`` in order;
    ``row_counts[i]`` rows belong to the i-th of them.
    """

    input_lower: np.ndarray
    input_upper: np.ndarray
    disjunct_indices: tuple[int, ...]
    row_counts: tuple[int, ...]
    C: np.ndarray
    d: np.ndarray

    def input_box(self, input_shape: Sequence[int] | None = None, dtype: torch.dtype = torch.float32,
                  device: torch.device | str | None = None) -> InputBox:
        """As :meth:`Disjunct.input_box`."""
        return _input_box(self.input_lower, self.input_upper, input_shape, dtype, device)

    def spec_tensors(self, dtype: torch.dtype = torch.float32,
                     device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
        """As :meth:`Disjunct.spec_tensors`, for the stacked rows."""
        return _spec_tensors(self.C, self.d, dtype, device)

    def split(self, margins: Array) -> list[Array]:
        """Stacked margins ``[..., K]`` → one ``[..., k_i]`` per disjunct of the group."""
        if margins.shape[-1:] != (sum(self.row_counts),):
            raise InputError(f"expected margins of shape [..., {sum(self.row_counts)}], got "
                             f"{tuple(margins.shape)}")
        ends = np.cumsum((0,) + self.row_counts)
        return [margins[..., int(a):int(b)] for a, b in zip(ends[:-1], ends[1:])]


@dataclass(frozen=True)
class VnnlibProperty:
    """A VNN-LIB property: unsafe iff some disjunct holds; the property holds iff none can.

    Deciding safety from bounds. A verifier bounds, over each disjunct's input box, the margins
    ``C_r·y − d_r`` from below; the disjunct is certified empty if some row's lower bound is > 0, and
    the property is *certified safe* if every disjunct is (:meth:`certified_margin` > 0).

    Disjunctive safe sets. The safe set is the complement of the unsafe one, so a conjunctive unsafe
    set gives a disjunctive safe set: ACAS Xu property 2 is unsafe when "Y_0 is maximal", i.e.
    ``Y_i ≤ Y_0`` for i = 1..4 (one disjunct, four rows with margins ``Y_i − Y_0``), and safe when
    *some* ``Y_i > Y_0``. Linear bounds decide this row by row: one fixed row must be positive over the
    whole box. That is sound but incomplete, since different sub-regions of the box may need different
    rows (split the box, as branch-and-bound does, to recover them); hence "certified safe", not "safe".
    Strict comparisons were read as non-strict, which only enlarges the unsafe set (sound for proofs;
    a margin of exactly 0 is never certified).
    """

    n_inputs: int
    n_outputs: int
    disjuncts: tuple[Disjunct, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "disjuncts", tuple(self.disjuncts))
        if self.n_inputs < 1 or self.n_outputs < 1:
            raise SpecificationError(f"a property needs inputs and outputs, got n_inputs={self.n_inputs}, "
                                     f"n_outputs={self.n_outputs}")
        if not self.disjuncts:
            raise SpecificationError("a property needs at least one disjunct (an empty unsafe set "
                                     "holds trivially)")
        for i, dj in enumerate(self.disjuncts):
            if not isinstance(dj, Disjunct):
                raise SpecificationError(f"disjunct {i} is a {type(dj).__name__}, not a Disjunct")
            if dj.input_lower.size != self.n_inputs or dj.C.shape[1] != self.n_outputs:
                raise SpecificationError(f"disjunct {i} has {dj.input_lower.size} inputs and "
                                         f"{dj.C.shape[1]} outputs; the property has {self.n_inputs} "
                                         f"and {self.n_outputs}")

    def input_groups(self) -> tuple[InputGroup, ...]:
        """Disjuncts grouped by identical input box, in order of first appearance."""
        groups: dict[bytes, list[int]] = {}
        for i, dj in enumerate(self.disjuncts):
            groups.setdefault(dj.input_lower.tobytes() + dj.input_upper.tobytes(), []).append(i)
        out = []
        for idx in groups.values():
            first = self.disjuncts[idx[0]]
            C = np.concatenate([self.disjuncts[i].C for i in idx], axis=0)
            d = np.concatenate([self.disjuncts[i].d for i in idx])
            for a in (C, d):
                a.setflags(write=False)
            out.append(InputGroup(first.input_lower, first.input_upper, tuple(idx),
                                  tuple(self.disjuncts[i].n_rows for i in idx), C, d))
        return tuple(out)

    def certified_margin(self, margin_lower: Sequence[Array]) -> Array:
        """``min`` over disjuncts of ``max`` over rows of the margin lower bounds → ``[...]``.

        ``margin_lower[i]`` ``[..., k_i]`` bounds ``C_i·y − d_i`` from below over disjunct i's box.
        Positive means certified safe; differentiable for tensors. NaN propagates (never certifies).
        """
        if len(margin_lower) != len(self.disjuncts):
            raise InputError(f"expected margin lower bounds for {len(self.disjuncts)} disjuncts, got "
                             f"{len(margin_lower)}")
        per = [dj.certified_margin(m) for dj, m in zip(self.disjuncts, margin_lower)]
        if any(isinstance(p, Tensor) for p in per):
            like = next(p for p in per if isinstance(p, Tensor))
            per = [torch.as_tensor(p, dtype=like.dtype, device=like.device) for p in per]
        shapes = [tuple(np.shape(p)) for p in per]
        if len(set(shapes)) > 1:
            raise InputError(f"margin lower bounds have different batch shapes {shapes}")
        if isinstance(per[0], Tensor):
            return torch.stack(per).amin(dim=0)
        return np.min(np.stack(per), axis=0)

    def is_certified_safe(self, margin_lower: Sequence[Array]) -> bool:
        """True iff every disjunct has a row whose margin lower bound is > 0 (1-D margins only)."""
        margin = self.certified_margin(margin_lower)
        if tuple(np.shape(margin)) != ():
            raise InputError("is_certified_safe takes unbatched margins [k_i]; use certified_margin(...) > 0")
        return bool(margin > 0)

    def is_counterexample(self, x: Array, y: Array) -> np.ndarray:
        """Whether ``(x, y)`` lies in the unsafe set: a counterexample if ``y = f(x)``.

        ``x`` ``[..., n_in]`` and ``y`` ``[..., n_out]`` flattened (e.g. ACAS Xu's ``[1, 1, 1, 5]`` input
        reshaped to ``[5]``); exact comparisons, no tolerance. Returns a bool array ``[...]``.
        """
        hits = [dj.contains(x, y) for dj in self.disjuncts]
        return np.logical_or.reduce(hits)


def _numpy(value: Array) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, Tensor) else np.asarray(value)


def _load(source: str | os.PathLike, name: str | None) -> tuple[str, str]:
    if isinstance(source, str) and ("(" in source or "\n" in source):
        return source, name or "<string>"
    path = Path(source)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8") as f:
                return f.read(), name or str(path)
        return path.read_text(encoding="utf-8"), name or str(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecificationError(f"cannot read VNN-LIB file {path}: {exc}") from None


def parse_vnnlib(path_or_text: str | os.PathLike, n_inputs: int | None = None,
                 n_outputs: int | None = None, name: str | None = None) -> VnnlibProperty:
    """Parse a VNN-LIB file (path, ``.gz`` allowed) or text (a string containing ``(``).

    ``n_inputs`` / ``n_outputs``, if given, must match the declarations. ``name`` labels text input in
    error messages. Every error is a :class:`SpecificationError` naming the file and line. Asserts are
    conjoined and ``or`` is distributed (at most :data:`~lirpa_lid.specification.vnnlib.syntax.MAX_DISJUNCTS` alternatives, in the order of the
    file); alternatives with an empty input box are dropped (they describe no point).
    """
    text, src = _load(path_or_text, name)
    parser = Parser(src)
    asserts, last_line = parser.run(text)
    n_in = check_count(parser.decl, "X", n_inputs, src, last_line)
    n_out = check_count(parser.decl, "Y", n_outputs, src, last_line)
    if not asserts:
        raise syntax_error(src, last_line, "the file has no assertions (no input box)")
    dnf = conjoin(asserts, parser.err)

    disjuncts, cache = [], {}
    for k, conj in enumerate(dnf):
        found = alternative(conj, n_in, cache)
        if found is None:
            continue
        lower, upper, rows = found
        for side, values in (("lower", lower), ("upper", upper)):
            bad = np.flatnonzero(~np.isfinite(values))
            if bad.size:
                i = int(bad[0])
                where = f" in alternative {k + 1} of {len(dnf)} of the normal form" if len(dnf) > 1 else ""
                raise syntax_error(src, parser.decl[("X", i)],
                             f"input X_{i} (declared here) has no finite {side} bound{where}; every input "
                             "needs a lower and an upper bound")
        C = np.zeros((len(rows), n_out))
        d = np.array([r.d for r in rows], dtype=np.float64)
        for r, row in enumerate(rows):
            for j, c in row.coef.items():
                C[r, j] = c
        disjuncts.append(Disjunct(lower, upper, C, d))
    if not disjuncts:
        raise syntax_error(src, asserts[0][1], "every alternative of the unsafe set is empty (contradictory "
                                         "input bounds or a false constant comparison); the file is "
                                         "probably wrong")
    return VnnlibProperty(n_in, n_out, tuple(disjuncts))


# ---------------------------------------------------------------------------------------- writing
def _num(value: float) -> str:
    """Shortest decimal that reads back as exactly ``value`` (``repr``), valid VNN-LIB."""
    return repr(float(value))


def _row_text(c: np.ndarray, d: float) -> str:
    nz = np.flatnonzero(c)
    if len(nz) == 1 and abs(c[nz[0]]) == 1.0:
        j = int(nz[0])
        return f"(<= Y_{j} {_num(d)})" if c[j] > 0 else f"(>= Y_{j} {_num(-d)})"
    if len(nz) == 2 and d == 0.0 and sorted(c[nz].tolist()) == [-1.0, 1.0]:
        pos, neg = (int(j) for j in sorted(nz, key=lambda j: -c[j]))
        return f"(<= Y_{pos} Y_{neg})"
    terms = " ".join(f"(* {_num(c[j])} Y_{int(j)})" for j in nz)
    return f"(<= {terms if len(nz) == 1 else f'(+ {terms})'} {_num(d)})"


def _box_texts(lower: np.ndarray, upper: np.ndarray) -> Iterator[str]:
    for i, (lo, up) in enumerate(zip(lower, upper)):
        yield f"(<= X_{i} {_num(up)})"
        yield f"(>= X_{i} {_num(lo)})"


def _lines(prop: VnnlibProperty) -> Iterator[str]:
    ds = prop.disjuncts
    yield "; VNN-LIB property written by lirpa_lid: the conjunction of the assertions is the UNSAFE set"
    yield f"; {prop.n_inputs} inputs, {prop.n_outputs} outputs, {len(ds)} alternative(s)"
    yield ""
    yield from (f"(declare-const X_{i} Real)" for i in range(prop.n_inputs))
    yield ""
    yield from (f"(declare-const Y_{j} Real)" for j in range(prop.n_outputs))
    yield ""
    shared_box = len(prop.input_groups()) == 1 and all(dj.n_rows > 0 for dj in ds)
    if len(ds) == 1 or shared_box:
        yield from (f"(assert {t})" for t in _box_texts(ds[0].input_lower, ds[0].input_upper))
        yield ""
    if len(ds) == 1:
        yield from (f"(assert {_row_text(c, d)})" for c, d in zip(ds[0].C, ds[0].d))
        return
    yield "(assert (or"
    for dj in ds:
        parts = [] if shared_box else list(_box_texts(dj.input_lower, dj.input_upper))
        parts += [_row_text(c, d) for c, d in zip(dj.C, dj.d)]
        yield f"    (and {' '.join(parts)})"
    yield "))"


def write_vnnlib(prop: VnnlibProperty, path: str | os.PathLike) -> Path:
    """Write ``prop`` as VNN-LIB to ``path`` atomically (temporary file, then rename); returns the path.

    ``parse_vnnlib(write_vnnlib(p, f)) == p`` exactly: numbers are written with ``repr``.
    """
    if not isinstance(prop, VnnlibProperty):
        raise InputError(f"write_vnnlib needs a VnnlibProperty, got {type(prop).__name__}")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as f:  # "x": never clobber; honours the umask
            for line in _lines(prop):
                f.write(line + "\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
