"""Command line: ``lirpa-lid <command> ...`` — the parser of every command and the entry point.

Commands, one module each: ``certify`` (specification file → LID → certificate files), ``bounds``
(margin bounds of a model over a weight box), ``project`` (a model into a certified domain),
``verify-update`` (PASS/FAIL with reasons), ``demo`` and ``reproduce`` (a script of ``reproductions/``).

Exit codes (:class:`~lirpa_lid.cli.common.ExitCode`): 0 success; 1 ran but something is not certified (or
an update is rejected); 2 bad input (any :class:`~lirpa_lid.errors.LirpaLidError`: one message line on
stderr, no output files; or a usage error).

Adding a command: a module ``cli/<name>.py`` with ``add_parser(subparsers)`` (which sets
``func=<callable(args) -> int>``) and ``run(args)``, listed in :data:`COMMANDS`. Command modules import
the library inside their functions, so that ``lirpa-lid --help`` and usage errors stay fast.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import lirpa_lid.cli.bounds as bounds
import lirpa_lid.cli.certify as certify
import lirpa_lid.cli.demo as demo
import lirpa_lid.cli.project as project
import lirpa_lid.cli.reproduce as reproduce
import lirpa_lid.cli.verify_update as verify_update
from lirpa_lid.cli.common import ExitCode, run_command

#: the command modules, in the order ``--help`` lists them
COMMANDS = (certify, bounds, project, verify_update, demo, reproduce)


def build_parser() -> argparse.ArgumentParser:
    """The ``lirpa-lid`` parser with every command of :data:`COMMANDS`."""
    from lirpa_lid.version import __version__

    parser = argparse.ArgumentParser(prog="lirpa-lid", description="Locally invariant domains: certified "
                                     "weight-space regions for safe model updates.")
    parser.add_argument("--version", action="version", version=f"lirpa-lid {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and run the command; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage, 0 on --help/--version
        return int(exc.code or 0)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return int(ExitCode.BAD_INPUT)
    return int(run_command(args.func, args))


if __name__ == "__main__":
    sys.exit(main())
