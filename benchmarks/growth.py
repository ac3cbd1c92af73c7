"""Cost of growing LID snapshots: the factor search in float64 vs in float32, side by side on the paper's CNN.

``LIDConfig.grow`` enlarges certified snapshots by a search on their scale factor; with float64 evaluation
:func:`lirpa_lid.lid.solve.compute_lid` runs that search in float32 and bounds the factor found once in
float64. This measures both searches in one run on the paper's Split-MNIST CNN.

Setup: the CNN and 400-item specification of ``cnn_lid_time.py`` (seed 0); an IBP LID of 60 iterations
with a snapshot every 20 (float32 evaluation, so the snapshots are the raw IBP boxes); each snapshot is
then grown ×4 by CROWN (:func:`lirpa_lid.margin.largest_scale`, 8 bisection steps, values in float64)
twice, ``search_dtype=None`` and ``search_dtype=float32``. Reported per snapshot: factor found by each,
CPU seconds (process time) and wall seconds of each, and their ratio. The factors must agree (the search
in float32 is a speed-up, not an approximation: its result is re-bounded in float64).

    python benchmarks/growth.py [--threads 1] [--iterations 60] [--data-dir DIR]

Writes ``benchmarks/results/growth.md|json``; the last line is ``float64/float32 CPU ratio: X`` (all
snapshots together).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from bounds import _machine
from cnn_lid_time import trained_model

from lirpa_lid import bounded_network
from lirpa_lid.files import write_text_atomic
from lirpa_lid.lid.solve import LIDConfig, compute_lid
from lirpa_lid.margin import largest_scale

RESULTS = Path(__file__).resolve().parent / "results"
GROW = 4.0
STEPS = 8


def _timed(fn):
    cpu, wall = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - cpu, time.perf_counter() - wall


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--iterations", type=int, default=60)
    p.add_argument("--data-dir", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, spec = trained_model(args.data_dir)
    lid = compute_lid(model, spec, LIDConfig(iterations=args.iterations, snapshot_every=20, progress=False,
                                            seed=0, method="IBP", eval_dtype=torch.float32))
    net = bounded_network(model)
    rows = []
    for cand in lid.candidates:
        row = {"iteration": cand.iteration, "mean_width": cand.mean_width}
        for key, search in (("float64", None), ("float32", torch.float32)):
            found, cpu, wall = _timed(lambda: largest_scale(net, [spec], cand.domain, "CROWN", STEPS, GROW,
                                                            low=1.0, dtype=torch.float64, search_dtype=search))
            row[key] = {"factor": None if found is None else found[0],
                        "value": None if found is None else found[1][0], "cpu_s": cpu, "wall_s": wall}
            print(f"snapshot {cand.iteration}, search in {key}: {cpu:.1f} s CPU, factor "
                  f"{row[key]['factor']}", file=sys.stderr, flush=True)
        rows.append(row)
    ratio = sum(r["float64"]["cpu_s"] for r in rows) / sum(r["float32"]["cpu_s"] for r in rows)
    lines = [f"Machine: {_machine(args.threads)}.", "",
             f"Paper CNN, 400 items, τ = {spec.threshold:.3f}; IBP snapshots (iterations 20, 40, …) grown "
             f"×{GROW:g} by CROWN, {STEPS} bisection steps, values in float64.", "",
             "| snapshot (iteration) | mean width | factor (float64 search) | factor (float32 search) | "
             "CPU s (float64) | CPU s (float32) | CPU ratio | wall s (float64) | wall s (float32) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        a, b = r["float64"], r["float32"]
        lines.append(f"| {r['iteration']} | {r['mean_width']:.4g} | {a['factor']} | {b['factor']} | "
                     f"{a['cpu_s']:.1f} | {b['cpu_s']:.1f} | {a['cpu_s'] / b['cpu_s']:.2f} | "
                     f"{a['wall_s']:.1f} | {b['wall_s']:.1f} |")
    lines += ["", f"All snapshots: float64 search / float32 search CPU time = {ratio:.2f}."]
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_text_atomic(RESULTS / "growth.md", "# Growing snapshots: factor search in float64 vs float32\n\n"
                      + "\n".join(lines) + "\n")
    write_text_atomic(RESULTS / "growth.json", json.dumps({"rows": rows, "threads": args.threads,
                                                           "torch": torch.__version__, "ratio": ratio},
                                                          indent=1) + "\n")
    print("\n".join(lines))
    print(f"float64/float32 CPU ratio: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
