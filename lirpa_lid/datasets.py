"""Offline data sets: MNIST / Fashion-MNIST from IDX files, and the paper's toy blobs tasks.

Nothing is downloaded. MNIST-style files are looked up with :func:`lirpa_lid.datasets.data_dir`
(``--data-dir`` option > ``LIRPA_LID_DATA`` > ``../shared/data``).
"""
from __future__ import annotations

import gzip
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from lirpa_lid.errors import InputError

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


_data_directory = data_dir  # for functions whose ``data_dir`` argument shadows the function


def data_file(*parts: str, override: str | os.PathLike | None = None) -> Path:
    """A file inside the data directory, with a clear error if it is missing."""
    path = data_dir(override).joinpath(*parts)
    if not path.exists():
        raise InputError(f"data file {path} is missing. {HOW_TO_GET}")
    return path

_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_KINDS = ("mnist", "fashion-mnist")


def read_idx(path: str | os.PathLike) -> Tensor:
    """An IDX file (gzip-compressed or raw) as a tensor of its stored shape and type."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"IDX file {path} does not exist")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise InputError(f"{path}: corrupt gzip data ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise InputError(f"{path}: not an IDX file (bad magic number {raw[:4].hex()})")
    dtype, ndim = np.dtype(_IDX_TYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise InputError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) - header != expected:
        raise InputError(f"{path}: IDX header announces shape {shape} ({expected} bytes of data) but the "
                         f"file holds {len(raw) - header}")
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return torch.from_numpy(arr.astype(dtype.newbyteorder("=")))


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def load_mnist(split: str = "train", kind: str = "mnist",
               data_dir: str | os.PathLike | None = None) -> tuple[Tensor, Tensor]:
    """MNIST or Fashion-MNIST: images ``[n, 1, 28, 28]`` float32 in ``[0, 1]`` and int64 labels ``[n]``.

    Looks for ``<data dir>/<kind>/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``.
    """
    if split not in _MNIST_FILES:
        raise InputError(f"unknown split {split!r}; choose 'train' or 'test'")
    if kind not in _KINDS:
        raise InputError(f"unknown data set {kind!r}; choose one of {_KINDS}")
    folder = _data_directory(data_dir) / kind
    paths = [_find(folder, stem) for stem in _MNIST_FILES[split]]
    missing = [f"{folder / stem}.gz" for stem, p in zip(_MNIST_FILES[split], paths) if p is None]
    if missing:
        raise InputError(f"{kind} {split} files missing: {', '.join(missing)}. {HOW_TO_GET}")
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.dim() != 3 or labels.dim() != 1 or images.shape[0] != labels.shape[0]:
        raise InputError(f"{kind} {split}: images {tuple(images.shape)} and labels {tuple(labels.shape)} "
                         "do not match")
    return images.unsqueeze(1).to(torch.float32) / 255.0, labels.to(torch.int64)



# ------------------------------------------------------------------------------- blobs
@dataclass(frozen=True)
class Split:
    """Inputs ``x`` ``[n, d]`` float32 and labels ``y`` ``[n]`` int64."""

    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def where(self, mask: Tensor) -> Split:
        """The items where ``mask`` (bool ``[n]``) is true, or at ``mask`` if it is an index tensor."""
        return Split(self.x[mask], self.y[mask])


@dataclass(frozen=True)
class Task:
    """One continual-learning task: the items of some classes, in train/val/test splits."""

    name: str
    classes: tuple[int, ...]
    train: Split
    val: Split
    test: Split


def blobs_tasks(seed: int = 0, n: int = 2000, centers: int = 6, radius: float = 10.0, std: float = 1.5,
                pairs: tuple[tuple[int, ...], ...] = ((0, 1), (2, 3), (4, 5))) -> list[Task]:
    """The paper's toy problem: ``make_blobs`` with ``centers`` centres evenly on a circle of
    ``radius``, std ``std``, ``n`` points, split 70/15/15 (seeded), tasks = class pairs.

    Returns one :class:`Task` per pair (class-incremental: labels keep their global values).
    """
    from sklearn.datasets import make_blobs

    angles = np.arange(centers) * 2 * np.pi / centers
    ctr = np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)
    x, y = make_blobs(n_samples=n, centers=ctr, cluster_std=std, random_state=seed)
    perm = np.random.default_rng(seed).permutation(n)
    x, y = torch.tensor(x[perm], dtype=torch.float32), torch.tensor(y[perm], dtype=torch.int64)
    n_train, n_val = int(round(0.7 * n)), int(round(0.15 * n))
    splits = (Split(x[:n_train], y[:n_train]), Split(x[n_train:n_train + n_val], y[n_train:n_train + n_val]),
              Split(x[n_train + n_val:], y[n_train + n_val:]))
    tasks = []
    for i, pair in enumerate(pairs):
        cls = torch.tensor(pair)
        tr, va, te = (s.where(torch.isin(s.y, cls)) for s in splits)
        tasks.append(Task(f"task {i} (classes {', '.join(map(str, pair))})", tuple(pair), tr, va, te))
    return tasks
