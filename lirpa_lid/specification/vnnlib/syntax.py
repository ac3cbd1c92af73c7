"""The VNN-LIB text: S-expressions, linear terms, and the normal form of the asserted formula.

:func:`lirpa_lid.specification.vnnlib.parse.parse_vnnlib` turns what this module reads into a
:class:`~lirpa_lid.specification.vnnlib.parse.VnnlibProperty`. Here: tokenising (with line numbers for every error), declarations, the linear arithmetic of terms,
atoms (an input bound, an output row ``Σ c_j·Y_j ≤ d``, or a constant comparison), and the distribution of
``and`` over ``or`` into a disjunction of conjunctions (:data:`MAX_DISJUNCTS` at most).
"""
from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterator
from typing import NamedTuple, Union

import numpy as np

from lirpa_lid.errors import SpecificationError

MAX_DISJUNCTS = 10_000
"""Largest number of alternatives the distribution to DNF may produce before we give up."""


# ---------------------------------------------------------------------------------------- S-expressions
# A symbol is a plain tuple ``(text, line)``; a parenthesised list is a _List.
_Sym = tuple[str, int]


class _List:
    __slots__ = ("items", "line")

    def __init__(self, items: list, line: int):
        self.items, self.line = items, line


_TOKEN = re.compile(r"\n|;[^\n]*|[()]|[^\s();]+")  # newlines and comments count lines
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_NUMERIC_START = re.compile(r"[+-]?\.?\d")
_VAR = re.compile(r"([XY])_(0|[1-9]\d*)")
_IGNORED = {"set-logic", "set-info", "check-sat", "get-model", "exit"}
_COMPARISONS = {"<=", ">=", "<", ">", "="}


def _read(text: str, src: str) -> list[_Sym | _List]:
    """Top-level S-expressions of ``text``; each node remembers the line where it starts."""
    stack: list[tuple[int, list]] = []  # (line of an open '(', the enclosing list)
    current: list = []
    top, line = current, 1
    for tok in _TOKEN.findall(text):
        if tok == "(":
            stack.append((line, current))
            current = []
        elif tok == ")":
            if not stack:
                raise syntax_error(src, line, "unbalanced parentheses: ')' without a matching '('")
            start, parent = stack.pop()
            parent.append(_List(current, start))
            current = parent
        elif tok == "\n":
            line += 1
        elif tok[0] != ";":
            current.append((tok, line))
    if stack:
        raise syntax_error(src, stack[0][0], "unbalanced parentheses: '(' opened here is never closed")
    return top


def syntax_error(src: str, line: int, message: str) -> SpecificationError:
    """The error to raise for ``message`` at ``line`` of file ``src`` (``"src, line N: message"``)."""
    return SpecificationError(f"{src}, line {line}: {message}")


# ---------------------------------------------------------------------------------------- parsing
class _Lin:
    """Linear expression ``Σ coef[v]·v + const``; variables are ``("X", i)`` / ``("Y", j)``. Immutable."""

    __slots__ = ("coef", "const")

    def __init__(self, coef: dict[tuple[str, int], float], const: float):
        self.coef, self.const = coef, const

    def plus(self, other: _Lin, sign: float = 1.0) -> _Lin:
        coef = dict(self.coef)
        for v, c in other.coef.items():
            coef[v] = coef.get(v, 0.0) + sign * c
        return _Lin({v: c for v, c in coef.items() if c != 0.0}, self.const + sign * other.const)

    def times(self, factor: float) -> _Lin:
        return _Lin({v: c * factor for v, c in self.coef.items() if c * factor != 0.0}, self.const * factor)


class _Bound(NamedTuple):  # X_index ≤ value (upper) or ≥ value
    index: int
    upper: bool
    value: float
    line: int


class _Row(NamedTuple):  # Σ coef[j]·Y_j ≤ d
    coef: dict[int, float]
    d: float
    line: int


class _Const(NamedTuple):  # constant comparison
    holds: bool
    line: int


_Atom = Union[_Bound, _Row, _Const]
_Conj = tuple[tuple[_Atom, ...], ...]  # a conjunction as chunks of atoms (chunks are shared, not copied)


def _line(node: _Sym | _List) -> int:
    return node.line if isinstance(node, _List) else node[1]


def _head(node: _Sym | _List) -> str | None:
    """The operator of ``(op ...)``, or None if ``node`` is not such a list."""
    if isinstance(node, _List) and node.items and isinstance(node.items[0], tuple):
        return node.items[0][0]
    return None


class Parser:
    """Reads the commands of one VNN-LIB file: declarations (``decl``) and asserted formulas in DNF.

    One parser per file; errors name ``src`` and the line.
    """

    def __init__(self, src: str):
        self.src = src
        self.decl: dict[tuple[str, int], int] = {}  # variable -> line of its declaration
        self.leaves: dict[str, _Lin] = {}  # numbers and declared variables already seen

    def err(self, line: int, message: str) -> SpecificationError:
        """:func:`syntax_error` for this file."""
        return syntax_error(self.src, line, message)

    # ---- commands
    def run(self, text: str) -> tuple[list[tuple[list[_Conj], int]], int]:
        """Parse ``text``: each ``assert`` as ``(DNF, line)``, and the line of the last command.

        Declarations are recorded in ``decl``; the ``set-logic``-style commands are skipped.
        """
        asserts = []
        last_line = 1
        for node in _read(text, self.src):
            last_line = line = _line(node)
            cmd = _head(node)
            if cmd is None:
                raise self.err(line, "expected a command such as (assert ...) or (declare-const ...)")
            args = node.items[1:]
            if cmd == "declare-const":
                self.declare(line, args)
            elif cmd == "assert":
                if len(args) != 1:
                    raise self.err(line, f"assert takes one formula, got {len(args)}")
                try:
                    asserts.append((self.formula(args[0]), line))
                except RecursionError:
                    raise self.err(line, "formula nested too deeply") from None
            elif cmd not in _IGNORED:
                raise self.err(line, f"unsupported command {cmd!r}")
        return asserts, last_line

    def declare(self, line: int, args: list) -> None:
        """Record ``(declare-const X_i Real)`` / ``Y_j``; other names, sorts or repeats are errors."""
        if len(args) != 2 or not all(isinstance(a, tuple) for a in args):
            raise self.err(line, "expected (declare-const NAME Real)")
        (name, _), (sort, _) = args
        match = _VAR.fullmatch(name)
        if match is None:
            raise self.err(line, f"unknown variable name {name!r}: VNN-LIB variables are X_<i> (inputs) "
                                 "and Y_<j> (outputs)")
        if sort != "Real":
            raise self.err(line, f"variable {name} has sort {sort!r}; only Real is supported")
        key = (match[1], int(match[2]))
        if key in self.decl:
            raise self.err(line, f"variable {name} declared twice (first at line {self.decl[key]})")
        self.decl[key] = line

    # ---- formulas -> DNF (list of conjunctions)
    def formula(self, node: _Sym | _List) -> list[_Conj]:
        """A formula (comparison, ``and``, ``or``) in disjunctive normal form: a list of conjunctions."""
        op, line = _head(node), _line(node)
        if op is None:
            shown = node[0] if isinstance(node, tuple) else "(...)"
            raise self.err(line, f"expected a constraint such as (<= X_0 1.0), got {shown}")
        args = node.items[1:]
        if op in _COMPARISONS:
            if len(args) < 2:
                raise self.err(line, f"({op} ...) needs at least two arguments")
            terms = [self.term(a) for a in args]
            atoms: list[_Atom] = []
            for a, b in zip(terms, terms[1:]):
                if op in ("<=", "<", "="):
                    atoms.append(self.atom(a.plus(b, -1.0), line))
                if op in (">=", ">", "="):
                    atoms.append(self.atom(b.plus(a, -1.0), line))
            return [(tuple(atoms),)]
        if op in ("and", "or"):
            if not args:
                raise self.err(line, f"({op}) needs at least one argument")
            parts = [(self.formula(a), _line(a)) for a in args]
            if op == "and":
                return conjoin(parts, self.err)
            total = sum(len(p) for p, _ in parts)
            if total > MAX_DISJUNCTS:
                raise self.err(line, f"this 'or' has {total} alternatives (limit {MAX_DISJUNCTS})")
            return [c for p, _ in parts for c in p]
        hint = " (negations are not supported: write the negated comparison)" if op == "not" else ""
        raise self.err(line, f"unsupported operator {op!r} in a formula{hint}")

    def atom(self, e: _Lin, line: int) -> _Atom:
        """The constraint ``e ≤ 0`` (strict comparisons widened to ≤, which is sound for proofs)."""
        xs = {i: c for (k, i), c in e.coef.items() if k == "X"}
        ys = {j: c for (k, j), c in e.coef.items() if k == "Y"}
        if xs and ys:
            raise self.err(line, "constraint mixes inputs X and outputs Y; only input bounds and "
                                 "output constraints are supported")
        if not xs and not ys:
            return _Const(e.const <= 0.0, line)
        if len(xs) > 1:
            raise self.err(line, f"input constraint involves {len(xs)} X variables; only bounds on single "
                                 "X variables (an input box) are supported")
        if xs:
            (i, a), = xs.items()
            return _Bound(i, a > 0, -e.const / a, line)
        return _Row(ys, -e.const, line)

    # ---- linear terms
    def term(self, node: _Sym | _List) -> _Lin:
        """A linear term (number, variable, ``+``, ``-``, constant ``*``) as a :class:`_Lin`."""
        if isinstance(node, tuple):
            leaf = self.leaves.get(node[0])
            return leaf if leaf is not None else self.leaf(node)
        op, line = _head(node), node.line
        if op is None:
            raise self.err(line, "expected a linear term")
        args = node.items[1:]
        if op in ("+", "-", "*") and not args:
            raise self.err(line, f"({op}) needs at least one argument")
        if op == "+":
            return _sum(self.term(a) for a in args)
        if op == "-":
            first = self.term(args[0])
            if len(args) == 1:
                return first.times(-1.0)
            return first.plus(_sum(self.term(a) for a in args[1:]), -1.0)
        if op == "*":
            factors = [self.term(a) for a in args]
            variable = [f for f in factors if f.coef]
            if len(variable) > 1:
                raise self.err(line, "non-linear term: a product of variables (only constant * variable "
                                     "is supported)")
            scale = math.prod(f.const for f in factors if not f.coef)
            return variable[0].times(scale) if variable else _Lin({}, scale)
        if op in _COMPARISONS or op in ("and", "or"):
            raise self.err(line, f"expected a linear term, got a formula ({op} ...)")
        raise self.err(line, f"unsupported operator {op!r} in a term")

    def leaf(self, sym: _Sym) -> _Lin:
        """A number or a declared variable (cached: leaves repeat a lot)."""
        text, line = sym
        if _NUMERIC_START.match(text):
            if not _NUMBER.fullmatch(text):
                raise self.err(line, f"malformed number {text!r}")
            value = float(text)
            if not math.isfinite(value):
                raise self.err(line, f"number {text!r} is out of float64 range")
            out = _Lin({}, value)
        else:
            match = _VAR.fullmatch(text)
            if match is None:
                raise self.err(line, f"unknown symbol {text!r} (variables are X_<i> and Y_<j>)")
            key = (match[1], int(match[2]))
            if key not in self.decl:
                raise self.err(line, f"undeclared variable {text} (add (declare-const {text} Real) before "
                                     "its first use)")
            out = _Lin({key: 1.0}, 0.0)
        self.leaves[text] = out
        return out


def _sum(terms: Iterator[_Lin]) -> _Lin:
    out = _Lin({}, 0.0)
    for t in terms:
        out = out.plus(t)
    return out


def conjoin(parts: list[tuple[list[_Conj], int]], err) -> list[_Conj]:
    """Distribute ``and`` over the alternatives of ``parts`` (each a DNF with the line it starts at)."""
    atoms = tuple(atom for dnf, _ in parts if len(dnf) == 1 for chunk in dnf[0] for atom in chunk)
    common = (atoms,) if atoms else ()
    multi = [(dnf, line) for dnf, line in parts if len(dnf) > 1]
    size = 1
    for dnf, line in multi:
        size *= len(dnf)
        if size > MAX_DISJUNCTS:
            raise err(line, f"distributing 'and' over 'or' here gives more than {MAX_DISJUNCTS} "
                            "alternatives")
    return [common + tuple(chunk for conj in combo for chunk in conj)
            for combo in itertools.product(*(dnf for dnf, _ in multi))]


def _chunk(chunk: tuple[_Atom, ...], n_in: int) -> tuple[np.ndarray, np.ndarray, list[_Row], bool]:
    """Box, rows and feasibility of a chunk of conjoined atoms."""
    lower, upper = [-math.inf] * n_in, [math.inf] * n_in
    rows, holds = [], True
    for atom in chunk:
        if isinstance(atom, _Bound):
            if atom.upper:
                upper[atom.index] = min(upper[atom.index], atom.value)
            else:
                lower[atom.index] = max(lower[atom.index], atom.value)
        elif isinstance(atom, _Row):
            rows.append(atom)
        else:
            holds = holds and atom.holds
    return np.array(lower), np.array(upper), rows, holds


def alternative(conj: _Conj, n_in: int, cache: dict) -> tuple[np.ndarray, np.ndarray, list[_Row]] | None:
    """Box and rows of one conjunction; None if it is infeasible (empty box or a false constant).

    ``cache`` maps ``id(chunk)`` to its reduction: chunks are shared between alternatives.
    """
    lower, upper = np.full(n_in, -np.inf), np.full(n_in, np.inf)
    rows: list[_Row] = []
    for chunk in conj:
        if id(chunk) not in cache:
            cache[id(chunk)] = (chunk, _chunk(chunk, n_in))  # keep chunk alive: its id stays unique
        lo, up, more, holds = cache[id(chunk)][1]
        if not holds:
            return None
        lower, upper = np.maximum(lower, lo), np.minimum(upper, up)
        rows += more
    if (lower > upper).any():
        return None
    return lower, upper, rows


def check_count(decl: dict[tuple[str, int], int], kind: str, given: int | None, src: str,
                 last_line: int) -> int:
    """Number of ``kind`` (``"X"`` or ``"Y"``) variables declared, checked to be ``0..n-1`` without gaps
    and equal to ``given`` when given; errors point at the last declaration (``last_line`` if none)."""
    idx = sorted(i for k, i in decl if k == kind)
    what = "input" if kind == "X" else "output"
    if not idx:
        raise syntax_error(src, last_line, f"no {what} variables {kind}_0, {kind}_1, ... are declared")
    line = max(decl[(kind, i)] for i in idx)
    missing = sorted(set(range(idx[-1] + 1)) - set(idx))
    if missing:
        raise syntax_error(src, line, f"{what} variables must be {kind}_0..{kind}_{idx[-1]} without gaps; "
                                f"{kind}_{missing[0]} is not declared")
    if given is not None and given != len(idx):
        raise syntax_error(src, line, f"the file declares {len(idx)} {what}s ({kind}_0..{kind}_{idx[-1]}), "
                                f"expected n_{what}s={given}")
    return len(idx)
