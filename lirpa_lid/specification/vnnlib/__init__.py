"""VNN-LIB properties: the reader (``syntax``: S-expressions, terms, normal form), properties and
writing (``parse``), and the specification over them (``spec``)."""
from lirpa_lid.specification.vnnlib.parse import Disjunct, InputGroup, VnnlibProperty, parse_vnnlib, write_vnnlib
from lirpa_lid.specification.vnnlib.spec import VnnlibSpecification

__all__ = ["Disjunct", "InputGroup", "VnnlibProperty", "VnnlibSpecification", "parse_vnnlib", "write_vnnlib"]
