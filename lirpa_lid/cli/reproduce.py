"""``lirpa-lid reproduce NAME [ARGS...]``: run ``main(argv)`` of a script in ``reproductions/``.

``NAME`` with ``-`` replaced by ``_`` names the script (``split-mnist`` → ``split_mnist.py``); the arguments
after it are passed through. The scripts' folder: ``--dir``, else ``$LIRPA_LID_REPRODUCTIONS``, else
``reproductions/`` of the source checkout, else of the working directory (:func:`reproductions_dir`).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from lirpa_lid.cli.common import ExitCode
from lirpa_lid.errors import InputError

REPRODUCTIONS_ENV = "LIRPA_LID_REPRODUCTIONS"
DESCRIPTION = ("Run main(argv) of reproductions/<NAME with - replaced by _>.py; arguments after NAME are passed "
               "through (e.g. lirpa-lid reproduce split-mnist --quick). Options of reproduce itself (--dir) go "
               "before NAME.")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``reproduce`` sub-command: its own options, then NAME and the script's arguments."""
    p = sub.add_parser("reproduce", help="run a reproduction script (reproductions/NAME.py)", description=DESCRIPTION)
    p.add_argument("name", help="the reproduction, e.g. split-mnist")
    p.add_argument("--dir", default=None, help=f"folder of the scripts (default: ${REPRODUCTIONS_ENV}, else "
                                               "reproductions/ of the source checkout, else of the working "
                                               "directory)")
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script")
    p.set_defaults(func=run)


def reproductions_dir(override: str | os.PathLike | None = None) -> Path:
    """``--dir`` > ``$LIRPA_LID_REPRODUCTIONS`` > ``reproductions/`` of the source checkout (editable
    installs) > ``reproductions/`` of the working directory (a checkout installed with ``pip install .``)."""
    if override is not None:
        return Path(override)
    if os.environ.get(REPRODUCTIONS_ENV):
        return Path(os.environ[REPRODUCTIONS_ENV])
    checkout = Path(__file__).resolve().parents[2] / "reproductions"
    return checkout if checkout.is_dir() else Path.cwd() / "reproductions"


def run(args: argparse.Namespace) -> int:
    """Find the script, load it and return what its ``main(argv)`` returns (None: exit 0)."""
    main_fn = _script_main(reproductions_dir(args.dir), args.name)
    code = main_fn(list(args.args))
    return ExitCode.OK if code is None else int(code)


def _script_main(folder: Path, name: str):
    """``main`` of ``folder/<name>.py``; errors list the scripts that exist."""
    import importlib.util

    stem = name.replace("-", "_")
    if not stem.isidentifier():
        raise InputError(f"{name!r} is not a reproduction name (letters, digits, '-' and '_')")
    path = folder / f"{stem}.py"
    if not path.is_file():
        known = sorted(p.stem.replace("_", "-") for p in folder.glob("*.py") if not p.stem.startswith("_")) \
            if folder.is_dir() else []
        raise InputError(f"no reproduction {name!r}: {path} does not exist"
                         + (f"; available: {', '.join(known)}" if known else ""))
    spec = importlib.util.spec_from_file_location(f"lirpa_lid_reproduction_{stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    main_fn = getattr(module, "main", None)
    if not callable(main_fn):
        raise InputError(f"{path} has no main(argv) function")
    return main_fn
