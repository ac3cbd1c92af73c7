"""The certify pipeline behind ``lirpa-lid certify``: problem → LID → certificate → files.

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

Batch runs (:func:`read_instances`, :func:`build_instances`, :func:`run_instances`): one sub-directory per row of an ``instances.csv`` and a summary
table. The row's timeout bounds the LID growth loop (``LIDConfig.time_limit``: it stops growing and
keeps the largest sound snapshot reached); the width-0 check and the final float64 evaluation come on
top (well under a second per ACAS Xu instance).
"""
from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lirpa_lid.bounds.resolve import bounded_network
from lirpa_lid.certificate.certify import Certificate, certify
from lirpa_lid.errors import LirpaLidError, ModelError, SpecificationError
from lirpa_lid.files import write_text_atomic
from lirpa_lid.lid.solve import LIDResult, compute_lid
from lirpa_lid.margin import compute_margins
from lirpa_lid.pipeline.config import RunConfig
from lirpa_lid.pipeline.problems import Problem, build_instance_problem
from lirpa_lid.specification.vnnlib.parse import Disjunct, VnnlibProperty, write_vnnlib

STATUSES = ("certified", "below-required", "not-certified-at-theta0")


@dataclass
class Outcome:
    """What one problem gave. ``status``: ``certified`` (the certificate reaches ``required``),
    ``below-required``, or ``not-certified-at-theta0`` (the bound method cannot certify the spec even
    for the model's own weights: no domain)."""

    name: str
    status: str
    message: str
    problem: Problem | None = None
    result: LIDResult | None = None
    certificate: Certificate | None = None
    seconds: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "certified"

    def summary(self) -> dict:
        out = {"name": self.name, "status": self.status, "message": self.message, "seconds": self.seconds}
        p, c = self.problem, self.certificate
        if p is not None:
            out.update({"kind": p.spec.kind, "method": p.method, "certify_method": p.lid.final_method.value,
                        "grow": p.lid.grow, "required": p.required,
                        "threshold": p.spec.threshold, "base_value": p.base_value, "model": p.model_record})
        if c is not None:
            out.update({"k": c.k, "n": c.n, "bound": c.bound, "delta": c.delta, "guarantee": c.guarantee,
                        "mean_width": float(c.domain.mean_width()), "statement": c.statement,
                        "free_elements": c.domain.numel(), "parameters": c.domain.names})
        if self.result is not None:
            out.update({"candidates": len(self.result.candidates), "iterations_run": len(self.result.history.get("size", []))})
        return out


def run_problem(problem: Problem) -> Outcome:
    """Grow the LID and certify its largest candidate."""
    p = problem
    t0 = time.perf_counter()
    if p.base_value < p.spec.threshold:
        what = "property" if p.spec.kind == "vnnlib" else "specification"
        return Outcome(p.name, "not-certified-at-theta0",
                       f"{p.method} cannot certify the {what} even for the model's own weights (certified value "
                       f"{p.base_value:.4f} < threshold {p.spec.threshold:.4f}); no weight domain exists for this "
                       "bound method (branch and bound, e.g. alpha,beta-CROWN, may still verify it)", p,
                       seconds={"total": time.perf_counter() - t0})
    result = compute_lid(p.model, p.spec, p.lid, backend=p.backend, params=p.params, label=p.name)
    t1 = time.perf_counter()
    best = result.largest()
    if p.held_out is not None:
        cert = certify(p.model, best, p.held_out, best.method, p.delta, backend=p.backend, exclude=p.spec,
                       model_record=p.model_record)
    else:
        cert = certify(p.model, best, p.spec, best.method, backend=p.backend, model_record=p.model_record)
    t2 = time.perf_counter()
    seconds = {"lid": t1 - t0, "certify": t2 - t1, "total": t2 - t0}
    if cert.bound >= p.required:
        status, msg = "certified", cert.summary()
    else:
        status = "below-required"
        msg = (f"{cert.summary()}; this is below the required {p.required:.4f}"
               + ("" if cert.guarantee == "deterministic" else
                  " (the domain meets the threshold on the optimisation items, but the finite-sample bound on "
                  f"{cert.n} held-out items is lower: set lid.required, use more items, or a higher threshold)"))
    return Outcome(p.name, status, msg, p, result, cert, seconds)


# ------------------------------------------------------------------------------- files
def _robustness_property(lower: torch.Tensor, upper: torch.Tensor, label: int, num_classes: int):
    """The VNN-LIB property "label wins on the box" (unsafe: some other class Y_j >= Y_label)."""
    import numpy as np
    lo, up = lower.detach().double().flatten().numpy(), upper.detach().double().flatten().numpy()
    disjuncts = []
    for j in range(num_classes):
        if j == label:
            continue
        C = np.zeros((1, num_classes))
        C[0, label], C[0, j] = 1.0, -1.0  # Y_label − Y_j ≤ 0: unsafe
        disjuncts.append(Disjunct(lo, up, C, np.zeros(1)))
    return VnnlibProperty(lo.size, num_classes, tuple(disjuncts))


def _write_reverification_files(outcome: Outcome, outdir: Path, timeout: float) -> tuple[list[Path], list[str]]:
    """model.onnx + vnnlib/*.vnnlib + instances.csv for alpha,beta-CROWN; returns (files, notes)."""
    from lirpa_lid.models.onnx import save_onnx

    p, cert = outcome.problem, outcome.certificate
    notes = []
    try:
        save_onnx(p.model, outdir / "model.onnx", p.input_shape)
    except ModelError as exc:
        return [], [f"model.onnx not written: {exc}"]
    rows = []
    (outdir / "vnnlib").mkdir(exist_ok=True)
    if p.spec.kind == "vnnlib":
        for i, prop in enumerate(p.spec.properties):
            src = p.spec.sources[i]
            stem = Path(src).stem if src else f"property_{i}"
            path = write_vnnlib(prop, outdir / "vnnlib" / f"{i:03d}_{stem}.vnnlib")
            rows.append(path)
    else:
        held = p.held_out
        net = bounded_network(p.model, cert.domain.names, "native")
        with torch.no_grad():
            ok = held.certified(compute_margins(net, held, cert.domain, cert.method, dtype=torch.float64))
        for i in ok.nonzero().flatten().tolist():
            prop = _robustness_property(held.lower[i], held.upper[i], int(held.y[i]), held.num_classes)
            rows.append(write_vnnlib(prop, outdir / "vnnlib" / f"item_{i:05d}.vnnlib"))
        notes.append(f"{len(rows)} certified held-out items written as VNN-LIB local-robustness properties")
    text = "".join(f"model.onnx,vnnlib/{r.name},{timeout:g}\n" for r in rows)
    csv_file = write_text_atomic(outdir / "instances.csv", text)
    return [outdir / "model.onnx", *rows, csv_file], notes


def markdown(outcomes: list[Outcome]) -> str:
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
    if outcome.certificate is not None:
        written.append(outcome.certificate.save(outdir / "certificate.json"))
        if outcome.problem.spec.kind in ("vnnlib", "local_robustness"):
            files, summary["notes"] = _write_reverification_files(outcome, outdir, timeout)
            written += files
    written.append(write_text_atomic(outdir / "results.json", json.dumps(summary, indent=2) + "\n"))
    written.append(write_text_atomic(outdir / "results.md", markdown([outcome]) + f"\n{outcome.message}\n"))
    return written


# ------------------------------------------------------------------------------- instances.csv
@dataclass(frozen=True)
class Instance:
    onnx: Path
    vnnlib: Path
    timeout: float | None
    line: int

    @property
    def name(self) -> str:
        return f"{self.onnx.stem}-{self.vnnlib.stem}"


def read_instances(path: Path, root: Path | None = None) -> list[Instance]:
    """Rows ``onnx,vnnlib[,timeout]`` (VNN-COMP's instances.csv), paths relative to ``root`` (default:
    the csv's directory). Errors name the file and line."""
    root = root or path.parent
    if not path.is_file():
        raise SpecificationError(f"instances file {path} does not exist")
    out = []
    with open(path, newline="", encoding="utf-8") as f:
        for line, row in enumerate(csv.reader(f), start=1):
            row = [c.strip() for c in row]
            if not row or not any(row) or row[0].startswith("#"):
                continue
            if len(row) not in (2, 3):
                raise SpecificationError(f"{path}, line {line}: expected onnx,vnnlib[,timeout], got {len(row)} columns")
            timeout = None
            if len(row) == 3 and row[2]:
                try:
                    timeout = float(row[2])
                except ValueError:
                    raise SpecificationError(f"{path}, line {line}: timeout {row[2]!r} is not a number") from None
                if not timeout > 0:
                    raise SpecificationError(f"{path}, line {line}: timeout must be > 0, got {row[2]}")
            onnx_path, vnnlib_path = (Path(c) if Path(c).is_absolute() else root / c for c in row[:2])
            for p, what in ((onnx_path, "ONNX"), (vnnlib_path, "VNN-LIB")):
                if not p.is_file():
                    raise SpecificationError(f"{path}, line {line}: {what} file {p} does not exist")
            out.append(Instance(onnx_path, vnnlib_path, timeout, line))
    if not out:
        raise SpecificationError(f"{path} lists no instances")
    return out


def build_instances(cfg: RunConfig, instances: list[Instance], progress: bool = False) -> list[Problem]:
    """Load and validate every row first (a bad ONNX or VNN-LIB file stops the run before anything is
    computed or written; the error names the csv line)."""
    problems = []
    for inst in instances:
        try:
            problem = build_instance_problem(cfg, inst.onnx, inst.vnnlib, inst.timeout, progress=progress)
        except LirpaLidError as exc:
            raise type(exc)(f"instance on line {inst.line} ({inst.onnx.name}, {inst.vnnlib.name}): {exc}") from None
        problem.name = inst.name
        problems.append(problem)
    return problems


def run_instances(problems: list[Problem], progress: bool = False, log=lambda message: None) -> list[Outcome]:
    """Certify every instance, one after the other."""
    outcomes = []
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(problems), desc="instances", leave=False)
    for problem in problems:
        outcome = run_problem(problem)
        outcomes.append(outcome)
        log(f"{problem.name}: {outcome.status} ({outcome.seconds.get('total', 0.0):.1f}s)")
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return outcomes


def write_instances(outcomes: list[Outcome], instances: list[Instance], outdir: str | os.PathLike) -> list[Path]:
    outdir = Path(outdir)
    written = []
    for o, inst in zip(outcomes, instances):
        written += write_outcome(o, outdir / o.name, inst.timeout or 300.0)
    table = markdown(outcomes)
    counts = {s: sum(o.status == s for o in outcomes) for s in STATUSES}
    table += "\n" + ", ".join(f"{v} {k}" for k, v in counts.items() if v) + "\n"
    written.append(write_text_atomic(outdir / "summary.md", table))
    written.append(write_text_atomic(outdir / "summary.json", json.dumps(
        {"counts": counts, "instances": [o.summary() for o in outcomes]}, indent=2) + "\n"))
    return written
