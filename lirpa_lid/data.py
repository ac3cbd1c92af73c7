"""Where offline data lives: ``--data-dir`` option > ``LIRPA_LID_DATA`` > ``../shared/data`` next to a
source checkout. Nothing is ever downloaded."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import InputError

ENV_VAR = "LIRPA_LID_DATA"

HOW_TO_GET = ("Put MNIST / Fashion-MNIST (the four IDX .gz files each, in mnist/ and fashion-mnist/) and the "
              "VNN-COMP 2022 benchmarks (vnncomp2022/acasxu, vnncomp2022/mnist_fc, from the public "
              "vnncomp2022_benchmarks repository, gunzipped) in one directory and pass it with --data-dir "
              f"or the {ENV_VAR} environment variable.")


def data_dir(override: str | os.PathLike | None = None, must_exist: bool = True) -> Path:
    """The data directory (see module docstring)."""
    if override is not None:
        path = Path(override)
    elif os.environ.get(ENV_VAR):
        path = Path(os.environ[ENV_VAR])
    else:
        path = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if must_exist and not path.is_dir():
        raise InputError(f"data directory {path} does not exist. {HOW_TO_GET}")
    return path


def data_file(*parts: str, override: str | os.PathLike | None = None) -> Path:
    """A file inside the data directory, with a clear error if it is missing."""
    path = data_dir(override).joinpath(*parts)
    if not path.exists():
        raise InputError(f"data file {path} is missing. {HOW_TO_GET}")
    return path
