"""Provable editing (PREPARED, Tao & Thakur, NeurIPS 2024): the smallest change of a network's last Linear
layer after which violated properties provably hold on their whole input boxes, optionally inside a LID.

- :mod:`~lirpa_lid.editing.properties`: :class:`EditProperty` (``C·f(x) − d > 0`` on a box) and the
  mapping from VNN-LIB;
- :mod:`~lirpa_lid.editing.relaxation`: the layer, the boxes of its input over sub-boxes, bisection;
- :mod:`~lirpa_lid.editing.lp`: the editing LP (hypograph rows, ∞-norm then ℓ1 objective);
- :mod:`~lirpa_lid.editing.check`: independent checks (CROWN with input splitting, sampling, PGD);
- :mod:`~lirpa_lid.editing.edit`: :func:`edit`, :class:`EditResult`, :class:`EditStatus`.
"""
from lirpa_lid.editing.check import CheckOptions, PropertyCheck, check_properties
from lirpa_lid.editing.edit import EditResult, EditStatus, edit
from lirpa_lid.editing.properties import EditProperty, as_edit_properties, from_vnnlib

__all__ = ["CheckOptions", "EditProperty", "EditResult", "EditStatus", "PropertyCheck", "as_edit_properties",
           "check_properties", "edit", "from_vnnlib"]
