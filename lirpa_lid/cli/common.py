"""What every ``lirpa-lid`` command shares: exit codes, the output flags and what they silence, messages
on stderr, seeding, the data-directory flag, and running a command so that bad input exits 2.

Output conventions. Results go to stdout (a table or text, or JSON with ``--json``); messages and
progress bars go to stderr. ``--quiet`` silences messages and progress bars; whether it also silences a
command's results is the command's choice (``bounds`` keeps its table: it has no other output).
Progress bars are also off when stderr is not a terminal (:mod:`lirpa_lid.progress`).

This module imports nothing heavy: ``lirpa-lid --help`` and argument errors must not wait for torch.
"""
from __future__ import annotations

import argparse
import enum
import json
import os
import sys
from collections.abc import Callable

from lirpa_lid.errors import LirpaLidError


class ExitCode(enum.IntEnum):
    """The exit codes of every command."""

    OK = 0
    """Success: certified, PASS, written."""
    NOT_CERTIFIED = 1
    """The command ran, but something is not certified, below ``lid.required``, or an update is rejected."""
    BAD_INPUT = 2
    """Bad input (any :class:`~lirpa_lid.errors.LirpaLidError`, or a usage error): one line on stderr."""


def exit_code(ok: bool) -> ExitCode:
    """:attr:`ExitCode.OK` if ``ok``, else :attr:`ExitCode.NOT_CERTIFIED`."""
    return ExitCode.OK if ok else ExitCode.NOT_CERTIFIED


Log = Callable[..., None]


# ------------------------------------------------------------------------------- flags
def add_output_flags(parser: argparse.ArgumentParser, quiet: str = "no progress bars and no messages",
                     json_help: str = "print machine-readable results (JSON) on stdout") -> None:
    """``--quiet`` and ``--json``, with help texts that say what they leave out for this command."""
    parser.add_argument("--quiet", action="store_true", help=quiet)
    parser.add_argument("--json", action="store_true", help=json_help)


def add_data_dir_flag(parser: argparse.ArgumentParser) -> None:
    """``--data-dir``: where data sets and ``{data_dir}`` in specification files are looked up."""
    parser.add_argument("--data-dir", default=None, help="data directory (default: $LIRPA_LID_DATA, else "
                                                         "../shared/data next to a source checkout); {data_dir} in "
                                                         "specification files")


# ------------------------------------------------------------------------------- output
def silent(args: argparse.Namespace) -> bool:
    """Whether messages and progress bars are off: ``--quiet``, or ``--json`` (stdout is for the JSON)."""
    return bool(getattr(args, "quiet", False) or getattr(args, "json", False))


def show_progress(args: argparse.Namespace) -> bool:
    """Whether progress bars may be shown (they still stay off when stderr is not a terminal)."""
    return not silent(args)


def messages(args: argparse.Namespace) -> Log:
    """A ``print`` to stderr for messages, or a function that drops them (see :func:`silent`)."""
    if silent(args):
        return lambda *a, **k: None
    return lambda *a, **k: print(*a, file=sys.stderr, **k)


def print_json(data: object, **kwargs) -> None:
    """``data`` as indented JSON on stdout (``kwargs`` go to :func:`json.dumps`, e.g. ``default=str``)."""
    print(json.dumps(data, indent=2, **kwargs))


def seed(cfg) -> None:
    """Seed torch, numpy and random from ``general.seed`` before loading, as α,β-CROWN does."""
    import random

    import numpy as np
    import torch
    random.seed(cfg.general.seed)
    np.random.seed(cfg.general.seed)
    torch.manual_seed(cfg.general.seed)


def load_model_and_certificate(model_path: str, cert_path: str, config: str | None):
    """The model given on the command line (``.onnx``, or a state dict whose architecture comes from the
    ``config`` file) and the certificate (``project``, ``verify-update``)."""
    from lirpa_lid.certificate import Certificate
    from lirpa_lid.pipeline.config import load_config
    from lirpa_lid.pipeline.problems import load_model_file

    cert = Certificate.load(cert_path)
    cfg = load_config(config) if config is not None else None
    loaded = load_model_file(model_path, cfg)
    return loaded, cert


# ------------------------------------------------------------------------------- running
def run_command(command: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run ``command(args)``: a :class:`~lirpa_lid.errors.LirpaLidError` becomes one line on stderr and
    :attr:`ExitCode.BAD_INPUT`; a closed stdout (``... --json | head``) ends quietly with exit code 1."""
    try:
        return int(command(args))
    except LirpaLidError as exc:
        message = " ".join(str(exc).split())  # one line
        print(f"lirpa-lid {args.command}: error: {message}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except BrokenPipeError:  # stop quietly, as other tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return ExitCode.NOT_CERTIFIED
