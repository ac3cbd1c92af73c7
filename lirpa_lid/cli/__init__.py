"""Command line ``lirpa-lid <command>`` (see ``main``)."""
from lirpa_lid.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
