"""The certificate record: what was certified, its file format, and the verdict of a check.

Files. :meth:`Certificate.save` writes ``path`` (JSON, format ``lirpa_lid.certificate/1``) and a sibling
``<stem>.domain.pt`` (the weight domain, in its kind's file format), whose SHA-256 the JSON records;
the JSON also records its own SHA-256 (of its canonical form: sorted keys, no whitespace, without the
``certificate_sha256`` field), so an edited file is detected on load. This is integrity checking, not a
signature: anyone can recompute both digests, which is why checking recomputes
(:mod:`lirpa_lid.certificate.check`). Both files are complete before either is put in place: a save
that fails while writing leaves an earlier certificate at that path untouched and no partial file behind
(only a failure between the two final renames could pair a new domain file with the old JSON, which
:meth:`Certificate.load` then rejects by its SHA-256). Saving to an existing path replaces it.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lirpa_lid.bounds.auto_lirpa.compat import version as lirpa_version
from lirpa_lid.certificate.statistics import Guarantee
from lirpa_lid.digest import file_sha256
from lirpa_lid.domains.base import WeightDomain, domain_state, load_domain
from lirpa_lid.errors import CertificateError, InputError
from lirpa_lid.files import write_files_atomic
from lirpa_lid.specification.base import SpecificationKind
from lirpa_lid.version import __version__

#: the ``format`` field of every certificate file
FORMAT = "lirpa_lid.certificate/1"

#: required fields of a certificate file and their JSON types (``int`` excludes ``bool``)
_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "spec": dict, "reference_digest": str, "frozen_digest": str, "data_digest": str, "method": str, "dtype": str,
    "n": int, "k": int, "bound": (int, float), "delta": (int, float), "balanced": bool, "statement": str,
    "versions": dict, "created": str, "domain_file": str, "domain_sha256": str, "certificate_sha256": str,
}


def _versions() -> dict[str, str]:
    return {"lirpa_lid": __version__, "torch": torch.__version__, "auto_LiRPA": lirpa_version()}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class Certificate:
    """A certified weight domain and the statement made about it (:mod:`lirpa_lid.certificate.statistics`).

    ``k`` of ``n`` held-out items are certified; ``class_counts`` maps class → ``(k_c, n_c)``
    (balanced specifications only); ``bound`` is the finite-sample lower bound at confidence
    ``1 − delta`` — or, for ``guarantee is Guarantee.DETERMINISTIC`` (VNN-LIB properties), ``k/n``
    exactly (``delta`` is 0). ``model`` optionally records where the model came from (file, SHA-256,
    input shape); it is informational — checks use the digests. ``path`` and ``domain_sha256`` are set
    by :meth:`save` and :meth:`load`.
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
    created: str = field(default_factory=_now)
    held_out: str = "not checked"
    label: str = ""
    domain_sha256: str | None = None
    path: Path | None = None
    guarantee: Guarantee = Guarantee.FINITE_SAMPLE
    model: dict | None = None
    #: per frozen tensor: SHA-256, shape, norm (:func:`lirpa_lid.digest.frozen_parts`), to name what changed;
    #: None in certificates written before it was recorded
    frozen_parts: dict | None = None

    def __post_init__(self) -> None:
        self.guarantee = Guarantee.parse(self.guarantee)

    # ---------------------------------------------------------------- what it states
    @property
    def empirical(self) -> float:
        """The certified fraction on the held-out items (balanced: mean per-class fraction)."""
        if self.class_counts:
            return sum(k / n for k, n in self.class_counts.values()) / len(self.class_counts)
        return self.k / self.n

    @property
    def threshold(self) -> float:
        """The specification's threshold (0 when it records none)."""
        return float(self.spec.get("threshold", 0.0))

    @property
    def meets_threshold(self) -> bool:
        """Whether the finite-sample bound reaches the specification's threshold."""
        return self.bound >= self.threshold

    @property
    def kind(self) -> str:
        """The specification's kind (``certified_accuracy``, ``local_robustness``, ``vnnlib``)."""
        kind = self.spec.get("kind", SpecificationKind.CERTIFIED_ACCURACY)
        try:
            return SpecificationKind(kind)
        except ValueError:
            raise CertificateError(f"unknown specification kind {kind!r}; known: "
                                   f"{[k.value for k in SpecificationKind]}") from None

    def _mean_width(self) -> float:
        return float(self.domain.mean_width()) if self.domain.numel() else 0.0

    def summary(self) -> str:
        """One line for people: what was certified, for which domain size, with which guarantee."""
        if self.guarantee is Guarantee.DETERMINISTIC:
            return (f"{self.spec.get('name', 'spec')}: {self.method} certified {self.k}/{self.n} VNN-LIB "
                    f"propert{'y' if self.n == 1 else 'ies'} for every weight vector in the domain (mean width "
                    f"{self._mean_width():.4g}) and every input in the boxes (deterministic, no sampling)")
        what = "balanced accuracy" if self.balanced else "accuracy"
        if self.kind is SpecificationKind.LOCAL_ROBUSTNESS:
            what = f"robust {what} (L-inf eps={self.spec.get('epsilon')})"
        return (f"{self.spec.get('name', 'spec')}: {self.method} certified {self.k}/{self.n} held-out items; "
                f"with prob. >= {1 - self.delta:.3g}, every weight vector in the domain (mean width "
                f"{float(self.domain.mean_width()):.4g}) has {what} >= {self.bound:.4f}")

    # ---------------------------------------------------------------- file format
    def _record(self) -> dict:
        """The JSON record without the file fields (``domain_file``, ``domain_sha256``, ``certificate_sha256``)."""
        return {"format": FORMAT, "spec": self.spec, "reference_digest": self.reference_digest,
                "frozen_digest": self.frozen_digest, "data_digest": self.data_digest, "method": self.method,
                "dtype": self.dtype, "n": self.n, "k": self.k, "bound": self.bound, "delta": self.delta,
                "balanced": self.balanced, "statement": self.statement,
                "class_counts": None if self.class_counts is None else
                {str(c): list(v) for c, v in sorted(self.class_counts.items())},
                "versions": self.versions, "created": self.created, "held_out": self.held_out,
                "label": self.label, "mean_width": self._mean_width(),
                "parameters": self.domain.names, "guarantee": self.guarantee.value, "model": self.model,
                **({} if self.frozen_parts is None else {"frozen_parts": self.frozen_parts})}

    @staticmethod
    def _self_digest(record: Mapping) -> str:
        """SHA-256 of the canonical JSON of ``record`` without its ``certificate_sha256`` field."""
        body = {k: v for k, v in record.items() if k != "certificate_sha256"}
        return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    @staticmethod
    def domain_path(path: str | os.PathLike) -> Path:
        """The domain file that belongs to the certificate file ``path``: ``<stem>.domain.pt`` beside it."""
        path = Path(path)
        return path.with_name(path.stem + ".domain.pt")

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``path`` (JSON) and ``<stem>.domain.pt``, replacing an earlier pair: both are staged
        next to their targets and renamed onto them only when both are complete, so a failure while
        writing leaves no new or partial file. Returns ``path``; sets :attr:`path` and :attr:`domain_sha256`."""
        path = Path(path)
        dom_path = self.domain_path(path)
        domain = _domain_bytes(self.domain)
        domain_sha256 = hashlib.sha256(domain).hexdigest()  # what file_sha256 reads back from the file
        record = self._file_record(dom_path.name, domain_sha256)
        write_files_atomic({dom_path: domain, path: _json_bytes(record)})
        self.domain_sha256, self.path = domain_sha256, path
        return path

    def _file_record(self, domain_file: str, domain_sha256: str) -> dict:
        """The complete JSON record: :meth:`_record`, the domain file's name and digest, its own digest."""
        record = self._record()
        record["domain_file"] = domain_file
        record["domain_sha256"] = domain_sha256
        record["certificate_sha256"] = self._self_digest(record)
        return record

    @classmethod
    def load(cls, path: str | os.PathLike) -> Certificate:
        """Read and validate a certificate (malformed, edited or mismatched files → CertificateError)."""
        path = Path(path)
        record = _read_json(path)
        _check_fields(path, record)
        _check_self_digest(path, record)
        domain = _load_domain_file(path, record)
        guarantee = _recorded_guarantee(path, record)
        model = _recorded_model(path, record)
        frozen = _recorded_frozen_parts(path, record)
        class_counts = _recorded_class_counts(path, record)
        return cls(domain=domain, spec=record["spec"], reference_digest=record["reference_digest"],
                   frozen_digest=record["frozen_digest"], data_digest=record["data_digest"],
                   method=record["method"], dtype=record["dtype"], n=record["n"], k=record["k"],
                   bound=float(record["bound"]), delta=float(record["delta"]), balanced=record["balanced"],
                   statement=record["statement"], class_counts=class_counts, versions=record["versions"],
                   created=record["created"], held_out=record.get("held_out", "not checked"),
                   label=record.get("label", ""), domain_sha256=record["domain_sha256"], path=path,
                   guarantee=guarantee, model=model, frozen_parts=frozen)

@dataclass
class Verdict:
    """Outcome of a check: ``ok`` and the reasons it is not (empty when ok); ``details`` holds
    recomputed numbers (see :func:`~lirpa_lid.certificate.check.recheck`). True when ok."""

    ok: bool
    reasons: list[str]
    details: dict = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.ok


# ------------------------------------------------------------------------------- writing
def _domain_bytes(domain: WeightDomain) -> bytes:
    """The domain file's content: the domain's state (with its kind) as written by ``torch.save``."""
    buffer = io.BytesIO()
    torch.save(domain_state(domain.detach()), buffer)
    return buffer.getvalue()


def _json_bytes(record: Mapping) -> bytes:
    """The certificate file's content: indented JSON with sorted keys and a final newline."""
    text = io.StringIO()
    json.dump(record, text, indent=2, sort_keys=True)
    text.write("\n")
    return text.getvalue().encode("utf-8")


# ------------------------------------------------------------------------------- reading
def _read_json(path: Path) -> dict:
    """The JSON object in ``path``, which must say it is a certificate of this format."""
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise CertificateError(f"certificate file {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CertificateError(f"{path}: not a JSON certificate ({exc})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise CertificateError(f"{path}: not a lirpa_lid certificate (format must be {FORMAT!r})")
    return record


def _check_fields(path: Path, record: Mapping) -> None:
    """Every required field is present with its JSON type."""
    for key, typ in _FIELD_TYPES.items():
        if key not in record:
            raise CertificateError(f"{path}: missing field {key!r}")
        if not isinstance(record[key], typ) or (typ is int and isinstance(record[key], bool)):
            raise CertificateError(f"{path}: field {key!r} has the wrong type ({type(record[key]).__name__})")


def _check_self_digest(path: Path, record: Mapping) -> None:
    """The record is the one that was written (its own SHA-256 matches its content)."""
    if Certificate._self_digest(record) != record["certificate_sha256"]:
        raise CertificateError(f"{path}: the certificate was modified after it was written "
                               "(its SHA-256 does not match its content)")


def _load_domain_file(path: Path, record: Mapping) -> WeightDomain:
    """The domain from the file the record names: beside the certificate, with the recorded SHA-256."""
    dom_path = path.parent / record["domain_file"]
    if Path(record["domain_file"]).name != record["domain_file"]:
        raise CertificateError(f"{path}: domain_file must be a file name next to the certificate")
    if not dom_path.is_file():
        raise CertificateError(f"{path}: domain file {dom_path} is missing")
    if file_sha256(dom_path) != record["domain_sha256"]:
        raise CertificateError(f"{path}: domain file {dom_path.name} does not match the recorded SHA-256 "
                               "(it was modified or replaced)")
    try:
        return load_domain(dom_path)
    except Exception as exc:  # torch.load / a domain kind raise many kinds for a corrupt file
        raise CertificateError(f"{path}: cannot read domain file {dom_path.name}: {exc}") from None


def _recorded_guarantee(path: Path, record: Mapping) -> Guarantee:
    """The recorded guarantee (files written before it was recorded are finite-sample)."""
    try:
        return Guarantee.parse(record.get("guarantee", Guarantee.FINITE_SAMPLE.value))
    except InputError:
        raise CertificateError(f"{path}: unknown guarantee {record.get('guarantee')!r}") from None


def _recorded_model(path: Path, record: Mapping) -> dict | None:
    """The optional, informational model record."""
    if record.get("model") is not None and not isinstance(record["model"], dict):
        raise CertificateError(f"{path}: field 'model' has the wrong type")
    return record.get("model")


def _recorded_frozen_parts(path: Path, record: Mapping) -> dict | None:
    """The optional per-tensor record of what the domain does not cover (absent in older certificates)."""
    parts = record.get("frozen_parts")
    if parts is not None and not (isinstance(parts, dict) and all(isinstance(v, dict) for v in parts.values())):
        raise CertificateError(f"{path}: field 'frozen_parts' has the wrong type")
    return parts


def _recorded_class_counts(path: Path, record: Mapping) -> dict[int, tuple[int, int]] | None:
    """Per-class counts, class → ``(k_c, n_c)`` (JSON keys are strings), or None."""
    counts = record.get("class_counts")
    try:
        return None if counts is None else {int(c): (int(v[0]), int(v[1])) for c, v in counts.items()}
    except (TypeError, ValueError, IndexError, AttributeError):
        raise CertificateError(f"{path}: malformed class_counts") from None
