"""Certificates: a domain hard-certified on held-out items or properties, saved as files and checked by
recomputation."""
from lirpa_lid.certificate.certify import (
                                           Certificate,
                                           Verdict,
                                           certify,
                                           certify_all,
                                           clopper_pearson_lower,
                                           recheck,
                                           verify_update,
)

__all__ = [
    "Certificate", "Verdict", "certify", "certify_all", "clopper_pearson_lower", "recheck",
    "verify_update",
]
