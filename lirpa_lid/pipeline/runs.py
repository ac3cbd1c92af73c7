"""Cached, resumable runs of a reproduction script, sequential or in worker processes.

Every finished run is one JSON file in a cache folder; a run whose file exists is skipped, so an
interrupted reproduction resumes where it stopped. ``--workers N`` starts N processes of the same script
(``--worker``, one torch thread pool each) that take the pending runs in order, each run claimed by
creating a claim file next to its result (``O_EXCL``: exactly one worker gets it), so the workers stay
busy until the last run however long each takes; the parent shows the progress of all of them and then
writes the report from the cache as usual.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from lirpa_lid.errors import InputError
from lirpa_lid.files import write_text_atomic
from lirpa_lid.progress import progress_bar

Job = TypeVar("Job")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """``--workers N`` and the internal ``--worker`` (set by :func:`run_in_workers`)."""
    parser.add_argument("--workers", type=int, default=1,
                        help="processes running pending runs in parallel (each with --threads threads)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)


def is_worker(args: argparse.Namespace) -> bool:
    """Check ``--workers``; True inside a worker process (which runs jobs but writes no report)."""
    if args.workers < 1:
        raise InputError(f"--workers {args.workers}: need at least 1")
    return bool(args.worker)


def pending(jobs: Sequence[Job], path_of: Callable[[Job], Path]) -> list[Job]:
    """The jobs without a result file."""
    return [job for job in jobs if not path_of(job).exists()]


def claim_path(result: Path) -> Path:
    """Where a worker marks the run whose result goes to ``result`` as taken."""
    return result.with_name(f".{result.name}.claim")


def _claim(result: Path) -> bool:
    """Create ``result``'s claim file; True if this process made it and the run is still pending."""
    try:
        os.close(os.open(claim_path(result), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    if result.exists():  # finished by another worker between our check and our claim
        claim_path(result).unlink(missing_ok=True)
        return False
    return True


def run_jobs(jobs: Sequence[Job], path_of: Callable[[Job], Path], run: Callable[[Job], dict],
             describe: Callable[[Job], str], *, desc: str, quiet: bool,
             log: Callable[[str], None], claim: bool = False) -> list[str]:
    """Run the pending jobs in this process, writing each result to ``path_of(job)`` atomically. A failing
    run is logged and listed, the others go on. With ``claim`` (inside a worker) a job is run only if this
    process creates its claim file first; the claim is removed once the result is written (a failed run
    keeps it, so other workers do not repeat it; the parent removes it when all have exited).

    Returns the failures (``"<job>: <Error>: <message>"``)."""
    failures = []
    for job in progress_bar(pending(jobs, path_of), desc=desc, enabled=not (quiet or claim)):  # workers: the parent's
        path = path_of(job)
        if claim and (path.exists() or not _claim(path)):
            continue
        try:
            write_text_atomic(path, json.dumps(run(job), default=str) + "\n")
        except Exception as exc:  # keep the other runs; report and fail at the end
            failures.append(f"{describe(job)}: {type(exc).__name__}: {exc}")
            log("FAILED " + failures[-1])
            continue  # a failed run keeps its claim: the other workers do not repeat it
        if claim:  # only now: the result exists before the claim goes
            claim_path(path).unlink(missing_ok=True)
    return failures


def run_in_workers(script: str | os.PathLike, argv: Sequence[str], workers: int, jobs: Sequence[Job],
                   path_of: Callable[[Job], Path], *, desc: str, quiet: bool, poll: float = 5.0) -> list[str]:
    """Run the pending jobs in ``workers`` processes ``python script *argv --workers 1 --worker`` and wait
    for them, showing overall progress from the result files. Claim files of the pending jobs are removed
    before (left by interrupted workers) and after (failed runs): run one parent per cache folder at a time.

    Returns one failure per worker that exited with a non-zero code (its own failures are in its log)."""
    todo = pending(jobs, path_of)
    if not todo:
        return []
    _release_claims(todo, path_of)
    workers = max(1, min(workers, len(todo)))
    argv = [*argv, "--workers", "1", "--worker"] + (["--quiet"] if quiet else [])
    procs = [subprocess.Popen([sys.executable, str(script), *argv]) for _ in range(workers)]
    bar = progress_bar(total=len(todo), desc=f"{desc} ({workers} workers)", enabled=not quiet)
    try:
        _wait(procs, lambda: bar.update(len(todo) - len(pending(todo, path_of)) - bar.n), poll)
    finally:
        bar.update(len(todo) - len(pending(todo, path_of)) - bar.n)
        bar.close()
        _release_claims(todo, path_of)  # claims of failed runs: those runs stay pending for the next invocation
    return [f"worker {i + 1} of {workers} exited with code {p.returncode} (see its log above)"
            for i, p in enumerate(procs) if p.returncode != 0]


def _release_claims(jobs: Sequence[Job], path_of: Callable[[Job], Path]) -> None:
    """Remove the claim files of ``jobs`` (left by interrupted workers or failed runs)."""
    for job in jobs:
        claim_path(path_of(job)).unlink(missing_ok=True)


def _wait(procs: list[subprocess.Popen], tick: Callable[[], None], poll: float) -> None:
    """Wait for every worker, calling ``tick`` every ``poll`` seconds; on an interrupt (or any error)
    terminate them all and wait for them before re-raising."""
    try:
        while any(p.poll() is None for p in procs):
            time.sleep(poll)
            tick()
    except BaseException:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
        raise


def execute(args: argparse.Namespace, argv: Sequence[str] | None, script: str | os.PathLike, jobs: Sequence[Job],
            path_of: Callable[[Job], Path], prepare: Callable[[], Callable[[Job], dict]],
            describe: Callable[[Job], str], *, desc: str, log: Callable[[str], None]) -> list[str]:
    """What a reproduction's ``main`` does with its jobs: nothing with ``--report-only``; with
    ``--workers N > 1`` start N workers of ``script`` (same ``argv``, default ``sys.argv[1:]``); otherwise
    (also inside a worker) run them here with the run function that ``prepare()`` returns (it loads the
    data: only processes that run jobs pay for it). The caller has checked ``--workers`` with
    :func:`is_worker` before preparing anything. Returns the failures."""
    if args.report_only:
        return []
    worker = bool(args.worker)
    if args.workers > 1 and not worker:
        return run_in_workers(script, sys.argv[1:] if argv is None else argv, args.workers, jobs, path_of,
                              desc=desc, quiet=args.quiet)
    return run_jobs(jobs, path_of, prepare(), describe, desc=desc, quiet=args.quiet, log=log, claim=worker)
