"""ACAS Xu at θ₀: which rows of VNN-COMP 2022's ``instances.csv`` are decided by bounds alone (CROWN), by
input splitting (``lid.refine: split``, :mod:`lirpa_lid.pipeline.refinement`), falsified (a confirmed
counterexample) or left undecided, with the time per row, next to VNN-COMP's ground truth
(``ground_truth.csv``: ``sat`` = the property is violated).

Each row is built exactly as ``lirpa-lid certify --instances`` builds it (settings-only configuration,
CROWN, native backend) and split at the network's own weights with ``--split-seconds`` per row (the
row's timeout share does not bind at 20 s). ``--lid`` also grows and certifies the LID of every row
certified at θ₀ (the full ``run_problem``) and reports its mean width. Results:
``benchmarks/results/refine.md``, ending with the two lines ``ACAS Xu unsat rows certified at theta0:
N/139`` and ``ACAS Xu sat rows certified: N/47`` (with the number of rows run when it is a subset).

    python benchmarks/refine.py --every 4                 # every 4th row (47 rows), about 15 minutes on 1 core
    python benchmarks/refine.py --rows 102-107 --lid      # the rows of specs/acasxu_batch.yaml, with LIDs
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
N_UNSAT, N_SAT = 139, 47


def _rows(text: str | None, n: int) -> list[int]:
    """``"0-5,9,12-13"`` → row indices (0-based, csv order); None: all ``n``."""
    if not text:
        return list(range(n))
    out = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        out += list(range(int(a), int(b or a) + 1))
    bad = [i for i in out if not 0 <= i < n]
    if bad:
        raise SystemExit(f"--rows {text}: rows {bad} are outside 0..{n - 1}")
    return out


def _run_row(cfg, inst, split_seconds: float, grow: bool) -> dict:
    """One row: decided how at θ₀, in how long (and the LID's mean width with ``grow``)."""
    import dataclasses

    from lirpa_lid.pipeline.outcomes import run_problem
    from lirpa_lid.pipeline.problems import build_instance_problem
    from lirpa_lid.pipeline.refinement import refine_at_theta0

    start = time.perf_counter()
    problem = build_instance_problem(cfg, inst.onnx, inst.vnnlib, inst.timeout)
    problem.refine = dataclasses.replace(problem.refine, time_limit=split_seconds)
    row = {"how": "bounds", "leaves": 0, "bounded": 0, "width": None}
    if grow:
        outcome = run_problem(problem)
        ref = outcome.refinement
        row["status"] = str(outcome.status)
        if outcome.certificate is not None:
            row["width"] = float(outcome.certificate.domain.mean_width())
    elif problem.base_value >= problem.spec.threshold:
        ref, row["status"] = None, "certified"
    else:
        ref = refine_at_theta0(problem)
        row["status"] = {"verified": "certified", "falsified": "falsified", "undecided": "undecided"}[ref.verdict]
    if ref is not None:
        row.update(how=f"split ({ref.verdict})", leaves=ref.leaves, bounded=ref.bounded)
        if row["status"] == "not-certified-at-theta0":
            row["status"] = "undecided"
    row["seconds"] = time.perf_counter() - start
    return row


def _report(rows: list[dict], args, n_run_unsat: int, n_run_sat: int) -> str:
    certified = [r for r in rows if r["status"] == "certified"]
    unsat_ok = sum(r["truth"] == "unsat" for r in certified)
    sat_ok = sum(r["truth"] == "sat" for r in certified)
    by_bounds = sum(r["how"] == "bounds" and r["truth"] == "unsat" for r in certified)
    by_split = unsat_ok - by_bounds
    falsified = [r for r in rows if r["status"] == "falsified"]
    subset = len(rows) < N_UNSAT + N_SAT
    lines = [
        "# ACAS Xu at θ₀: bounds alone, input splitting, counterexamples",
        "",
        f"`python benchmarks/refine.py {' '.join(sys.argv[1:])}` — CROWN (native backend, float64 leaves), "
        f"input splitting with `branching: {args.branching}`, at most {args.split_seconds:g} s per row; one process, "
        f"{os.environ.get('OMP_NUM_THREADS', 'default')} torch thread(s), {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores (shared with other jobs: times are indicative).",
        "",
        (f"**Subset:** {len(rows)} of the 186 rows were run ({n_run_unsat} of 139 `unsat`, {n_run_sat} of 47 `sat`); "
         "the counts below are of the rows run.") if subset else "All 186 rows were run.",
        "",
        "Ground truth: VNN-COMP 2022 (`ground_truth.csv`; `sat` = violated). Before input splitting "
        "(issue 19): 16 of the 139 `unsat` rows certified at θ₀ by CROWN, 0 `sat` rows.",
        "",
        f"- `unsat` rows certified at θ₀: {unsat_ok} of {n_run_unsat} run ({by_bounds} by bounds alone, "
        f"{by_split} by splitting)",
        f"- `sat` rows falsified (counterexample): {sum(r['truth'] == 'sat' for r in falsified)} of {n_run_sat} run; "
        f"`unsat` rows falsified: {sum(r['truth'] == 'unsat' for r in falsified)} (must be 0)",
        f"- undecided: {sum(r['status'] == 'undecided' for r in rows)}",
        f"- time per row: median {sorted(r['seconds'] for r in rows)[len(rows) // 2]:.1f} s, "
        f"max {max(r['seconds'] for r in rows):.1f} s, total {sum(r['seconds'] for r in rows):.0f} s",
        "",
        "| row | instance | truth | status | decided by | leaves | bounded | LID mean width | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        width = "—" if r["width"] is None else f"{r['width']:.4g}"
        lines.append(f"| {r['row']} | {r['name']} | {r['truth']} | {r['status']} | {r['how']} | {r['leaves']} | "
                     f"{r['bounded']} | {width} | {r['seconds']:.1f} |")
    tail_u = f"{unsat_ok}/139" + (f" (of {n_run_unsat} unsat rows run)" if subset else "")
    tail_s = f"{sat_ok}/47" + (f" (of {n_run_sat} sat rows run)" if subset else "")
    lines += ["", f"ACAS Xu unsat rows certified at theta0: {tail_u}", f"ACAS Xu sat rows certified: {tail_s}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the selected rows and write ``benchmarks/results/refine.md``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default=None, help="rows of instances.csv (0-based), e.g. 0-9,102-107")
    parser.add_argument("--every", type=int, default=1, help="take every K-th selected row")
    parser.add_argument("--limit", type=int, default=None, help="at most N rows")
    parser.add_argument("--split-seconds", type=float, default=20.0, help="input splitting time per row")
    parser.add_argument("--branching", default="gradient", choices=("gradient", "widest"))
    parser.add_argument("--lid", action="store_true", help="also grow and certify the LID of certified rows")
    parser.add_argument("--data-dir", default=None, help="data directory (default: $LIRPA_LID_DATA)")
    parser.add_argument("--out", default=str(RESULTS / "refine.md"))
    args = parser.parse_args(argv)

    import torch

    from lirpa_lid.datasets import data_dir
    from lirpa_lid.files import write_text_atomic
    from lirpa_lid.pipeline.config import parse_config
    from lirpa_lid.pipeline.instances import read_instances

    torch.manual_seed(0)
    bench = data_dir(args.data_dir) / "vnncomp2022" / "acasxu"
    truth = {r["instance"]: r["result"] for r in csv.DictReader((bench / "ground_truth.csv").open())}
    instances = read_instances(bench / "instances.csv")
    chosen = _rows(args.rows, len(instances))[::max(args.every, 1)][:args.limit]
    cfg = parse_config({"lid": {"method": "CROWN", "iterations": 60, "primal_lr": 5.0, "dual_lr": 0.1,
                                "snapshot_every": 10, "split": {"branching": args.branching}}})
    rows = []
    for i in chosen:
        inst = instances[i]
        row = {"row": i, "name": inst.name, "truth": truth.get(inst.name, "?"),
               **_run_row(cfg, inst, args.split_seconds, args.lid)}
        rows.append(row)
        print(f"[{len(rows)}/{len(chosen)}] row {i} {inst.name}: {row['truth']} -> {row['status']} via {row['how']} "
              f"({row['leaves']} leaves, {row['seconds']:.1f} s)", flush=True)
        report = _report(rows, args, sum(r["truth"] == "unsat" for r in rows), sum(r["truth"] == "sat" for r in rows))
        write_text_atomic(Path(args.out), report)  # after every row: an interrupted run keeps its rows
    print("\n".join(report.splitlines()[-2:]))  # the two result lines, exactly
    return 0


if __name__ == "__main__":
    sys.exit(main())
