"""Command line: ``lirpa-lid <command> ...``.

Exit codes: 0 success; 1 ran but something is not certified (or a check failed); 2 bad input
(any :class:`~lirpa_lid.errors.LirpaLidError`: the message goes to stderr).

Adding a command: write ``_add_<name>(subparsers)`` that creates its parser and sets
``func=<callable(args) -> int>``, and list it in ``COMMANDS``.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from .errors import LirpaLidError

EXIT_OK, EXIT_NOT_CERTIFIED, EXIT_BAD_INPUT = 0, 1, 2


# ------------------------------------------------------------------------------- demo
def _run_demo(args: argparse.Namespace) -> int:
    from .demo import DemoConfig, markdown_table, run_demo

    progress = not (args.quiet or args.json)
    config = DemoConfig.quick(progress=progress) if args.quick else DemoConfig(progress=progress)
    log = (lambda *a, **k: None) if (args.quiet or args.json) else (lambda *a, **k: print(*a, file=sys.stderr, **k))
    report = run_demo(args.outdir, config, log=log)
    if args.json:
        print(json.dumps(report, indent=2))
    elif not args.quiet:
        from .datasets import blobs_tasks
        print(markdown_table(report, [t.name for t in blobs_tasks(config.seed)]), end="")
        if args.outdir:
            print(f"\nwrote {args.outdir}/results.md, results.json, certificate_task*.json and "
                  "decision_boundaries.png")
    return EXIT_OK if report["all_verified"] else EXIT_NOT_CERTIFIED


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="certified continual learning on the paper's blobs (CROWN LIDs)",
                       description="Train on three class-incremental blobs tasks with plain SGD and with SGD "
                                   "projected into CROWN-certified LIDs; print a table, write certificates and "
                                   "a figure.")
    p.add_argument("-o", "--outdir", default="demo-output", help="output directory (default: demo-output)")
    p.add_argument("--quiet", action="store_true", help="no progress bars and no table")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    p.add_argument("--quick", action="store_true", help="a few-second run with fewer iterations (for tests)")
    p.set_defaults(func=_run_demo)


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_demo]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    parser = argparse.ArgumentParser(prog="lirpa-lid", description="Locally invariant domains: certified "
                                     "weight-space regions for safe model updates.")
    parser.add_argument("--version", action="version", version=f"lirpa-lid {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage, 0 on --help/--version
        return int(exc.code or 0)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    try:
        return args.func(args)
    except LirpaLidError as exc:
        print(f"lirpa-lid {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
