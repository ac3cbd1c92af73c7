"""What an edit must make hold: conjunctive output constraints over an input box.

An :class:`EditProperty` is ``C·f(x) − d > 0`` for every ``x`` with ``lower ≤ x ≤ upper`` (every row must
hold: a conjunctive safe set). Shapes: ``lower``, ``upper`` ``[n_in]``; ``C`` ``[k, n_out]``; ``d`` ``[k]``
(float64, read-only). Margins ``C·f(x) − d`` are positive where the property is satisfied.

VNN-LIB states the *unsafe* set as a disjunction of conjunctions (``Disjunct``: ``C_r·y ≤ d_r``). When every
disjunct of a group (disjuncts sharing one input box) has exactly one row, the unsafe set is a union of
half-spaces and the safe set is the conjunction of their complements ``C_r·y > d_r`` — an
:class:`EditProperty` with those rows (ACAS Xu properties 1 and 5, VNN-COMP mnist_fc robustness: "the
label's logit beats every other one"). Properties whose unsafe disjuncts have several rows (ACAS Xu 2, 3,
4: "Y_0 is minimal") have disjunctive safe sets; :func:`as_edit_properties` refuses them with a
``SpecificationError``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lirpa_lid.errors import SpecificationError
from lirpa_lid.specification.vnnlib.parse import Disjunct, VnnlibProperty


def _frozen(value, name: str, ndim: int) -> np.ndarray:
    try:
        array = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise SpecificationError(f"edit property: {name} must be numbers, got {type(value).__name__}") from err
    if array.ndim != ndim:
        raise SpecificationError(f"edit property: {name} must be {ndim}-D, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise SpecificationError(f"edit property: {name} contains NaN or inf")
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class EditProperty:
    """``C·f(x) − d > 0`` for all ``lower ≤ x ≤ upper`` (see the module docstring for shapes).

    ``name`` labels the property in results and messages.
    """

    lower: np.ndarray
    upper: np.ndarray
    C: np.ndarray
    d: np.ndarray
    name: str = ""

    def __post_init__(self) -> None:
        for field, ndim in (("lower", 1), ("upper", 1), ("C", 2), ("d", 1)):
            object.__setattr__(self, field, _frozen(getattr(self, field), field, ndim))
        what = f"edit property {self.name!r}" if self.name else "edit property"
        if self.lower.shape != self.upper.shape or self.lower.size == 0:
            raise SpecificationError(f"{what}: input bounds have shapes {self.lower.shape} and "
                                     f"{self.upper.shape}; expected equal non-empty vectors")
        if (self.lower > self.upper).any():
            raise SpecificationError(f"{what}: empty input box (lower > upper for x_"
                                     f"{int(np.argmax(self.lower > self.upper))})")
        if self.C.shape[0] == 0 or self.C.shape[0] != self.d.shape[0]:
            raise SpecificationError(f"{what}: C has {self.C.shape[0]} rows and d {self.d.shape[0]} entries; "
                                     "expected the same number, at least one")
        if not self.C.any(axis=1).all():
            raise SpecificationError(f"{what}: row {int(np.flatnonzero(~self.C.any(axis=1))[0])} of C is all zeros")

    @property
    def n_inputs(self) -> int:
        """``n_in``."""
        return self.lower.size

    @property
    def n_outputs(self) -> int:
        """``n_out``."""
        return self.C.shape[1]

    @property
    def n_rows(self) -> int:
        """``k``, the number of rows that must all hold."""
        return self.C.shape[0]

    def margins(self, y: np.ndarray) -> np.ndarray:
        """``C·y − d`` of outputs ``y`` ``[..., n_out]`` → ``[..., k]`` (float64; > 0 satisfied)."""
        return np.asarray(y, dtype=np.float64) @ self.C.T - self.d

    def to_vnnlib(self) -> VnnlibProperty:
        """The same property as VNN-LIB: one unsafe disjunct ``C_r·y ≤ d_r`` per row on the box."""
        disjuncts = tuple(Disjunct(self.lower, self.upper, self.C[r:r + 1], self.d[r:r + 1])
                          for r in range(self.n_rows))
        return VnnlibProperty(self.n_inputs, self.n_outputs, disjuncts)


def from_vnnlib(prop: VnnlibProperty, name: str = "") -> list[EditProperty]:
    """One :class:`EditProperty` per input group of ``prop``; ``SpecificationError`` when a disjunct has
    other than one row (its safe set is a disjunction, see the module docstring)."""
    out = []
    for g, group in enumerate(prop.input_groups()):
        if any(count != 1 for count in group.row_counts):
            k = group.disjunct_indices[next(i for i, c in enumerate(group.row_counts) if c != 1)]
            raise SpecificationError(
                f"property {name or '(unnamed)'}: unsafe disjunct {k} has {prop.disjuncts[k].n_rows} rows; "
                "editing supports unsafe sets that are unions of single half-spaces (a conjunctive safe set, "
                "e.g. ACAS Xu properties 1 and 5, mnist_fc robustness), not disjunctive safe sets such as "
                "'Y_0 is not minimal' (ACAS Xu 2-4)")
        label = name if len(prop.input_groups()) == 1 else f"{name}[{g}]"
        out.append(EditProperty(group.input_lower, group.input_upper, group.C, group.d, label))
    return out


def as_edit_properties(properties, n_inputs: int, n_outputs: int) -> list[EditProperty]:
    """``properties`` — an :class:`EditProperty`, a ``VnnlibProperty``, a ``(lower, upper, C, d)`` tuple, or
    a sequence of them — as a list of :class:`EditProperty`, each checked against the network's
    ``n_inputs`` and ``n_outputs`` (``SpecificationError`` naming the property otherwise)."""
    items = [properties] if isinstance(properties, (EditProperty, VnnlibProperty, tuple)) else list(properties)
    if not items:
        raise SpecificationError("edit() needs at least one property")
    out: list[EditProperty] = []
    for i, item in enumerate(items):
        out.extend(_one(item, i))
    for p in out:
        if p.n_inputs != n_inputs or p.n_outputs != n_outputs:
            raise SpecificationError(f"property {p.name!r} has {p.n_inputs} inputs and {p.n_outputs} outputs; "
                                     f"the network has {n_inputs} and {n_outputs}")
    return out


def _one(item, index: int) -> list[EditProperty]:
    name = f"property {index}"
    if isinstance(item, EditProperty):
        return [item if item.name else EditProperty(item.lower, item.upper, item.C, item.d, name)]
    if isinstance(item, VnnlibProperty):
        return from_vnnlib(item, name)
    if isinstance(item, Sequence) and len(item) == 4:
        return [EditProperty(*item, name=name)]
    raise SpecificationError(f"{name}: expected an EditProperty, a VnnlibProperty or a (lower, upper, C, d) "
                             f"tuple, got {type(item).__name__}")
