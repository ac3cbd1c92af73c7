"""Certificates: a weight domain hard-certified on held-out items or properties, saved as files and checked
by recomputation.

- :mod:`~lirpa_lid.certificate.statistics`: what a certificate states (finite-sample Clopper–Pearson or
  deterministic) and the bound it states;
- :mod:`~lirpa_lid.certificate.record`: the :class:`Certificate` record, its file format, :class:`Verdict`;
- :mod:`~lirpa_lid.certificate.counting`: counting the items a domain certifies (shared by certify and recheck);
- :mod:`~lirpa_lid.certificate.certify`: :func:`certify`, :func:`certify_all`;
- :mod:`~lirpa_lid.certificate.check`: :func:`verify_update`, :func:`recheck`;
- :mod:`~lirpa_lid.certificate.refine`: branch and bound on input boxes (:func:`split_input_boxes`) for
  properties bound propagation cannot decide whole.
"""
from lirpa_lid.certificate.certify import certify, certify_all
from lirpa_lid.certificate.check import recheck, verify_update
from lirpa_lid.certificate.record import Certificate, Verdict
from lirpa_lid.certificate.refine import PropertySplit, SplitResult, SplitStatus, split_input_boxes
from lirpa_lid.certificate.statistics import Guarantee, clopper_pearson_lower

__all__ = [
    "Certificate", "Guarantee", "PropertySplit", "SplitResult", "SplitStatus", "Verdict", "certify", "certify_all",
    "clopper_pearson_lower", "recheck", "split_input_boxes", "verify_update",
]
