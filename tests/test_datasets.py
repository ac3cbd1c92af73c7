"""Offline data: IDX reading (raw and gzip), MNIST loading with clear errors, the blobs tasks."""
from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from lirpa_lid import InputError
from lirpa_lid.datasets import blobs_tasks, data_dir, load_mnist, read_idx


def _idx(array: np.ndarray, code: int) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize("dtype, code", [(np.uint8, 0x08), (np.int32, 0x0C), (np.float32, 0x0D)])
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip(tmp_path, dtype, code, compress):
    arr = (np.arange(24).reshape(2, 3, 4) * 3).astype(dtype)
    raw = _idx(arr, code)
    path = tmp_path / ("a.idx.gz" if compress else "a.idx")
    path.write_bytes(gzip.compress(raw) if compress else raw)
    t = read_idx(path)
    assert t.shape == (2, 3, 4) and np.array_equal(t.numpy(), arr)


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(InputError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    good = _idx(np.zeros((4, 4), dtype=np.uint8), 0x08)
    (tmp_path / "short").write_bytes(good[:-3])
    with pytest.raises(InputError, match="announces shape"):
        read_idx(tmp_path / "short")
    (tmp_path / "gz").write_bytes(b"\x1f\x8bgarbage")
    with pytest.raises(InputError, match="gzip"):
        read_idx(tmp_path / "gz")
    with pytest.raises(InputError, match="does not exist"):
        read_idx(tmp_path / "nothing")


def _have(kind: str) -> bool:
    try:
        return (data_dir() / kind / "t10k-labels-idx1-ubyte.gz").exists()
    except InputError:
        return False


@pytest.mark.parametrize("kind", ["mnist", "fashion-mnist"])
def test_load_mnist_test_split(kind):
    if not _have(kind):
        pytest.skip(f"{kind} files not available")
    x, y = load_mnist("test", kind)
    assert x.shape == (10000, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (10000,) and y.dtype == torch.int64
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert torch.equal(torch.bincount(y, minlength=10) > 0, torch.ones(10, dtype=torch.bool))
    if kind == "mnist":
        assert y[:5].tolist() == [7, 2, 1, 0, 4]


def test_load_mnist_missing_files_say_how_to_get_them(tmp_path):
    with pytest.raises(InputError, match=r"train-images-idx3-ubyte\.gz.*LIRPA_LID_DATA"):
        load_mnist("train", "mnist", data_dir=tmp_path)
    with pytest.raises(InputError, match="unknown split"):
        load_mnist("validation", data_dir=tmp_path)
    with pytest.raises(InputError, match="unknown data set"):
        load_mnist("train", "cifar", data_dir=tmp_path)


def test_blobs_tasks():
    tasks = blobs_tasks(0)
    assert [t.classes for t in tasks] == [(0, 1), (2, 3), (4, 5)]
    total = {s: sum(len(getattr(t, s)) for t in tasks) for s in ("train", "val", "test")}
    assert total == {"train": 1400, "val": 300, "test": 300}
    for t in tasks:
        for s in (t.train, t.val, t.test):
            assert set(s.y.tolist()) <= set(t.classes) and s.x.dtype == torch.float32
    # centres on a circle of radius 10
    x = torch.cat([t.train.x for t in tasks])
    y = torch.cat([t.train.y for t in tasks])
    radii = torch.stack([x[y == c].mean(0).norm() for c in range(6)])
    assert torch.allclose(radii, torch.full((6,), 10.0), atol=0.5)
    again = blobs_tasks(0)
    assert torch.equal(again[1].val.x, tasks[1].val.x)
    assert not torch.equal(blobs_tasks(1)[0].train.x[:5], tasks[0].train.x[:5])
