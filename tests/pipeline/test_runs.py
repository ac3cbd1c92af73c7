"""Cached, resumable runs (``lirpa_lid.runs``): failures do not stop the others, finished runs are
skipped, claimed runs are left to the worker that claimed them, worker processes run every pending run
exactly once, bad worker options are rejected."""
from __future__ import annotations

import argparse
import json

import pytest

from lirpa_lid import InputError
from lirpa_lid.pipeline.runs import add_run_options, claim_path, is_worker, pending, run_jobs


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


def test_finished_runs_are_skipped_and_claimed_runs_left_to_their_worker(tmp_path):
    path_of = lambda job: tmp_path / f"{job}.json"  # noqa: E731
    ran = []

    def run(job):
        ran.append(job)
        return {"job": job}

    run_jobs([0, 1], path_of, run, str, desc="t", quiet=True, log=print)
    assert ran == [0, 1]
    ran.clear()
    claim_path(path_of(3)).touch()          # another worker is running job 3
    failures = run_jobs(range(5), path_of, run, str, desc="t", quiet=True, log=print, claim=True)
    assert failures == [] and ran == [2, 4]
    assert claim_path(path_of(3)).exists()   # still that worker's
    assert not any(claim_path(path_of(j)).exists() for j in (2, 4))  # released after writing the result
    assert pending(range(5), path_of) == [3]
    ran.clear()
    run_jobs(range(5), path_of, run, str, desc="t", quiet=True, log=print)  # no workers: claims do not count
    assert ran == [3]


def test_a_failed_claimed_run_keeps_its_claim(tmp_path):
    """So that the other workers do not repeat a run that fails (the parent clears it afterwards)."""
    path_of = lambda job: tmp_path / f"{job}.json"  # noqa: E731
    failures = run_jobs([2, 3], path_of, _square, str, desc="t", quiet=True, log=lambda m: None, claim=True)
    assert failures == ["3: ValueError: three is unlucky"]
    assert claim_path(path_of(3)).exists() and not claim_path(path_of(2)).exists()
    assert pending([2, 3], path_of) == [3]


def test_bad_worker_options():
    parser = argparse.ArgumentParser()
    add_run_options(parser)
    with pytest.raises(InputError, match="--workers 0: need at least 1"):
        is_worker(parser.parse_args(["--workers", "0"]))
    assert is_worker(parser.parse_args(["--worker"])) is True
    assert is_worker(parser.parse_args(["--workers", "3"])) is False


SCRIPT = '''
import argparse, os, sys, time
from pathlib import Path
from lirpa_lid.pipeline.runs import add_run_options, execute, is_worker

def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--out")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--quiet", action="store_true")
    add_run_options(p)
    args = p.parse_args(argv)
    worker = is_worker(args)
    out = Path(args.out)

    def run(job):
        with open(out / "ran.log", "a") as f:  # one line per run started, whoever runs it
            f.write(f"{job} {os.getpid()}\\n")
        time.sleep(0.3)  # long enough for both workers to be running at once
        if job == 3:
            raise ValueError("three is unlucky")
        return {"job": job, "pid": os.getpid()}

    failures = execute(args, argv, __file__, list(range(8)), lambda j: out / f"{j}.json", lambda: run, str,
                       desc="t", log=lambda m: print(m, file=sys.stderr))
    if not worker:
        (out / "report.txt").write_text(repr(failures))
    return 1 if failures else 0

if __name__ == "__main__":
    sys.exit(main())
'''


def test_workers_run_every_pending_job_once_and_a_failing_worker_is_reported(tmp_path):
    """Two real worker processes of a script take the pending jobs by claims: every job runs exactly once
    (a finished one not at all, a stale claim does not block), the worker whose run fails exits non-zero
    and the parent reports it; every other result is written and no claim is left behind."""
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    out = tmp_path / "out"
    out.mkdir()
    (out / "0.json").write_text('{"job": 0, "pid": 0}\n')  # finished before
    claim_path(out / "5.json").touch()                      # left by an interrupted worker
    namespace: dict = {"__file__": str(script), "__name__": "script"}
    exec(compile(SCRIPT, str(script), "exec"), namespace)
    assert namespace["main"](["--out", str(out), "--workers", "2", "--quiet"]) == 1
    report = (out / "report.txt").read_text()
    assert report in ("['worker 1 of 2 exited with code 1 (see its log above)']",
                      "['worker 2 of 2 exited with code 1 (see its log above)']")
    started = sorted(int(line.split()[0]) for line in (out / "ran.log").read_text().splitlines())
    assert started == [1, 2, 3, 4, 5, 6, 7]
    assert sorted(int(p.stem) for p in out.glob("*.json")) == [0, 1, 2, 4, 5, 6, 7]
    assert not list(out.glob(".*.claim"))
    pids = {json.loads((out / f"{j}.json").read_text())["pid"] for j in (1, 2, 4, 5, 6, 7)}
    assert len(pids) == 2  # both workers ran jobs


def test_no_progress_bar_in_a_log(tmp_path, capsys, monkeypatch):
    """Not quiet, but stderr is not a terminal (captured, as in CI logs or `| tee`): no bar lines."""
    monkeypatch.delenv("LIRPA_LID_PROGRESS", raising=False)
    path_of = lambda job: tmp_path / f"{job}.json"  # noqa: E731
    assert run_jobs(range(20), path_of, lambda job: {"job": job}, str, desc="runs", quiet=False, log=print) == []
    assert capsys.readouterr().err == ""
