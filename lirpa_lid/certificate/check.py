"""Checking certificates by recomputation: stored numbers are never trusted.

:func:`verify_update` checks that a model is covered by a certificate (intact files, θ₀ digest, the
bound recomputed from the recorded counts, exact float64 membership of the weights, the other
parameters unchanged, the data unchanged); :func:`recheck` also recounts the certified items with
the recorded bound method, on the specification rebuilt from the record.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from torch import nn

from lirpa_lid.bounds.core import BoundBackend
from lirpa_lid.certificate.counting import DataLike, as_data, count_certified, data_digest
from lirpa_lid.certificate.record import Certificate, Verdict
from lirpa_lid.certificate.statistics import Guarantee, certified_bound
from lirpa_lid.digest import digest_frozen, digest_weights, file_sha256, frozen_differences
from lirpa_lid.errors import CertificateError, InputError
from lirpa_lid.specification.accuracy import CertifiedAccuracy
from lirpa_lid.specification.base import Specification, SpecificationKind
from lirpa_lid.specification.vnnlib.spec import VnnlibSpecification


def verify_update(model: nn.Module, certificate: Certificate | str | os.PathLike,
                  data: DataLike | None = None) -> Verdict:
    """Check that ``model`` is covered by ``certificate``.

    Checks: the certificate file and its domain file are intact; the domain's θ₀ matches the
    reference-weight digest; the recorded bound is the Clopper–Pearson bound (or ``k/n``) of the
    recorded counts; every parameter of the model that the domain covers lies in the domain (float64,
    exact); the model's other parameters and buffers are the certified ones; with ``data`` (an
    ``(x, y)`` pair or a specification), that it is the certified data or property.
    """
    try:
        certificate = _loaded(certificate)
    except CertificateError as exc:
        return Verdict(False, [str(exc)])
    reasons = integrity_problems(certificate)
    outside = certificate.domain.violations(model)
    if outside:
        reasons.append("the model's weights are not in the certified domain: " + "; ".join(outside))
    if digest_frozen(model, certificate.domain.names) != certificate.frozen_digest:
        reasons.append("parameters outside the domain (or buffers, or the architecture) differ from the "
                       "certified model" + _named_differences(certificate, model))
    if data is not None and data_digest(data) != certificate.data_digest:
        reasons.append("the data given is not the data the certificate was computed on (digest mismatch)")
    return Verdict(not reasons, reasons)


def recheck(certificate: Certificate | str | os.PathLike, model: nn.Module, data: DataLike | None = None,
            backend: BoundBackend | str | None = None) -> Verdict:
    """Recompute the certified count of ``certificate``'s domain with the recorded method and compare
    counts and bound with the recorded ones (stored numbers are not trusted).

    ``data``: for certified accuracy / local robustness the held-out ``(x, y)`` (ε and the clip range
    come from the record) or the specification itself; for VNN-LIB certificates nothing (the recorded
    files are re-read, their SHA-256 checked) or the :class:`VnnlibSpecification`. ``model`` supplies
    the parameters outside the domain (they must be the certified ones); its parameters inside the
    domain are not used. ``details`` holds the recomputed ``k``, ``n``, ``bound`` and ``class_counts``.
    """
    try:
        certificate = _loaded(certificate)
    except CertificateError as exc:
        return Verdict(False, [str(exc)])
    reasons = integrity_problems(certificate)
    try:
        spec = rebuild_specification(certificate, data, reasons)
    except (KeyError, TypeError, ValueError) as exc:
        return Verdict(False, reasons + [f"certificate has a malformed specification record: {exc}"])
    if spec is None:
        return Verdict(False, reasons)
    if spec.digest() != certificate.data_digest:
        reasons.append("the data given is not the data the certificate was computed on (digest mismatch)")
    if digest_frozen(model, certificate.domain.names) != certificate.frozen_digest:
        reasons.append("parameters outside the domain differ from the certified model; the bounds would differ"
                       + _named_differences(certificate, model))
    count = count_certified(model, certificate.domain, spec, certificate.method, backend)
    bound = certified_bound(count.k, count.n, count.class_counts, certificate.delta, certificate.guarantee)
    reasons += _recount_problems(certificate, count.k, count.n, count.class_counts, bound)
    return Verdict(not reasons, reasons, {"k": count.k, "n": count.n, "bound": bound,
                                          "class_counts": count.class_counts})


def integrity_problems(cert: Certificate) -> list[str]:
    """Why ``cert`` is not intact (empty when it is): its domain file (when it came from a file)
    against the recorded SHA-256, its θ₀ against the reference-weight digest, and its bound against
    the bound recomputed from its counts."""
    return _domain_file_problems(cert) + _reference_problems(cert) + _count_problems(cert)


def rebuild_specification(certificate: Certificate, data: DataLike | None,
                          reasons: list[str]) -> Specification | None:
    """The specification to recount. VNN-LIB: the one given, or re-read from the recorded files
    (None, with the reason appended to ``reasons``, when they are unavailable). Others: rebuilt from
    the record (classes, balance, ε, clip range) around the items of ``data`` — a given
    specification's own settings are not trusted."""
    if certificate.kind is SpecificationKind.VNNLIB:
        if data is None:
            return _recorded_vnnlib(certificate, reasons)
        if getattr(data, "kind", None) is not SpecificationKind.VNNLIB:
            raise InputError("recheck of a VNN-LIB certificate takes a VnnlibSpecification or no data (the "
                             "recorded files are re-read)")
        return data
    if getattr(data, "kind", None) is SpecificationKind.VNNLIB:
        raise InputError(f"the certificate is about a {certificate.kind!r} specification, not VNN-LIB properties")
    if data is None:
        raise InputError(f"recheck of a {certificate.kind} certificate needs the held-out data (x, y)")
    return _recorded_accuracy(certificate, *as_data(data))


# ------------------------------------------------------------------------------- steps
def _loaded(certificate: Certificate | str | os.PathLike) -> Certificate:
    """A certificate, loaded from its file when given a path (CertificateError when it cannot be)."""
    return certificate if isinstance(certificate, Certificate) else Certificate.load(certificate)


def _domain_file_problems(cert: Certificate) -> list[str]:
    """The domain file of a certificate read from a file is still there and unchanged."""
    if cert.path is None or cert.domain_sha256 is None:
        return []
    dom_path = Certificate.domain_path(cert.path)
    if not dom_path.is_file():
        return [f"domain file {dom_path} is missing"]
    if file_sha256(dom_path) != cert.domain_sha256:
        return [f"domain file {dom_path.name} does not match the SHA-256 recorded in the certificate"]
    return []


def _reference_problems(cert: Certificate) -> list[str]:
    """The domain's reference weights θ₀ are the certified ones."""
    if digest_weights(cert.domain.reference) != cert.reference_digest:
        return ["the domain's reference weights θ₀ do not match the certified reference-weight digest"]
    return []


def _count_problems(cert: Certificate) -> list[str]:
    """The recorded counts are consistent and the recorded bound is the one they give."""
    try:
        recomputed = certified_bound(cert.k, cert.n, cert.class_counts, cert.delta, cert.guarantee)
    except InputError as exc:
        return [f"inconsistent counts in the certificate: {exc}"]
    reasons = []
    if cert.class_counts is not None and (sum(v[1] for v in cert.class_counts.values()) != cert.n or
                                          sum(v[0] for v in cert.class_counts.values()) != cert.k):
        reasons.append("per-class counts do not add up to the recorded totals")
    if not math.isclose(recomputed, cert.bound, rel_tol=0, abs_tol=1e-12):
        what = "k/n" if cert.guarantee is Guarantee.DETERMINISTIC else "the Clopper-Pearson bound"
        reasons.append(f"recorded bound {cert.bound:.6f} is not {what} of the recorded "
                       f"counts ({recomputed:.6f})")
    return reasons


def _recount_problems(cert: Certificate, k: int, n: int, class_counts: dict | None, bound: float) -> list[str]:
    """Differences between a recount (``k`` of ``n``, per class, and its bound) and the record."""
    reasons = []
    if (k, n) != (cert.k, cert.n) or (class_counts or None) != (cert.class_counts or None):
        reasons.append(f"recomputed {k}/{n} certified items, the certificate records {cert.k}/{cert.n}")
    if not math.isclose(bound, cert.bound, rel_tol=0, abs_tol=1e-12):
        reasons.append(f"recomputed bound {bound:.6f} differs from the recorded {cert.bound:.6f}")
    return reasons


def _recorded_vnnlib(certificate: Certificate, reasons: list[str]) -> Specification | None:
    """The VNN-LIB specification of a certificate, re-read from the recorded files (SHA-256 checked)."""
    s = certificate.spec
    paths = []
    for i, rec in enumerate(s.get("properties") or []):
        path = rec.get("path") if isinstance(rec, dict) else None
        if not path or not Path(path).is_file():
            reasons.append(f"VNN-LIB file of property {i} ({path}) is not available; pass the specification "
                           "to recheck")
            return None
        if rec.get("sha256") and file_sha256(path) != rec["sha256"]:
            reasons.append(f"VNN-LIB file {path} changed since the certificate was written (SHA-256 differs)")
        paths.append(path)
    if not paths:
        reasons.append("the certificate records no VNN-LIB files; pass the specification to recheck")
        return None
    return VnnlibSpecification.from_files(paths, s["input_shape"], threshold=float(s.get("threshold", 1.0)),
                                          name=str(s.get("name", "vnnlib")))


def _recorded_accuracy(certificate: Certificate, x, y) -> CertifiedAccuracy:
    """The certified-accuracy / local-robustness specification of the record around the items ``(x, y)``."""
    s = certificate.spec
    extra = {}
    if certificate.kind is SpecificationKind.LOCAL_ROBUSTNESS:
        extra = {k: None if s.get(k) is None else torch.as_tensor(s[k], dtype=x.dtype)
                 for k in ("epsilon", "data_min", "data_max")}
    return CertifiedAccuracy(x, y, int(s["num_classes"]), float(s.get("threshold", 0.0)),
                             balanced=certificate.balanced, name=str(s.get("name", "recheck")),
                             classes=s.get("classes"), **extra)


def _named_differences(certificate: Certificate, model: nn.Module) -> str:
    """``": <tensor> (changed; ...); ..."`` when the certificate records its frozen tensors, else ``""``."""
    if not certificate.frozen_parts:
        return ""
    found = frozen_differences(certificate.frozen_parts, model, certificate.domain.names)
    return (": " + "; ".join(found)) if found else ""
