"""Split-MNIST task construction: digit pairing, disjoint splits, labels per setting, models, data errors."""
from __future__ import annotations

import pytest
import torch
from continual_helpers import synthetic_data

from lirpa_lid import InputError
from lirpa_lid.continual.tasks import digit_pairs, make_model, mlp, paper_cnn, split_mnist_tasks
from lirpa_lid.datasets import data_dir


def _rows(x: torch.Tensor) -> set[bytes]:
    return {r.tobytes() for r in x.reshape(x.shape[0], -1).numpy()}


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_digit_pairs_pair_one_even_with_one_odd_and_use_every_digit_once(seed):
    pairs = digit_pairs(seed)
    assert len(pairs) == 5
    assert all(a % 2 == 0 and b % 2 == 1 for a, b in pairs)
    assert sorted(d for p in pairs for d in p) == list(range(10))
    assert digit_pairs(seed) == pairs                        # deterministic
    assert len({tuple(digit_pairs(s)) for s in range(6)}) > 1  # and random across seeds


@pytest.mark.parametrize("setting", ["TIL", "CIL", "DIL"])
def test_splits_are_disjoint_and_labelled_for_the_setting(setting):
    tasks = split_mnist_tasks(setting, 3, n_tasks=5, n_lid=16, n_cert=24, data=synthetic_data())
    pairs = digit_pairs(3)
    for task, digits in zip(tasks, pairs):
        assert task.digits == digits
        assert (len(task.lid), len(task.cert)) == (16, 24) and len(task.train) > 100 and len(task.test) == 60
        # no item is in two of train / LID / certificate splits (certificates need held-out items)
        tr, li, ce = _rows(task.train.x), _rows(task.lid.x), _rows(task.cert.x)
        assert not (tr & li) and not (tr & ce) and not (li & ce)
        labels = torch.cat([task.train.y, task.lid.y, task.cert.y, task.test.y]).unique().tolist()
        if setting == "DIL":
            assert task.num_outputs == 2 and task.classes == (0, 1) and labels == [0, 1] and task.head is None
        elif setting == "CIL":
            assert task.num_outputs == 10 and task.classes == tuple(range(10)) and sorted(labels) == sorted(digits)
            assert task.head is None
        else:
            assert task.num_outputs == 10 and task.head == tuple(sorted(digits)) and sorted(labels) == sorted(digits)


def test_caps_and_errors():
    data = synthetic_data()
    t = split_mnist_tasks("CIL", 0, n_tasks=2, n_train=50, n_test=10, n_lid=8, n_cert=8, data=data)
    assert [len(x.train) for x in t] == [50, 50] and [len(x.test) for x in t] == [10, 10]
    with pytest.raises(InputError, match="setting"):
        split_mnist_tasks("XIL", data=data)
    with pytest.raises(InputError, match="validation items"):
        split_mnist_tasks("CIL", 0, n_lid=500, n_cert=500, data=data)
    with pytest.raises(InputError, match="1 to 5 tasks"):
        digit_pairs(0, n_tasks=6)


def test_missing_data_directory_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="files missing"):
        split_mnist_tasks("TIL", 0, data_dir=tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        split_mnist_tasks("TIL", 0, data_dir=tmp_path / "nowhere")


def test_models_have_the_papers_sizes():
    cnn = paper_cnn(10)
    assert sum(p.numel() for p in cnn.parameters()) == 6179
    assert cnn(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert make_model("cnn", 2)(torch.zeros(1, 1, 28, 28)).shape == (1, 2)
    assert sum(p.numel() for p in mlp(10).parameters()) == 784 * 100 + 100 + 100 * 10 + 10
    with pytest.raises(InputError, match="architecture"):
        make_model("resnet", 10)


def _have_mnist() -> bool:
    try:
        return (data_dir() / "mnist" / "t10k-labels-idx1-ubyte.gz").exists()
    except InputError:
        return False


@pytest.mark.skipif(not _have_mnist(), reason="MNIST files not available")
def test_real_mnist_tasks():
    tasks = split_mnist_tasks("DIL", 0, n_train=64, n_lid=400, n_cert=1000)
    assert len(tasks) == 5
    for task in tasks:
        assert task.train.x.shape == (64, 1, 28, 28) and task.train.x.max() <= 1.0
        assert len(task.lid) == 400 and len(task.cert) == 1000 and 1700 < len(task.test) < 2300
        assert set(task.test.y.unique().tolist()) == {0, 1}
