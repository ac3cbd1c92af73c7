"""``lirpa-lid demo``: certified class-incremental learning on the paper's blobs (CROWN LIDs).

Runs :func:`lirpa_lid.pipeline.demo.run_demo` (plain SGD against SGD projected into certified LIDs over
three tasks), prints the stage-by-stage table (or JSON) and writes certificates, results and a figure.
Exit 0 when every certificate covers the final LID model.
"""
from __future__ import annotations

import argparse

from lirpa_lid.cli.common import add_output_flags, exit_code, messages, print_json, show_progress

DESCRIPTION = ("Train on three class-incremental blobs tasks with plain SGD and with SGD projected into "
               "CROWN-certified LIDs; print a table, write certificates and a figure.")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``demo`` sub-command and its options."""
    p = sub.add_parser("demo", help="certified continual learning on the paper's blobs (CROWN LIDs)",
                       description=DESCRIPTION)
    p.add_argument("-o", "--outdir", default="demo-output", help="output directory (default: demo-output)")
    add_output_flags(p, quiet="no progress bars and no table", json_help="print the results as JSON instead of a table")
    p.add_argument("--quick", action="store_true", help="a few-second run with fewer iterations (for tests)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo (``--quick``: a few seconds) and print its table or JSON."""
    from lirpa_lid.pipeline import demo

    progress = show_progress(args)
    config = demo.DemoConfig.quick(progress=progress) if args.quick else demo.DemoConfig(progress=progress)
    report = demo.run_demo(args.outdir, config, log=messages(args))
    if args.json:
        print_json(report)
    elif not args.quiet:
        from lirpa_lid.datasets import blobs_tasks
        print(demo.markdown_table(report, [t.name for t in blobs_tasks(config.seed)]), end="")
        if args.outdir:
            print(f"\nwrote {args.outdir}/results.md, results.json, certificate_task*.json and "
                  "decision_boundaries.png")
    return exit_code(report["all_verified"])
