"""Specifications: what a domain must preserve (certified accuracy, local robustness, VNN-LIB properties),
computed from margin lower bounds."""
from lirpa_lid.specification.accuracy import CertifiedAccuracy
from lirpa_lid.specification.base import (
                                          BoundQuery,
                                          Guarantee,
                                          Specification,
                                          SpecificationKind,
                                          as_spec_list,
                                          threshold_from_accuracy,
)
from lirpa_lid.specification.vnnlib import (
                                          Disjunct,
                                          InputGroup,
                                          VnnlibProperty,
                                          VnnlibSpecification,
                                          parse_vnnlib,
                                          write_vnnlib,
)

__all__ = [
    "BoundQuery", "CertifiedAccuracy", "Disjunct", "Guarantee", "InputGroup", "Specification", "SpecificationKind", "VnnlibProperty",
    "VnnlibSpecification", "as_spec_list", "parse_vnnlib", "threshold_from_accuracy", "write_vnnlib",
]
