"""Shared pytest settings: tests run on one torch thread (see ``one_thread``) from a fixed seed
(``seeded``)."""
import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """The tests use small tensors: one torch thread is as fast as two, and much faster when the other
    core is busy (OpenMP threads then wait for each other on every small op); ``pytest -n 2`` runs two
    test processes on the two cores instead."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def seeded():
    """Every test starts from torch's generator at seed 0, so a test that draws without its own
    generator is still deterministic (and independent of the tests that ran before it)."""
    torch.manual_seed(0)
