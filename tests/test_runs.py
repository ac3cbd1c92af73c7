"""Cached, resumable runs (``lirpa_lid.runs``): failures do not stop the others, finished runs are
skipped, shards split the pending runs, bad worker options are rejected."""
from __future__ import annotations

import argparse
import json

import pytest

from lirpa_lid import InputError
from lirpa_lid.runs import add_run_options, pending, run_jobs, shard_of


def _square(job: int) -> dict:
    if job == 3:
        raise ValueError("three is unlucky")
    return {"job": job, "square": job * job}


def test_failures_are_listed_and_the_other_runs_written(tmp_path):
    path_of = lambda job: tmp_path / f"{job}.json"  # noqa: E731
    logged = []
    failures = run_jobs(range(6), path_of, _square, lambda job: f"job {job}", desc="t", quiet=True, log=logged.append)
    assert failures == ["job 3: ValueError: three is unlucky"]
    assert logged == ["FAILED job 3: ValueError: three is unlucky"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{j}.json" for j in (0, 1, 2, 4, 5)]
    assert json.loads((tmp_path / "4.json").read_text()) == {"job": 4, "square": 16}
    assert pending(range(6), path_of) == [3]


def test_finished_runs_are_skipped_and_shards_split_the_rest(tmp_path):
    path_of = lambda job: tmp_path / f"{job}.json"  # noqa: E731
    ran = []

    def run(job):
        ran.append(job)
        return {"job": job}

    run_jobs([0, 1], path_of, run, str, desc="t", quiet=True, log=print)
    assert ran == [0, 1]
    ran.clear()
    shards = []
    for i in range(3):
        run_jobs(range(10), path_of, run, str, desc="t", quiet=True, log=print, shard=(i, 3))
        shards.append(list(ran))
        ran.clear()
    assert shards == [[3, 6, 9], [4, 7], [2, 5, 8]]  # every third job, the finished ones skipped
    assert pending(range(10), path_of) == []


@pytest.mark.parametrize("argv, message", [(["--workers", "0"], "--workers 0: need at least 1"),
                                           (["--shard", "2/2"], "--shard '2/2': need 0 <= I < N"),
                                           (["--shard", "one"], "--shard 'one': expected I/N")])
def test_bad_worker_options(argv, message):
    parser = argparse.ArgumentParser()
    add_run_options(parser)
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        shard_of(parser.parse_args(argv))
    assert shard_of(parser.parse_args(["--shard", "1/3"])) == (1, 3)
    assert shard_of(parser.parse_args([])) is None
