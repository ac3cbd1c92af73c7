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


SCRIPT = '''
import argparse, sys
from pathlib import Path
from lirpa_lid.runs import add_run_options, execute, shard_of

def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--out")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--quiet", action="store_true")
    add_run_options(p)
    args = p.parse_args(argv)
    shard = shard_of(args)
    out = Path(args.out)

    def run(job):
        if job == 3:
            raise ValueError("three is unlucky")
        return {"job": job, "shard": args.shard}

    failures = execute(args, argv, __file__, list(range(6)), lambda j: out / f"{j}.json", lambda: run, str,
                       desc="t", log=lambda m: print(m, file=sys.stderr))
    if shard is None:
        (out / "report.txt").write_text(repr(failures))
    return 1 if failures else 0

if __name__ == "__main__":
    sys.exit(main())
'''


def test_workers_share_the_jobs_and_a_failing_worker_is_reported(tmp_path):
    """Two real worker processes of a script: each runs its share (every second job), the worker whose
    share fails exits non-zero and the parent reports it; the other results are all written."""
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    out = tmp_path / "out"
    out.mkdir()
    namespace: dict = {"__file__": str(script), "__name__": "script"}
    exec(compile(SCRIPT, str(script), "exec"), namespace)
    assert namespace["main"](["--out", str(out), "--workers", "2", "--quiet"]) == 1
    assert (out / "report.txt").read_text() == \
        "['worker 1/2 exited with code 1 (see its log above)']"
    shards = {int(p.stem): json.loads(p.read_text())["shard"] for p in out.glob("*.json")}
    assert shards == {0: "0/2", 1: "1/2", 2: "0/2", 4: "0/2", 5: "1/2"}
