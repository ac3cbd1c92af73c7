"""One certify run behind ``lirpa-lid certify``: problem → LID → certificate → files.

One :class:`~lirpa_lid.pipeline.problems.Problem` gives one :class:`Outcome`: the LID is grown on the
specification, its largest candidate is certified (on held-out items for certified accuracy and local
robustness, deterministically for VNN-LIB properties), and :func:`write_outcome` writes

* ``certificate.json`` + ``certificate.domain.pt`` — the certificate (see :mod:`lirpa_lid.certificate`);
* ``results.json`` / ``results.md`` — numbers and timings;
* for VNN-LIB and local robustness, what α,β-CROWN reads to re-verify the model at θ₀ (which lies in
  the domain) or at any projected update: ``model.onnx``, ``vnnlib/*.vnnlib`` (VNN-LIB: the certified
  properties as parsed — the unsafe sets, normalised to DNF; local robustness: one ε-ball property per
  certified held-out item, in the model's input space) and ``instances.csv`` (``onnx,vnnlib,timeout``).

Every file is written atomically (temporary name, then rename); nothing is written before the
computation has finished, so a run that fails on bad input leaves no output behind.

A VNN-LIB problem the bound method cannot certify at θ₀ is split first (``lid.refine``, default
``split``; see :mod:`lirpa_lid.pipeline.refinement`): verified → the LID is grown and certified on the split
specification; a confirmed counterexample → ``falsified`` (the input ``x`` and output ``y`` in
``results.json``); undecided → ``not-certified-at-theta0``. ``results.json``'s ``decided_by`` says how θ₀
was decided (``{"how": "bounds"}``, or the split: verdict, leaves, sub-boxes bounded, per property).

Timings (``Outcome.seconds``): ``theta0`` (the bound at the model's own weights, computed when the
problem was built), ``split`` (input splitting, when it ran), ``lid`` (growing the domain), ``certify``
(the final certificate) and ``total``, their sum. A problem that fails at θ₀ has no ``lid``/``certify``.
"""
from __future__ import annotations

import enum
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lirpa_lid.bounds.resolve import bounded_network
from lirpa_lid.certificate import Certificate, Guarantee, certify
from lirpa_lid.errors import ModelError
from lirpa_lid.files import write_text_atomic
from lirpa_lid.lid import LIDResult, compute_lid
from lirpa_lid.margin import compute_margins
from lirpa_lid.pipeline.problems import Problem
from lirpa_lid.pipeline.refinement import Refinement, lid_time_left, refine_at_theta0
from lirpa_lid.specification.vnnlib.parse import Disjunct, VnnlibProperty, write_vnnlib
from lirpa_lid.specification.vnnlib.spec import property_name


class OutcomeStatus(enum.StrEnum):
    """What a certify run reached; the value is the string written to ``results.json`` / summaries."""

    CERTIFIED = "certified"
    """The certificate reaches ``required`` (exit code 0)."""
    BELOW_REQUIRED = "below-required"
    """A certificate exists, but its bound is below ``required`` (still written: valid, just weaker)."""
    NOT_CERTIFIED_AT_THETA0 = "not-certified-at-theta0"
    """The bound method cannot certify the specification even for the model's own weights (and input
    splitting, if it ran, left it undecided): no domain."""
    FALSIFIED = "falsified"
    """Input splitting found a counterexample at the model's own weights (exit code 1): no domain."""


#: every status, in the order the summaries count them
STATUSES = tuple(OutcomeStatus)


@dataclass
class Outcome:
    """What one problem gave: its :class:`OutcomeStatus`, a one-paragraph message, the LID result and
    certificate (``None`` when not certified at θ₀) and the timings (see the module docstring)."""

    name: str
    status: OutcomeStatus
    message: str
    problem: Problem | None = None
    result: LIDResult | None = None
    certificate: Certificate | None = None
    seconds: dict = field(default_factory=dict)
    refinement: Refinement | None = None

    @property
    def ok(self) -> bool:
        """Whether the run succeeded (exit code 0): the certificate reaches ``required``."""
        return self.status == OutcomeStatus.CERTIFIED

    def summary(self) -> dict:
        """The JSON-able record of ``results.json`` and ``summary.json``: status, settings, certificate."""
        out = {"name": self.name, "status": self.status, "message": self.message, "seconds": self.seconds}
        p, c = self.problem, self.certificate
        if p is not None:
            out.update({"kind": p.spec.kind, "method": p.method, "certify_method": p.lid.final_method.value,
                        "grow": p.lid.grow, "required": p.required,
                        "threshold": p.spec.threshold, "base_value": p.base_value, "model": p.model_record})
        if p is not None and p.spec.kind == "vnnlib":
            out["decided_by"] = self.refinement.describe() if self.refinement else {"how": "bounds"}
            if self.refinement is not None and self.refinement.counterexamples():
                out["counterexample"] = self.refinement.counterexamples()[0]
        if c is not None:
            out.update({"k": c.k, "n": c.n, "bound": c.bound, "delta": c.delta, "guarantee": c.guarantee,
                        "mean_width": float(c.domain.mean_width()), "statement": c.statement,
                        "free_elements": c.domain.numel(), "parameters": c.domain.names})
        if self.result is not None:
            out.update({"candidates": len(self.result.candidates),
                        "iterations_run": len(self.result.history.get("size", []))})
        return out


# ------------------------------------------------------------------------------- running
def run_problem(problem: Problem) -> Outcome:
    """Grow the LID and certify its largest candidate (nothing to grow if θ₀ itself is not certified, even
    after input splitting of a VNN-LIB problem)."""
    refinement = None
    spec, config = problem.spec, problem.lid
    if problem.base_value < problem.spec.threshold:
        refinement = refine_at_theta0(problem)
        if refinement is None or refinement.verdict != "verified":
            return _not_certified_at_theta0(problem, refinement)
        spec, config = refinement.spec, lid_time_left(problem.lid, problem.timeout, refinement.seconds)
    t0 = time.perf_counter()
    result = compute_lid(problem.model, spec, config, backend=problem.backend, params=problem.params,
                         label=problem.name)
    t1 = time.perf_counter()
    cert = _certify_largest(problem, result, spec)
    t2 = time.perf_counter()
    split = {} if refinement is None else {"split": refinement.seconds}
    seconds = _seconds(problem, **split, lid=t1 - t0, certify=t2 - t1)
    status, message = _judge(problem, cert)
    if refinement is not None:
        message = f"{_split_note(refinement)}; {message}"
    return Outcome(problem.name, status, message, problem, result, cert, seconds, refinement)


def _seconds(problem: Problem, **stages: float) -> dict:
    """``theta0`` (from the problem), then ``stages``, then ``total``: their sum."""
    seconds = {"theta0": problem.theta0_seconds, **stages}
    seconds["total"] = sum(seconds.values())
    return seconds


def _split_note(refinement: Refinement) -> str:
    """One clause on the split: how many sub-boxes, in how long."""
    return (f"input splitting {refinement.verdict} the propert{'y' if len(refinement.split.splits) == 1 else 'ies'} "
            f"at the model's own weights ({refinement.leaves} certified sub-boxes, {refinement.bounded} bounded, "
            f"{refinement.seconds:.1f} s)")


def _not_certified_at_theta0(problem: Problem, refinement: Refinement | None = None) -> Outcome:
    what = "property" if problem.spec.kind == "vnnlib" else "specification"
    seconds = _seconds(problem) if refinement is None else _seconds(problem, split=refinement.seconds)
    if refinement is not None and refinement.verdict == "falsified":
        cex = refinement.counterexamples()[0]
        message = (f"{_split_note(refinement)}: counterexample for property {cex['property']} at input "
                   f"x = {np.array2string(np.asarray(cex['x']), precision=6)} with output "
                   f"y = {np.array2string(np.asarray(cex['y']), precision=6)}; no weight domain exists")
        return Outcome(problem.name, OutcomeStatus.FALSIFIED, message, problem, seconds=seconds,
                       refinement=refinement)
    message = (f"{problem.method} cannot certify the {what} even for the model's own weights (certified value "
               f"{problem.base_value:.4f} < threshold {problem.spec.threshold:.4f}); no weight domain exists for "
               "this bound method")
    if refinement is None:
        message += " (branch and bound, e.g. alpha,beta-CROWN, may still verify it)"
    else:
        message += (f"; undecided after {refinement.bounded} sub-boxes of input splitting "
                    f"({refinement.seconds:.1f} s; raise lid.split.time_limit / max_boxes, or try alpha,beta-CROWN)")
    return Outcome(problem.name, OutcomeStatus.NOT_CERTIFIED_AT_THETA0, message, problem, seconds=seconds,
                   refinement=refinement)


def _certify_largest(problem: Problem, result: LIDResult, spec=None) -> Certificate:
    """The certificate of the largest candidate: on the held-out items, or deterministic (VNN-LIB) on
    ``spec`` (default the problem's; the split specification after input splitting)."""
    best = result.largest()
    if problem.held_out is not None:
        return certify(problem.model, best, problem.held_out, best.method, problem.delta, backend=problem.backend,
                       exclude=problem.spec, model_record=problem.model_record)
    return certify(problem.model, best, spec if spec is not None else problem.spec, best.method,
                   backend=problem.backend, model_record=problem.model_record)


def _judge(problem: Problem, cert: Certificate) -> tuple[OutcomeStatus, str]:
    if cert.bound >= problem.required:
        return OutcomeStatus.CERTIFIED, cert.summary()
    message = (f"{cert.summary()}; this is below the required {problem.required:.4f}"
               + ("" if cert.guarantee == Guarantee.DETERMINISTIC else
                  " (the domain meets the threshold on the optimisation items, but the finite-sample bound on "
                  f"{cert.n} held-out items is lower: set lid.required, use more items, or a higher threshold)"))
    return OutcomeStatus.BELOW_REQUIRED, message


# ------------------------------------------------------------------------------- files
def _robustness_property(lower: torch.Tensor, upper: torch.Tensor, label: int, num_classes: int) -> VnnlibProperty:
    """The VNN-LIB property "label wins on the box" (unsafe: some other class Y_j >= Y_label)."""
    lo, up = lower.detach().double().flatten().numpy(), upper.detach().double().flatten().numpy()
    disjuncts = []
    for j in range(num_classes):
        if j == label:
            continue
        C = np.zeros((1, num_classes))
        C[0, label], C[0, j] = 1.0, -1.0  # Y_label − Y_j ≤ 0: unsafe
        disjuncts.append(Disjunct(lo, up, C, np.zeros(1)))
    return VnnlibProperty(lo.size, num_classes, tuple(disjuncts))


def _vnnlib_properties(outcome: Outcome, folder: Path) -> list[Path]:
    """The certified VNN-LIB properties as parsed, one file each, numbered in specification order."""
    spec = outcome.problem.spec
    rows = []
    for i, prop in enumerate(spec.properties):
        src = spec.sources[i]
        stem = property_name(src) if src else f"property_{i}"
        rows.append(write_vnnlib(prop, folder / f"{i:03d}_{stem}.vnnlib"))
    return rows


def _robustness_properties(outcome: Outcome, folder: Path) -> list[Path]:
    """One ε-ball property per held-out item certified (in float64) for the whole domain."""
    p, cert = outcome.problem, outcome.certificate
    held = p.held_out
    net = bounded_network(p.model, cert.domain.names, "native")
    with torch.no_grad():
        ok = held.certified(compute_margins(net, held, cert.domain, cert.method, dtype=torch.float64))
    rows = []
    index = p.held_out_index or tuple(range(len(held)))
    for i in ok.nonzero().flatten().tolist():
        prop = _robustness_property(held.lower[i], held.upper[i], int(held.y[i]), held.num_classes)
        rows.append(write_vnnlib(prop, folder / f"item_{index[i]:05d}.vnnlib"))  # the data set's index
    return rows


def _write_reverification_files(outcome: Outcome, outdir: Path, timeout: float) -> tuple[list[Path], list[str]]:
    """model.onnx + vnnlib/*.vnnlib + instances.csv for alpha,beta-CROWN; returns (files, notes)."""
    from lirpa_lid.models.onnx import save_onnx  # onnx + onnx2torch: only when a file is written

    p = outcome.problem
    try:
        save_onnx(p.model, outdir / "model.onnx", p.input_shape)
    except ModelError as exc:
        return [], [f"model.onnx not written: {exc}"]
    (outdir / "vnnlib").mkdir(exist_ok=True)
    notes = []
    if p.spec.kind == "vnnlib":
        rows = _vnnlib_properties(outcome, outdir / "vnnlib")
    else:
        rows = _robustness_properties(outcome, outdir / "vnnlib")
        notes.append(f"{len(rows)} certified held-out items written as VNN-LIB local-robustness properties")
    text = "".join(f"model.onnx,vnnlib/{r.name},{timeout:g}\n" for r in rows)
    csv_file = write_text_atomic(outdir / "instances.csv", text)
    return [outdir / "model.onnx", *rows, csv_file], notes


def markdown(outcomes: list[Outcome]) -> str:
    """The results table (one row per outcome) of ``results.md`` and ``summary.md``."""
    head = ["name", "kind", "status", "certified", "bound", "required", "LID mean width", "seconds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for o in outcomes:
        s = o.summary()
        cert = f"{s['k']}/{s['n']}" if "k" in s else "—"
        bound = f"{s['bound']:.4f}" if "bound" in s else "—"
        req = f"{s['required']:.4f}" if "required" in s else "—"
        width = f"{s['mean_width']:.4g}" if "mean_width" in s else "—"
        lines.append(f"| {o.name} | {s.get('kind', '—')} | {o.status} | {cert} | {bound} | {req} | {width} | "
                     f"{s['seconds'].get('total', 0.0):.1f} |")
    return "\n".join(lines) + "\n"


def write_outcome(outcome: Outcome, outdir: str | os.PathLike, timeout: float = 300.0) -> list[Path]:
    """Write the certificate, results and re-verification files of one outcome into ``outdir``."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    summary = outcome.summary()
    if outcome.problem.held_out_index is not None:
        summary["held_out_index"] = list(outcome.problem.held_out_index)  # data set index of each held-out item
    if outcome.certificate is not None:
        written.append(outcome.certificate.save(outdir / "certificate.json"))
        if outcome.problem.spec.kind in ("vnnlib", "local_robustness"):
            files, summary["notes"] = _write_reverification_files(outcome, outdir, timeout)
            written += files
    written.append(write_text_atomic(outdir / "results.json", json.dumps(summary, indent=2) + "\n"))
    written.append(write_text_atomic(outdir / "results.md", markdown([outcome]) + f"\n{outcome.message}\n"))
    return written
