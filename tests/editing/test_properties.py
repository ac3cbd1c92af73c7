"""``lirpa_lid.editing.properties``: the conjunctive form, its VNN-LIB round trip and refusals."""
from __future__ import annotations

import numpy as np
import pytest

from lirpa_lid.editing import EditProperty, as_edit_properties, from_vnnlib
from lirpa_lid.errors import SpecificationError
from lirpa_lid.specification.vnnlib.parse import parse_vnnlib

UNION = """
(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(declare-const Y_2 Real)
(assert (>= X_0 -1.0))
(assert (<= X_0 1.0))
(assert (>= X_1 0.0))
(assert (<= X_1 0.5))
(assert (or (and (<= Y_0 Y_1)) (and (<= Y_0 Y_2))))
"""

MINIMAL = UNION.replace("(assert (or (and (<= Y_0 Y_1)) (and (<= Y_0 Y_2))))",
                        "(assert (<= Y_0 Y_1))\n(assert (<= Y_0 Y_2))")


def test_union_of_half_spaces_maps_to_conjunctive_rows():
    (prop,) = from_vnnlib(parse_vnnlib(UNION), "p")
    np.testing.assert_array_equal(prop.lower, [-1.0, 0.0])
    np.testing.assert_array_equal(prop.upper, [1.0, 0.5])
    y = np.array([[3.0, 1.0, 2.0], [1.0, 2.0, 0.0]])  # safe: Y_0 beats both; unsafe: Y_0 ≤ Y_1
    assert (prop.margins(y).min(axis=1) > 0).tolist() == [True, False]
    back = prop.to_vnnlib()
    assert back.is_counterexample(np.zeros((2, 2)), y).tolist() == [False, True]


def test_disjunctive_safe_set_is_refused():
    with pytest.raises(SpecificationError, match="2 rows"):
        from_vnnlib(parse_vnnlib(MINIMAL))


def test_tuples_and_checks():
    props = as_edit_properties([([0.0], [1.0], [[1.0, 0.0]], [0.5])], 1, 2)
    assert props[0].name == "property 0" and props[0].n_rows == 1
    with pytest.raises(SpecificationError, match="NaN"):
        EditProperty([0.0], [np.nan], [[1.0]], [0.0])
    with pytest.raises(SpecificationError, match="empty input box"):
        EditProperty([1.0], [0.0], [[1.0]], [0.0])
    with pytest.raises(SpecificationError, match="2 outputs"):
        as_edit_properties(EditProperty([0.0], [1.0], [[1.0, 0.0]], [0.5]), 1, 3)
