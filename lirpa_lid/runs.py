"""Cached, resumable runs of a reproduction script, sequential or in worker processes.

Every finished run is one JSON file in a cache folder; a run whose file exists is skipped, so an
interrupted reproduction resumes where it stopped. ``--workers N`` starts N processes of the same script,
each with ``--shard I/N`` (every N-th job, those not finished), one torch thread pool each; the parent shows the
progress of all of them and then writes the report from the cache as usual.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from .errors import InputError
from .files import write_text_atomic

Job = TypeVar("Job")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """``--workers N`` and the internal ``--shard I/N`` (set by :func:`run_in_workers`)."""
    parser.add_argument("--workers", type=int, default=1,
                        help="processes running pending runs in parallel (each with --threads threads)")
    parser.add_argument("--shard", default=None, help=argparse.SUPPRESS)


def shard_of(args: argparse.Namespace) -> tuple[int, int] | None:
    """Check ``--workers`` and parse ``--shard "I/N"`` into ``(I, N)`` (None: not a worker)."""
    if args.workers < 1:
        raise InputError(f"--workers {args.workers}: need at least 1")
    if args.shard is None:
        return None
    try:
        i, n = (int(part) for part in args.shard.split("/"))
    except ValueError:
        raise InputError(f"--shard {args.shard!r}: expected I/N with integers, e.g. 0/2") from None
    if not 0 <= i < n:
        raise InputError(f"--shard {args.shard!r}: need 0 <= I < N")
    return i, n


def pending(jobs: Sequence[Job], path_of: Callable[[Job], Path]) -> list[Job]:
    """The jobs without a result file."""
    return [job for job in jobs if not path_of(job).exists()]


def run_jobs(jobs: Sequence[Job], path_of: Callable[[Job], Path], run: Callable[[Job], dict],
             describe: Callable[[Job], str], *, desc: str, quiet: bool,
             log: Callable[[str], None], shard: tuple[int, int] | None = None) -> list[str]:
    """Run the pending jobs in this process (of a shard ``(I, N)``: the pending ones among every ``N``-th
    job from the ``I``-th), writing each result to ``path_of(job)`` atomically. A failing run is logged
    and listed, the others go on.

    Returns the failures (``"<job>: <Error>: <message>"``)."""
    from tqdm import tqdm

    if shard is not None:  # a fixed share of all jobs: workers that start at different times agree on it
        jobs = list(jobs)[shard[0]::shard[1]]
    todo = pending(jobs, path_of)
    failures = []
    for job in tqdm(todo, desc=desc, disable=quiet or shard is not None):  # workers: the parent's bar
        try:
            result = run(job)
        except Exception as exc:  # keep the other runs; report and fail at the end
            failures.append(f"{describe(job)}: {type(exc).__name__}: {exc}")
            log("FAILED " + failures[-1])
            continue
        write_text_atomic(path_of(job), json.dumps(result, default=str) + "\n")
    return failures


def run_in_workers(script: str | os.PathLike, argv: Sequence[str], workers: int, jobs: Sequence[Job],
                   path_of: Callable[[Job], Path], *, desc: str, quiet: bool, poll: float = 5.0) -> list[str]:
    """Run the pending jobs in ``workers`` processes ``python script *argv --workers 1 --shard I/N`` and
    wait for them, showing overall progress from the result files.

    Returns one failure per worker that exited with a non-zero code (its own failures are in its log)."""
    from tqdm import tqdm

    todo = pending(jobs, path_of)
    workers = max(1, min(workers, len(todo)))
    if not todo:
        return []
    argv = [*argv, "--workers", "1"] + (["--quiet"] if quiet else [])
    procs = [subprocess.Popen([sys.executable, str(script), *argv, "--shard", f"{i}/{workers}"])
             for i in range(workers)]
    bar = tqdm(total=len(todo), desc=f"{desc} ({workers} workers)", disable=quiet)
    try:
        while any(p.poll() is None for p in procs):
            time.sleep(poll)
            bar.update(len(todo) - len(pending(todo, path_of)) - bar.n)
    except BaseException:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
        raise
    finally:
        bar.update(len(todo) - len(pending(todo, path_of)) - bar.n)
        bar.close()
    return [f"worker {i}/{workers} exited with code {p.returncode} (see its log above)"
            for i, p in enumerate(procs) if p.returncode != 0]


def execute(args: argparse.Namespace, argv: Sequence[str] | None, script: str | os.PathLike, jobs: Sequence[Job],
            path_of: Callable[[Job], Path], prepare: Callable[[], Callable[[Job], dict]],
            describe: Callable[[Job], str], *, desc: str, log: Callable[[str], None]) -> list[str]:
    """What a reproduction's ``main`` does with its jobs: nothing with ``--report-only``; with
    ``--workers N > 1`` start N workers of ``script`` (same ``argv``, default ``sys.argv[1:]``); otherwise
    (also inside a worker) run them here with the run function that ``prepare()`` returns (it loads the
    data: only processes that run jobs pay for it). Returns the failures."""
    if args.report_only:
        return []
    shard = shard_of(args)
    if args.workers > 1 and shard is None:
        return run_in_workers(script, sys.argv[1:] if argv is None else argv, args.workers, jobs, path_of,
                              desc=desc, quiet=args.quiet)
    return run_jobs(jobs, path_of, prepare(), describe, desc=desc, quiet=args.quiet, log=log, shard=shard)
