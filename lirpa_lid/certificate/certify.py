"""Certificates: a candidate domain, hard-certified on held-out data, with a finite-sample bound.

What a certificate states. Let ``T`` be the domain, ``p = P_{(x,y)~D}[item certified for T]``
(certified: every margin lower bound over all of ``T`` is > 0 with the recorded bound method).
For any θ' in ``T`` a certified item is classified correctly, so ``acc_D(θ') ≥ p``. If the ``n``
held-out items are i.i.d. from ``D`` and independent of how ``T`` was computed, the number ``k`` of
certified ones is Binomial(n, p), and the one-sided Clopper–Pearson bound ``L(k, n, δ)`` satisfies
``P[p ≥ L] ≥ 1 − δ``. Hence: *with probability ≥ 1 − δ over the held-out sample, every θ' in the
domain has expected accuracy ≥ L* — one event covers all θ' at once, because ``p`` does not
depend on θ'.

Balanced accuracy (mean over classes of the per-class accuracy). Conditional on the class counts
``n_c``, the items of class ``c`` are i.i.d. from ``D(x | y = c)``; per-class bounds
``L_c = L(k_c, n_c, δ/K)`` for the ``K`` classes present in the held-out sample all hold together
with probability ≥ 1 − δ (union bound), and then ``balanced_acc(θ') ≥ mean_c L_c`` for every θ'
(balanced accuracy over those ``K`` classes).

Several candidates certified on the same held-out set: each certificate holds with probability
``1 − δ``; to choose among them *by their bounds*, certify them together with :func:`certify_all`
(δ split evenly, so all statements hold simultaneously).

Local robustness (:class:`CertifiedAccuracy` with ``epsilon``): the same statement about *robust*
accuracy — the probability that every input of the item's clipped ε-ball is classified correctly —
since a certified item is robust for every θ' of the domain. The record keeps ε, the norm and the clip
range, so :func:`recheck` rebuilds the balls.

VNN-LIB properties (``guarantee: "deterministic"``): no sampling and no δ. ``k`` of the ``n``
properties are certified for every θ' in the domain and every input of their boxes; ``bound`` is
``k/n`` (1 when all hold). The record keeps each VNN-LIB file's path and SHA-256, so :func:`recheck`
can re-read and re-bound them.

Files. ``save(path)`` writes ``path`` (JSON) and a sibling ``<stem>.domain.pt`` (the orthotope),
whose SHA-256 the JSON records; the JSON also records its own SHA-256 (of its canonical form), so an
edited file is detected on load. This is integrity checking, not a signature: anyone can recompute
both digests, which is why checking recomputes (:func:`verify_update`, :func:`recheck`).
Bounds are computed in float64 round-to-nearest arithmetic and the statement is about exact
arithmetic; a float32 forward pass can differ from it by rounding.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from lirpa_lid.bounds.auto_lirpa.compat import version as lirpa_version
from lirpa_lid.bounds.core import BoundBackend, BoundMethod
from lirpa_lid.bounds.resolve import resolve_backend
from lirpa_lid.digest import digest_data, digest_frozen, digest_weights, file_sha256
from lirpa_lid.domains.base import WeightDomain, as_domain, domain_state, load_domain
from lirpa_lid.errors import CertificateError, InputError, SpecificationError
from lirpa_lid.margin import compute_margins
from lirpa_lid.specification.accuracy import CertifiedAccuracy
from lirpa_lid.specification.base import Specification, as_spec_list
from lirpa_lid.specification.vnnlib.spec import VnnlibSpecification
from lirpa_lid.version import __version__

FORMAT = "lirpa_lid.certificate/1"
DataLike = Specification | tuple[Tensor, Tensor]


# ------------------------------------------------------------------------------- statistics
def clopper_pearson_lower(k: int, n: int, delta: float) -> float:
    """One-sided ``1 − δ`` Clopper–Pearson lower bound on a binomial proportion from ``k`` of ``n``:
    ``Beta.ppf(δ; k, n − k + 1)``, and 0 when ``k = 0``."""
    from scipy.stats import beta

    k, n = int(k), int(n)
    if n < 1 or not 0 <= k <= n:
        raise InputError(f"Clopper-Pearson needs 0 <= k <= n and n >= 1, got k={k}, n={n}")
    if not (0.0 < float(delta) < 1.0):
        raise InputError(f"delta must lie in (0, 1), got {delta}")
    if k == 0:
        return 0.0
    return float(beta.ppf(float(delta), k, n - k + 1))


def _bound(k: int, n: int, class_counts: Mapping[int, tuple[int, int]] | None, delta: float,
           guarantee: str = "finite-sample") -> float:
    if guarantee == "deterministic":
        if n < 1 or not 0 <= k <= n:
            raise InputError(f"a certificate needs 0 <= k <= n and n >= 1, got k={k}, n={n}")
        return k / n
    if class_counts is None:
        return clopper_pearson_lower(k, n, delta)
    per_class = [clopper_pearson_lower(kc, nc, delta / len(class_counts)) for kc, nc in class_counts.values()]
    return sum(per_class) / len(per_class)


def _versions() -> dict[str, str]:
    return {"lirpa_lid": __version__, "torch": torch.__version__, "auto_LiRPA": lirpa_version()}


def _as_data(data: DataLike) -> tuple[Tensor, Tensor]:
    """``(x, y)`` from a specification, an ``(x, y)`` pair or anything with ``.x`` and ``.y``."""
    if isinstance(data, Tensor):
        raise InputError("data must be an (x, y) pair or a specification, not a single tensor")
    if hasattr(data, "x") and hasattr(data, "y"):
        return data.x, data.y
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return torch.as_tensor(data[0]), torch.as_tensor(data[1])
    raise InputError("data must be a CertifiedAccuracy specification or an (x, y) pair")


def _data_digest(data: DataLike) -> str:
    """The digest a certificate records for its data: ``spec.digest()``, or ``digest_data(x, y)``."""
    if hasattr(data, "digest") and callable(data.digest):
        return data.digest()
    return digest_data(*_as_data(data))


# ------------------------------------------------------------------------------- certificate
@dataclass
class Certificate:
    """A certified candidate domain (see module docstring for the statement).

    ``k`` of ``n`` held-out items are certified; ``class_counts`` maps class → ``(k_c, n_c)``
    (balanced specifications only); ``bound`` is the finite-sample lower bound at confidence
    ``1 − delta`` — or, for ``guarantee == "deterministic"`` (VNN-LIB properties), ``k/n`` exactly
    (``delta`` is 0). ``model`` optionally records where the model came from (file, SHA-256, input
    shape); it is informational — checks use the digests.
    """

    domain: WeightDomain
    spec: dict
    reference_digest: str
    frozen_digest: str
    data_digest: str
    method: str
    dtype: str
    n: int
    k: int
    bound: float
    delta: float
    balanced: bool
    statement: str
    class_counts: dict[int, tuple[int, int]] | None = None
    versions: dict[str, str] = field(default_factory=_versions)
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    held_out: str = "not checked"
    label: str = ""
    domain_sha256: str | None = None
    path: Path | None = None
    guarantee: str = "finite-sample"
    model: dict | None = None

    @property
    def empirical(self) -> float:
        """The certified fraction on the held-out items (balanced: mean per-class fraction)."""
        if self.class_counts:
            return sum(k / n for k, n in self.class_counts.values()) / len(self.class_counts)
        return self.k / self.n

    @property
    def threshold(self) -> float:
        return float(self.spec.get("threshold", 0.0))

    @property
    def meets_threshold(self) -> bool:
        """Whether the finite-sample bound reaches the specification's threshold."""
        return self.bound >= self.threshold

    @property
    def kind(self) -> str:
        return str(self.spec.get("kind", "certified_accuracy"))

    def summary(self) -> str:
        width = float(self.domain.mean_width()) if self.domain.numel() else 0.0
        if self.guarantee == "deterministic":
            return (f"{self.spec.get('name', 'spec')}: {self.method} certified {self.k}/{self.n} VNN-LIB "
                    f"propert{'y' if self.n == 1 else 'ies'} for every weight vector in the domain (mean width "
                    f"{width:.4g}) and every input in the boxes (deterministic, no sampling)")
        what = "balanced accuracy" if self.balanced else "accuracy"
        if self.kind == "local_robustness":
            what = f"robust {what} (L-inf eps={self.spec.get('epsilon')})"
        return (f"{self.spec.get('name', 'spec')}: {self.method} certified {self.k}/{self.n} held-out items; "
                f"with prob. >= {1 - self.delta:.3g}, every weight vector in the domain (mean width "
                f"{float(self.domain.mean_width()):.4g}) has {what} >= {self.bound:.4f}")

    # ---------------------------------------------------------------- files
    def _record(self) -> dict:
        return {"format": FORMAT, "spec": self.spec, "reference_digest": self.reference_digest,
                "frozen_digest": self.frozen_digest, "data_digest": self.data_digest, "method": self.method,
                "dtype": self.dtype, "n": self.n, "k": self.k, "bound": self.bound, "delta": self.delta,
                "balanced": self.balanced, "statement": self.statement,
                "class_counts": None if self.class_counts is None else
                {str(c): list(v) for c, v in sorted(self.class_counts.items())},
                "versions": self.versions, "created": self.created, "held_out": self.held_out,
                "label": self.label, "mean_width": float(self.domain.mean_width()) if self.domain.numel() else 0.0,
                "parameters": self.domain.names, "guarantee": self.guarantee, "model": self.model}

    @staticmethod
    def _self_digest(record: Mapping) -> str:
        body = {k: v for k, v in record.items() if k != "certificate_sha256"}
        return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    @staticmethod
    def domain_path(path: str | os.PathLike) -> Path:
        path = Path(path)
        return path.with_name(path.stem + ".domain.pt")

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``path`` (JSON) and ``<stem>.domain.pt`` atomically (temp files, then rename)."""
        path = Path(path)
        dom_path = self.domain_path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temps = []
        try:
            fd, tmp_dom = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".pt")
            os.close(fd)
            temps.append(tmp_dom)
            torch.save(domain_state(self.domain.detach()), tmp_dom)
            record = self._record()
            record["domain_file"] = dom_path.name
            record["domain_sha256"] = file_sha256(Path(tmp_dom))
            record["certificate_sha256"] = self._self_digest(record)
            fd, tmp_json = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
            temps.append(tmp_json)
            with os.fdopen(fd, "w") as f:
                json.dump(record, f, indent=2, sort_keys=True)
                f.write("\n")
            mask = os.umask(0)
            os.umask(mask)
            for t in temps:  # mkstemp creates 0600 files; certificates are meant to be shared
                os.chmod(t, 0o666 & ~mask)
            os.replace(tmp_dom, dom_path)
            os.replace(tmp_json, path)
        finally:
            for t in temps:
                if os.path.exists(t):
                    os.unlink(t)
        self.domain_sha256, self.path = record["domain_sha256"], path
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Certificate:
        """Read and validate a certificate (malformed, edited or mismatched files → CertificateError)."""
        path = Path(path)
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            raise CertificateError(f"certificate file {path} does not exist") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CertificateError(f"{path}: not a JSON certificate ({exc})") from None
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            raise CertificateError(f"{path}: not a lirpa_lid certificate (format must be {FORMAT!r})")
        types = {"spec": dict, "reference_digest": str, "frozen_digest": str, "data_digest": str,
                 "method": str, "dtype": str, "n": int, "k": int, "bound": (int, float), "delta": (int, float),
                 "balanced": bool, "statement": str, "versions": dict, "created": str, "domain_file": str,
                 "domain_sha256": str, "certificate_sha256": str}
        for key, typ in types.items():
            if key not in record:
                raise CertificateError(f"{path}: missing field {key!r}")
            if not isinstance(record[key], typ) or (typ is int and isinstance(record[key], bool)):
                raise CertificateError(f"{path}: field {key!r} has the wrong type ({type(record[key]).__name__})")
        if cls._self_digest(record) != record["certificate_sha256"]:
            raise CertificateError(f"{path}: the certificate was modified after it was written "
                                   "(its SHA-256 does not match its content)")
        dom_path = path.parent / record["domain_file"]
        if Path(record["domain_file"]).name != record["domain_file"]:
            raise CertificateError(f"{path}: domain_file must be a file name next to the certificate")
        if not dom_path.is_file():
            raise CertificateError(f"{path}: domain file {dom_path} is missing")
        if file_sha256(dom_path) != record["domain_sha256"]:
            raise CertificateError(f"{path}: domain file {dom_path.name} does not match the recorded SHA-256 "
                                   "(it was modified or replaced)")
        try:
            domain = load_domain(dom_path)
        except Exception as exc:  # torch.load / Orthotope raise many kinds for a corrupt file
            raise CertificateError(f"{path}: cannot read domain file {dom_path.name}: {exc}") from None
        guarantee = record.get("guarantee", "finite-sample")
        if guarantee not in ("finite-sample", "deterministic"):
            raise CertificateError(f"{path}: unknown guarantee {guarantee!r}")
        if record.get("model") is not None and not isinstance(record["model"], dict):
            raise CertificateError(f"{path}: field 'model' has the wrong type")
        counts = record.get("class_counts")
        try:
            class_counts = None if counts is None else {int(c): (int(v[0]), int(v[1])) for c, v in counts.items()}
        except (TypeError, ValueError, IndexError, AttributeError):
            raise CertificateError(f"{path}: malformed class_counts") from None
        return cls(domain=domain, spec=record["spec"], reference_digest=record["reference_digest"],
                   frozen_digest=record["frozen_digest"], data_digest=record["data_digest"],
                   method=record["method"], dtype=record["dtype"], n=record["n"], k=record["k"],
                   bound=float(record["bound"]), delta=float(record["delta"]), balanced=record["balanced"],
                   statement=record["statement"], class_counts=class_counts, versions=record["versions"],
                   created=record["created"], held_out=record.get("held_out", "not checked"),
                   label=record.get("label", ""), domain_sha256=record["domain_sha256"], path=path,
                   guarantee=guarantee, model=record.get("model"))


@dataclass
class Verdict:
    """Outcome of a check: ``ok`` and the reasons it is not (empty when ok); ``details`` holds
    recomputed numbers (see :func:`recheck`)."""

    ok: bool
    reasons: list[str]
    details: dict = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.ok


# ------------------------------------------------------------------------------- certify
def _backend_and_dtype(model: nn.Module, domain: WeightDomain,
                       backend: BoundBackend | str | None) -> tuple[BoundBackend, torch.dtype]:
    """The backend, and float64 wherever the backend follows the inputs' dtype (else the model's)."""
    backend = resolve_backend(model, backend, domain.names)
    return backend, torch.float64 if backend.follows_input_dtype else next(model.parameters()).dtype


def _row_keys(x: Tensor) -> set[bytes]:
    flat = x.detach().to("cpu", torch.float64).reshape(x.shape[0], -1).contiguous().numpy()
    return {row.tobytes() for row in flat}


def _count(model, domain, spec, method, backend) -> tuple[int, int, dict | None, str]:
    backend, dtype = _backend_and_dtype(model, domain, backend)
    with torch.no_grad():
        lower = compute_margins(backend, spec, domain, method, dtype=dtype)
    ok = spec.certified(lower)
    counts = None
    if getattr(spec, "balanced", False):
        counts = {int(c): (int(ok[spec.y == c].sum()), int((spec.y == c).sum()))
                  for c in torch.unique(spec.y).tolist()}
    return int(ok.sum()), len(spec), counts, str(dtype).replace("torch.", "")


def _statement(spec: Specification, k, n, counts, bound, delta, method) -> str:
    if spec.guarantee == "deterministic":
        return (f"Deterministic (no sampling): {k} of the {n} VNN-LIB properties are certified by {method} "
                f"bounds over the joint box of weights and inputs, i.e. each of them holds for every weight "
                f"vector in the domain and every input in its input box (bounds in float64 round-to-nearest "
                f"arithmetic, as in auto_LiRPA and alpha,beta-CROWN); fraction certified {bound:.6f}.")
    what = "accuracy"
    if spec.kind == "local_robustness":
        what = (f"robust accuracy (every input of the item's L-inf ball of radius "
                f"{spec.describe()['epsilon']}, clipped to the data range, classified correctly)")
    if counts is None:
        return (f"With probability >= {1 - delta:.6g} over the draw of the {n} held-out items (i.i.d. from "
                f"the data distribution and independent of how the domain was computed), every weight vector "
                f"in the domain has expected {what} >= {bound:.6f} on that distribution "
                f"(one-sided Clopper-Pearson bound from {k}/{n} items certified by {method} bounds).")
    K = len(counts)
    return (f"With probability >= {1 - delta:.6g} over the draw of the {n} held-out items (i.i.d., independent "
            f"of how the domain was computed), every weight vector in the domain has expected balanced "
            f"{what} over the classes {sorted(counts)} >= {bound:.6f} (mean of per-class one-sided "
            f"Clopper-Pearson bounds at delta/{K} each, union bound over the {K} classes; certified by "
            f"{method} bounds).")


def certify(model: nn.Module, domain: WeightDomain | object, spec_on_heldout: Specification,
            method: BoundMethod | str = "CROWN", delta: float = 0.05,
            backend: BoundBackend | str | None = None, exclude: DataLike | Tensor | None = None,
            label: str = "", model_record: dict | None = None) -> Certificate:
    """Hard-certify ``domain`` (an :class:`Orthotope` or a candidate) for a specification.

    Certified accuracy and local robustness (``guarantee == "finite-sample"``): ``spec_on_heldout``
    must hold items that played no part in computing the domain; pass the optimisation data as
    ``exclude`` to have that checked (shared input rows → SpecificationError). VNN-LIB properties
    (``"deterministic"``): the properties themselves, no held-out set, ``delta`` is not used (recorded
    as 0). Bounds are computed in float64 with the native backend. The model supplies the parameters
    the domain does not cover (their digest is recorded). ``model_record`` is stored as
    :attr:`Certificate.model`.
    """
    label = label or getattr(domain, "label", "")
    domain = as_domain(domain, "certify's domain")
    spec = as_spec_list(spec_on_heldout)
    if len(spec) != 1:
        raise SpecificationError("certify takes one specification (certify each one separately)")
    spec = spec[0]
    method = BoundMethod.parse(method).value
    deterministic = spec.guarantee == "deterministic"
    if deterministic:
        if exclude is not None:
            raise InputError(f"{spec.name}: 'exclude' checks held-out items; a VNN-LIB specification has none")
        delta, held_out = 0.0, "not applicable (deterministic: no sampling)"
    else:
        if not (0.0 < float(delta) < 1.0):
            raise InputError(f"delta must lie in (0, 1), got {delta}")
        held_out = "not checked"
        if exclude is not None:
            ex = exclude if isinstance(exclude, Tensor) else _as_data(exclude)[0]
            shared = _row_keys(spec.x) & _row_keys(ex)
            if shared:
                raise SpecificationError(f"{len(shared)} held-out item(s) also occur in the optimisation data; a "
                                         "finite-sample certificate needs items the domain never saw")
            held_out = f"checked: no input shared with the {int(ex.shape[0])} optimisation items"
    k, n, counts, dtype = _count(model, domain, spec, method, backend)
    bound = _bound(k, n, counts, float(delta), spec.guarantee)
    return Certificate(domain=domain.detach(), spec=spec.describe(),
                       reference_digest=digest_weights(domain.reference),
                       frozen_digest=digest_frozen(model, domain.names), data_digest=spec.digest(),
                       method=method, dtype=dtype, n=n, k=k, bound=bound, delta=float(delta),
                       balanced=bool(getattr(spec, "balanced", False)),
                       statement=_statement(spec, k, n, counts, bound, float(delta), method),
                       class_counts=counts, held_out=held_out, label=label, guarantee=spec.guarantee,
                       model=model_record)


def certify_all(model: nn.Module, candidates: Sequence, spec_on_heldout: Specification,
                method: BoundMethod | str = "CROWN", delta: float = 0.05, **kwargs) -> list[Certificate]:
    """Certify several candidates with ``δ/m`` each, so that all ``m`` statements hold together with
    probability ≥ 1 − δ (then any candidate may be chosen, even by its bound)."""
    if not candidates:
        raise InputError("no candidates to certify")
    m = len(candidates)
    return [certify(model, c, spec_on_heldout, method, delta / m,
                    label=getattr(c, "label", "") or f"candidate {i} of {m}", **kwargs)
            for i, c in enumerate(candidates)]


# ------------------------------------------------------------------------------- checks
def _integrity(cert: Certificate) -> list[str]:
    reasons = []
    if cert.path is not None and cert.domain_sha256 is not None:
        dom_path = Certificate.domain_path(cert.path)
        if not dom_path.is_file():
            reasons.append(f"domain file {dom_path} is missing")
        elif file_sha256(dom_path) != cert.domain_sha256:
            reasons.append(f"domain file {dom_path.name} does not match the SHA-256 recorded in the certificate")
    if digest_weights(cert.domain.reference) != cert.reference_digest:
        reasons.append("the domain's reference weights θ₀ do not match the certified reference-weight digest")
    try:
        recomputed = _bound(cert.k, cert.n, cert.class_counts, cert.delta, cert.guarantee)
    except InputError as exc:
        reasons.append(f"inconsistent counts in the certificate: {exc}")
    else:
        if cert.class_counts is not None and (sum(v[1] for v in cert.class_counts.values()) != cert.n or
                                              sum(v[0] for v in cert.class_counts.values()) != cert.k):
            reasons.append("per-class counts do not add up to the recorded totals")
        if not math.isclose(recomputed, cert.bound, rel_tol=0, abs_tol=1e-12):
            what = "k/n" if cert.guarantee == "deterministic" else "the Clopper-Pearson bound"
            reasons.append(f"recorded bound {cert.bound:.6f} is not {what} of the recorded "
                           f"counts ({recomputed:.6f})")
    return reasons


def verify_update(model: nn.Module, certificate: Certificate | str | os.PathLike,
                  data: DataLike | None = None) -> Verdict:
    """Check that ``model`` is covered by ``certificate``.

    Checks: the certificate file and its domain file are intact; the domain's θ₀ matches the
    reference-weight digest; the recorded bound is the Clopper–Pearson bound (or ``k/n``) of the
    recorded counts; every boxed parameter of the model lies in the domain (float64, exact); the
    model's other parameters and buffers are the certified ones; with ``data`` (an ``(x, y)`` pair or
    a specification), that it is the certified data or property.
    """
    if not isinstance(certificate, Certificate):
        try:
            certificate = Certificate.load(certificate)
        except CertificateError as exc:
            return Verdict(False, [str(exc)])
    reasons = _integrity(certificate)
    outside = certificate.domain.violations(model)
    if outside:
        reasons.append("the model's weights are not in the certified domain: " + "; ".join(outside))
    if digest_frozen(model, certificate.domain.names) != certificate.frozen_digest:
        reasons.append("parameters outside the domain (or buffers, or the architecture) differ from the "
                       "certified model")
    if data is not None and _data_digest(data) != certificate.data_digest:
        reasons.append("the data given is not the data the certificate was computed on (digest mismatch)")
    return Verdict(not reasons, reasons)


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


def _rebuild_spec(certificate: Certificate, data: DataLike | None, reasons: list[str]) -> Specification | None:
    """The specification to recount. VNN-LIB: the one given, or re-read from the recorded files. Others:
    rebuilt from the record (classes, balance, ε, clip range) around the items of ``data`` — a given
    specification's own settings are not trusted."""
    s = certificate.spec
    if certificate.kind == "vnnlib":
        if data is None:
            return _recorded_vnnlib(certificate, reasons)
        if getattr(data, "kind", None) != "vnnlib":
            raise InputError("recheck of a VNN-LIB certificate takes a VnnlibSpecification or no data (the "
                             "recorded files are re-read)")
        return data
    if getattr(data, "kind", None) == "vnnlib":
        raise InputError(f"the certificate is about a {certificate.kind!r} specification, not VNN-LIB properties")
    if data is None:
        raise InputError(f"recheck of a {certificate.kind} certificate needs the held-out data (x, y)")
    x, y = _as_data(data)
    extra = {}
    if certificate.kind == "local_robustness":
        extra = {k: None if s.get(k) is None else torch.as_tensor(s[k], dtype=x.dtype)
                 for k in ("epsilon", "data_min", "data_max")}
    return CertifiedAccuracy(x, y, int(s["num_classes"]), float(s.get("threshold", 0.0)),
                             balanced=certificate.balanced, name=str(s.get("name", "recheck")),
                             classes=s.get("classes"), **extra)


def recheck(certificate: Certificate | str | os.PathLike, model: nn.Module, data: DataLike | None = None,
            backend: BoundBackend | str | None = None) -> Verdict:
    """Recompute the certified count of ``certificate``'s domain with the recorded method and compare
    counts and bound with the recorded ones (stored numbers are not trusted).

    ``data``: for certified accuracy / local robustness the held-out ``(x, y)`` (ε and the clip range
    come from the record) or the specification itself; for VNN-LIB certificates nothing (the recorded
    files are re-read, their SHA-256 checked) or the :class:`VnnlibSpecification`. ``model`` supplies
    the parameters outside the domain (they must be the certified ones); its boxed parameters are not
    used. ``details`` holds the recomputed ``k``, ``n`` and ``bound``.
    """
    if not isinstance(certificate, Certificate):
        try:
            certificate = Certificate.load(certificate)
        except CertificateError as exc:
            return Verdict(False, [str(exc)])
    reasons = _integrity(certificate)
    try:
        spec = _rebuild_spec(certificate, data, reasons)
    except (KeyError, TypeError, ValueError) as exc:
        return Verdict(False, reasons + [f"certificate has a malformed specification record: {exc}"])
    if spec is None:
        return Verdict(False, reasons)
    if spec.digest() != certificate.data_digest:
        reasons.append("the data given is not the data the certificate was computed on (digest mismatch)")
    if digest_frozen(model, certificate.domain.names) != certificate.frozen_digest:
        reasons.append("parameters outside the domain differ from the certified model; the bounds would differ")
    k, n, counts, _ = _count(model, certificate.domain, spec, certificate.method, backend)
    bound = _bound(k, n, counts, certificate.delta, certificate.guarantee)
    if (k, n) != (certificate.k, certificate.n) or (counts or None) != (certificate.class_counts or None):
        reasons.append(f"recomputed {k}/{n} certified items, the certificate records "
                       f"{certificate.k}/{certificate.n}")
    if not math.isclose(bound, certificate.bound, rel_tol=0, abs_tol=1e-12):
        reasons.append(f"recomputed bound {bound:.6f} differs from the recorded {certificate.bound:.6f}")
    return Verdict(not reasons, reasons, {"k": k, "n": n, "bound": bound, "class_counts": counts})
