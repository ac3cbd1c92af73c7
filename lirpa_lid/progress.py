"""The one progress-bar factory: tqdm on a terminal, nothing otherwise.

Written to a non-terminal (CI logs, ``| tee``, a file), a tqdm bar prints one line per update and floods
the log; there the bar is off unless ``LIRPA_LID_PROGRESS=1`` asks for it (then it redraws at most every
30 s). ``enabled=False`` (``--quiet``, ``--json``, workers) always turns it off.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

from tqdm import tqdm

ENV_VAR = "LIRPA_LID_PROGRESS"


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def progress_bar(iterable: Iterable | None = None, *, enabled: bool = True, **kwargs: Any) -> tqdm:
    """A tqdm bar over ``iterable`` (or with ``total=``), off when not ``enabled`` or when stderr is not a
    terminal (see module docstring). Keyword arguments go to tqdm (``total``, ``desc``, ``leave``)."""
    forced = os.environ.get(ENV_VAR, "") == "1"
    show = enabled and (forced or _stderr_is_terminal())
    if forced and not _stderr_is_terminal():
        kwargs.setdefault("mininterval", 30.0)
    return tqdm(iterable, disable=not show, **kwargs)
