"""Batch runs of ``lirpa-lid certify``: the rows of a VNN-COMP ``instances.csv``, one outcome each.

:func:`read_instances` reads the ``onnx,vnnlib[,timeout]`` rows, :func:`build_instances` loads and checks
every row before anything runs, :func:`run_instances` certifies them one after the other (see
:mod:`lirpa_lid.pipeline.outcomes` for one run), and :func:`write_instances` writes one sub-directory per
row and a summary table (``summary.md`` / ``summary.json``).

A row is named ``<onnx stem>-<vnnlib name>``, and so is its sub-directory. Rows whose names coincide (the
same file names in different folders, or a repeated row) each get their csv line appended
(``-line<N>``), so no row overwrites another's files; names are compared without case (case-insensitive
file systems).

The row's timeout bounds the LID growth loop (``LIDConfig.time_limit``: it stops growing and keeps the
largest sound snapshot reached); the width-0 check and the final float64 evaluation come on top (well
under a second per ACAS Xu instance).
"""
from __future__ import annotations

import csv
import json
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lirpa_lid.errors import LirpaLidError, SpecificationError
from lirpa_lid.files import write_text_atomic
from lirpa_lid.pipeline.config import RunConfig
from lirpa_lid.pipeline.outcomes import STATUSES, Outcome, markdown, run_problem, write_outcome
from lirpa_lid.pipeline.problems import Problem, build_instance_problem
from lirpa_lid.progress import progress_bar
from lirpa_lid.specification.vnnlib.spec import property_name

#: the timeout written for α,β-CROWN when a row has none
DEFAULT_TIMEOUT = 300.0


# ------------------------------------------------------------------------------- instances.csv
@dataclass(frozen=True)
class Instance:
    """One row of an instances.csv: the ONNX model, the VNN-LIB property (both resolved paths), the
    row's timeout in seconds (``None``: none given) and its line in the csv (for messages and names)."""

    onnx: Path
    vnnlib: Path
    timeout: float | None
    line: int

    @property
    def name(self) -> str:
        """``<onnx stem>-<vnnlib name>`` (``.gz`` and ``.vnnlib`` removed), e.g.
        ``ACASXU_run2a_2_4_batch_2000-prop_3``; not unique in every csv (see :func:`unique_names`)."""
        return f"{self.onnx.stem}-{property_name(self.vnnlib)}"


def read_instances(path: Path, root: Path | None = None) -> list[Instance]:
    """Rows ``onnx,vnnlib[,timeout]`` (VNN-COMP's instances.csv), paths relative to ``root`` (default:
    the csv's directory). Empty rows and rows starting with ``#`` are skipped. Errors name the file and
    line."""
    root = root or path.parent
    if not path.is_file():
        raise SpecificationError(f"instances file {path} does not exist")
    with open(path, newline="", encoding="utf-8") as f:
        rows = [_instance(path, root, line, [c.strip() for c in row]) for line, row in enumerate(csv.reader(f), 1)]
    out = [row for row in rows if row is not None]
    if not out:
        raise SpecificationError(f"{path} lists no instances")
    return out


def _instance(path: Path, root: Path, line: int, row: list[str]) -> Instance | None:
    """One stripped csv row as an :class:`Instance` (``None`` for blank and comment rows)."""
    if not row or not any(row) or row[0].startswith("#"):
        return None
    if len(row) not in (2, 3):
        raise SpecificationError(f"{path}, line {line}: expected onnx,vnnlib[,timeout], got {len(row)} columns")
    timeout = _timeout(path, line, row[2]) if len(row) == 3 and row[2] else None
    onnx_path, vnnlib_path = (Path(c) if Path(c).is_absolute() else root / c for c in row[:2])
    for p, what in ((onnx_path, "ONNX"), (vnnlib_path, "VNN-LIB")):
        if not p.is_file():
            raise SpecificationError(f"{path}, line {line}: {what} file {p} does not exist")
    return Instance(onnx_path, vnnlib_path, timeout, line)


def _timeout(path: Path, line: int, text: str) -> float:
    try:
        timeout = float(text)
    except ValueError:
        raise SpecificationError(f"{path}, line {line}: timeout {text!r} is not a number") from None
    if not timeout > 0:
        raise SpecificationError(f"{path}, line {line}: timeout must be > 0, got {text}")
    return timeout


def unique_names(names: Sequence[str], lines: Sequence[int]) -> list[str]:
    """``names`` made unique as folder names: a name that several rows share (compared without case)
    gets ``-line<N>`` appended, ``N`` from ``lines``; names used once stay as they are. Idempotent on
    names that are already unique."""
    shared = Counter(n.casefold() for n in names)
    taken: set[str] = set()
    out = []
    for name, line in zip(names, lines):
        base = name if shared[name.casefold()] == 1 else f"{name}-line{line}"
        candidate, k = base, 1
        while candidate.casefold() in taken:  # e.g. the same csv line twice, or a file named like a suffix
            k += 1
            candidate = f"{base}-{k}"
        taken.add(candidate.casefold())
        out.append(candidate)
    return out


def build_instances(cfg: RunConfig, instances: list[Instance], progress: bool = False) -> list[Problem]:
    """Load and validate every row first (a bad ONNX or VNN-LIB file stops the run before anything is
    computed or written; the error names the csv line). Each problem is named after its row, uniquely
    (:func:`unique_names`): the name is also its output folder."""
    names = unique_names([inst.name for inst in instances], [inst.line for inst in instances])
    problems = []
    for inst, name in zip(instances, names):
        try:
            problem = build_instance_problem(cfg, inst.onnx, inst.vnnlib, inst.timeout, progress=progress)
        except LirpaLidError as exc:
            raise type(exc)(f"instance on line {inst.line} ({inst.onnx.name}, {inst.vnnlib.name}): {exc}") from None
        problem.name = name
        problems.append(problem)
    return problems


def run_instances(problems: list[Problem], progress: bool = False,
                  log: Callable[[str], None] = lambda message: None) -> list[Outcome]:
    """Certify every instance, one after the other; ``log`` gets one line per finished row, the progress
    bar (``progress``, and only on a terminal) counts them."""
    outcomes = []
    for problem in progress_bar(problems, desc="instances", leave=False, enabled=progress):
        outcome = run_problem(problem)
        outcomes.append(outcome)
        log(f"{problem.name}: {outcome.status} ({outcome.seconds.get('total', 0.0):.1f}s)")
    return outcomes


def write_instances(outcomes: list[Outcome], instances: list[Instance], outdir: str | os.PathLike) -> list[Path]:
    """One sub-directory per row (named after its outcome, made unique), then ``summary.md`` (the table
    and the count of each status) and ``summary.json``. Returns the files written."""
    outdir = Path(outdir)
    folders = unique_names([o.name for o in outcomes], [inst.line for inst in instances])
    written = []
    for o, inst, folder in zip(outcomes, instances, folders):
        written += write_outcome(o, outdir / folder, inst.timeout or DEFAULT_TIMEOUT)
    counts = {s: sum(o.status == s for o in outcomes) for s in STATUSES}
    table = markdown(outcomes) + "\n" + ", ".join(f"{v} {k}" for k, v in counts.items() if v) + "\n"
    written.append(write_text_atomic(outdir / "summary.md", table))
    written.append(write_text_atomic(outdir / "summary.json", json.dumps(
        {"counts": counts, "instances": [o.summary() for o in outcomes]}, indent=2) + "\n"))
    written += _combined_instances(outdir, folders)
    return written


def _combined_instances(outdir: Path, folders: list[str]) -> list[Path]:
    """A top-level ``instances.csv`` joining the rows' own (the certified properties with their
    ``model.onnx``), paths relative to ``outdir``, so α,β-CROWN re-verifies the whole batch in one run."""
    rows = []
    for folder in folders:
        own = outdir / folder / "instances.csv"
        if own.is_file():
            for line in own.read_text().splitlines():
                onnx, vnnlib, timeout = line.split(",")
                rows.append(f"{folder}/{onnx},{folder}/{vnnlib},{timeout}\n")
    return [write_text_atomic(outdir / "instances.csv", "".join(rows))] if rows else []
