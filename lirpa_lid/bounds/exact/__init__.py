"""Exact encodings of a margin over a weight domain: one MILP per (item, specification row) that decides
whether ``c·f(x; θ) > 0`` for every θ of a weight box (and every x of an input box), and the reduction of a
one-layer box to an input box of the network's tail.

One file per piece: ``chain`` (the native chain, parameter boxes, intermediate bounds), ``encoding``
(the program: big-M ReLUs, linear or McCormick products), ``decide`` (``exact_margins``: solve, certify on
the proved bound, check counterexamples in float64), ``reduction`` (``reduce_to_tail``).
"""
from lirpa_lid.bounds.exact.chain import ExactChain, prepare_chain
from lirpa_lid.bounds.exact.decide import (
    ExactOptions,
    ExactResult,
    ExactStatus,
    certification_tolerance,
    exact_margin,
    exact_margins,
)
from lirpa_lid.bounds.exact.encoding import MarginEncoding, NodeTerms, encode_item
from lirpa_lid.bounds.exact.reduction import ConstantAffine, TailProblem, reduce_to_tail

__all__ = ["ConstantAffine", "ExactChain", "ExactOptions", "ExactResult", "ExactStatus", "MarginEncoding",
           "NodeTerms", "TailProblem", "certification_tolerance", "encode_item", "exact_margin", "exact_margins",
           "prepare_chain", "reduce_to_tail"]
