"""Command line ``lirpa-lid <command>`` (see :mod:`lirpa_lid.cli.app`): one module per command, shared
flags and exit codes in :mod:`lirpa_lid.cli.common`."""
from lirpa_lid.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
