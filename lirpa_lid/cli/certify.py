"""``lirpa-lid certify``: a specification file → LID → certificate files.

One problem (the file's model and specification) writes into ``--outdir``; a batch (``general.csv_name``
in the file, or ``--instances CSV`` with a settings-only file) writes one sub-directory per instances.csv
row and ``summary.md`` / ``summary.json`` (see :mod:`lirpa_lid.pipeline.instances`). Every input is loaded
and checked before anything is computed or written.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from lirpa_lid.cli.common import (
    add_data_dir_flag,
    add_output_flags,
    exit_code,
    messages,
    print_json,
    seed,
    show_progress,
)
from lirpa_lid.errors import InputError

DESCRIPTION = ("Read a YAML specification file (alpha,beta-CROWN's model / data / specification sections plus a "
               "lid section), grow a certified weight domain (LID) around the model's weights and certify it: on "
               "held-out items for certified accuracy and local robustness (finite-sample bound), "
               "deterministically for VNN-LIB properties. Writes certificate.json + certificate.domain.pt, "
               "results.json/md and, for VNN-LIB and local robustness, model.onnx + vnnlib/ + instances.csv for "
               "alpha,beta-CROWN. With general.csv_name or --instances: one directory per instances.csv row and "
               "summary.md/json. Local robustness writes one VNN-LIB file per certified held-out item: limit the "
               "items with data.start/data.end (alpha,beta-CROWN's mnist default end is 10000). "
               "Exit 0: certified; 1: not certified (or below lid.required); 2: bad input.")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``certify`` sub-command and its options."""
    p = sub.add_parser("certify", help="compute the LID of a specification file and write its certificate",
                       description=DESCRIPTION)
    p.add_argument("config", help="YAML specification file (see specs/)")
    p.add_argument("-o", "--outdir", default=None, help="output directory (default: ./<config name>-lid)")
    p.add_argument("--instances", default=None, metavar="CSV",
                   help="run the (onnx, vnnlib, timeout) rows of a VNN-COMP instances.csv with the configuration's "
                        "lid settings (paths relative to the csv); the timeout bounds each LID's growth")
    add_data_dir_flag(p)
    add_output_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load and check the configuration, then certify one problem or every row of a batch."""
    from lirpa_lid.pipeline.config import load_config

    cfg = load_config(args.config)
    seed(cfg)
    outdir = Path(args.outdir) if args.outdir else Path(f"{cfg.name}-lid")
    batch = _batch(cfg, args)
    if batch is not None:
        return _run_batch(cfg, *batch, outdir, args)
    return _run_one(cfg, outdir, args)


def _note_ignored(cfg, args: argparse.Namespace) -> None:
    """After validation (bad input gives one line on stderr, nothing else): the α,β-CROWN settings read
    but without effect here."""
    if cfg.ignored:
        messages(args)("note: ignoring alpha,beta-CROWN settings that do not apply to lirpa_lid: "
                       f"{', '.join(cfg.ignored)}")


# ------------------------------------------------------------------------------- one problem
def _run_one(cfg, outdir: Path, args: argparse.Namespace) -> int:
    from lirpa_lid.pipeline.outcomes import run_problem, write_outcome
    from lirpa_lid.pipeline.problems import build_problem

    problem = build_problem(cfg, args.data_dir, progress=show_progress(args))
    _note_ignored(cfg, args)
    messages(args)(f"{problem.name}: {problem.spec!r}; certified value at width 0: {problem.base_value:.4f}")
    outcome = run_problem(problem)
    written = write_outcome(outcome, outdir)
    if args.json:
        print_json({"outdir": str(outdir), **outcome.summary()})
    elif not args.quiet:
        print(f"{outcome.status}: {outcome.message}")
        print(written_summary(written, outdir))
    return exit_code(outcome.ok)


def written_summary(written: list[Path], outdir: Path, most: int = 8) -> str:
    """``wrote a, b, c`` for a few files; for many (a local-robustness run writes one VNN-LIB file per
    certified item: thousands with α,β-CROWN's ``data.end: 10000``) the count per folder instead."""
    if len(written) <= most:
        return f"wrote {', '.join(str(p) for p in written)}"
    folders: dict[str, int] = {}
    for p in written:
        rel = Path(p).relative_to(outdir) if Path(p).is_relative_to(outdir) else Path(p)
        key = str(rel.parent) if rel.parent != Path(".") else "."
        folders[key] = folders.get(key, 0) + 1
    parts = [f"{n} in {k}/" if k != "." else f"{n} at the top" for k, n in sorted(folders.items())]
    return f"wrote {len(written)} files under {outdir}/ ({', '.join(parts)}); limit the items with data.start/data.end"


# ------------------------------------------------------------------------------- instances.csv
def _batch(cfg, args: argparse.Namespace) -> tuple[Path, Path | None] | None:
    """``(csv, root)`` of a batch run, or None: ``--instances`` (rows relative to the csv; the file must
    hold settings only) or ``general.csv_name`` (rows relative to ``root_path``, as in α,β-CROWN)."""
    if args.instances is not None:
        if cfg.model.onnx_path or cfg.model.name or cfg.specification.vnnlib_path or cfg.is_batch:
            raise InputError("--instances takes models and properties from the csv; the configuration must not set "
                             "model.name, model.onnx_path, specification.vnnlib_path or general.csv_name")
        return Path(args.instances), None
    if cfg.is_batch:
        return cfg.resolve(cfg.general.csv_name, args.data_dir), cfg.root(args.data_dir)
    return None


def _rows(cfg, csv_path: Path, root: Path | None) -> list:
    """The csv's rows, selected by ``data.start`` / ``data.end`` as α,β-CROWN selects them."""
    from lirpa_lid.pipeline.instances import read_instances

    instances = read_instances(csv_path, root)
    if cfg.data.start or cfg.data.end is not None:
        instances = instances[cfg.data.start:cfg.data.end]
        if not instances:
            raise InputError(f"data.start/end select no rows of {csv_path}")
    return instances


def _run_batch(cfg, csv_path: Path, root: Path | None, outdir: Path, args: argparse.Namespace) -> int:
    from lirpa_lid.pipeline.instances import build_instances, run_instances, write_instances

    instances = _rows(cfg, csv_path, root)
    problems = build_instances(cfg, instances, progress=False)  # validates every row first
    _note_ignored(cfg, args)
    outcomes = run_instances(problems, progress=show_progress(args), log=messages(args))
    written = write_instances(outcomes, instances, outdir)
    if args.json:
        print_json({"outdir": str(outdir), "instances": [o.summary() for o in outcomes]})
    elif not args.quiet:
        print((outdir / "summary.md").read_text(), end="")
        print(f"\nwrote {len(written)} files under {outdir}/")
    return exit_code(all(o.ok for o in outcomes))
