"""LID size at the same threshold τ: IBP vs CROWN vs CROWN-IBP vs IBP+CROWN (native backend), with wall times.

Two models, fixed seeds:

* blobs MLP 2-32-6 trained on task 0 of the paper's toy (SGD, 10 epochs), LID on the task's
  training split with the demo's settings (τ = min(max(a − 0.1, a/2), 0.9), 100 iterations,
  primal lr 0.5, dual lr 0.1, snapshot every 5);
* MNIST MLP 784-100-100-10 trained briefly (1 epoch of Adam on the training set), LID on 1,000 test
  images with the paper's MNIST settings (τ = a − 0.12, 200 iterations, primal lr 0.33, dual lr 0.01,
  snapshot every 20, batch 500).

Both objectives are run (mean width, the authors' default, and log-volume). For each objective
and bound method the table gives the largest candidate's mean width, its log-volume per free
element (mean of log width; −inf when some free element has width 0), its hard certified value on
the optimisation set, and the wall time of ``compute_lid`` (including the final float64 evaluation
of the candidates). Because the optimiser's trajectory depends on the bound method, the table also
gives a like-for-like measure of bound tightness: the largest factor s such that s × (IBP's
largest domain) still meets τ under each method (bisection, 12 steps). ``IBP+CROWN`` is the
"shape cheaply, certify tightly" plan: optimised with IBP, its snapshots certified and grown (×4 at
most) with CROWN (``LIDConfig.certify_method`` / ``grow``).

Usage: ``python benchmarks/lid_size.py [--quick] [--data-dir DIR] [--threads N]``. Writes
``benchmarks/results/lid_size.md``, ``lid_size.json`` and ``lid_size.png``; the last line printed is
``CROWN/IBP mean-width ratio: X`` (MNIST MLP, mean-width objective).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lirpa_lid import bounded_network
from lirpa_lid.datasets import blobs_tasks, load_mnist
from lirpa_lid.lid.solve import LIDConfig, bound_plan, compute_lid
from lirpa_lid.margin import largest_scale
from lirpa_lid.specification.accuracy import CertifiedAccuracy
from lirpa_lid.specification.base import threshold_from_accuracy

METHODS = ("IBP", "CROWN", "CROWN-IBP", "IBP+CROWN")  # bound plans (lirpa_lid.lid.solve.bound_plan)
RESULTS = Path(__file__).resolve().parent / "results"


def blobs_model(seed: int = 0):
    task = blobs_tasks(seed)[0]
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 6))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(seed)
    for _ in range(10):
        perm = torch.randperm(len(task.train), generator=g)
        for i in range(0, len(task.train), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            F.cross_entropy(model(task.train.x[idx]), task.train.y[idx]).backward()
            opt.step()
    spec = CertifiedAccuracy(task.train.x, task.train.y, 6, 0.0, name="blobs task 0")
    tau = threshold_from_accuracy(spec.nominal_value(model), increment=0.1, limit=0.9)
    config = LIDConfig(iterations=100, primal_lr=0.5, dual_lr=0.1, snapshot_every=5, progress=False, seed=seed)
    return model, spec.with_threshold(tau), config


def mnist_model(seed: int = 0, data_dir: str | None = None, n_ref: int = 1000, iterations: int = 200):
    x, y = load_mnist("train", data_dir=data_dir)
    xt, yt = load_mnist("test", data_dir=data_dir)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(),
                          nn.Linear(100, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(y), generator=g)
    for i in range(0, len(y), 128):
        idx = perm[i:i + 128]
        opt.zero_grad()
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    ref = torch.randperm(len(yt), generator=g)[:n_ref]
    spec = CertifiedAccuracy(xt[ref], yt[ref], 10, 0.0, name="MNIST 1000 test images")
    tau = threshold_from_accuracy(spec.nominal_value(model), increment=0.12, limit=1.0)
    config = LIDConfig(iterations=iterations, progress=False, seed=seed)  # the paper's MNIST defaults
    return model, spec.with_threshold(tau), config


def max_scale(net, spec, domain, method, steps: int = 12, high: float = 4.0) -> float:
    """Largest s (bisection in [0, high]) with hard value of s × domain ≥ τ under ``method``."""
    found = largest_scale(net, [spec], domain, method, steps, high)
    return 0.0 if found is None else found[0]


def run(name: str, model, spec, config, objectives: tuple[str, ...]) -> list[dict]:
    rows = []
    net = bounded_network(model)
    for objective in objectives:
        block, domains = [], {}
        for method in METHODS:
            t0 = time.perf_counter()
            result = compute_lid(model, spec, replace(config, objective=objective, **bound_plan(method)))
            seconds = time.perf_counter() - t0
            best = result.largest()
            widths = best.domain.widths()
            block.append({"model": name, "objective": objective, "method": method, "tau": spec.threshold,
                          "mean_width": best.mean_width,
                          "mean_log_width": float(torch.log(widths).mean()) if (widths > 0).all() else -math.inf,
                          "zero_width": int((widths == 0).sum()), "n_free": int(widths.numel()),
                          "hard": best.hard_values[0], "iteration": best.iteration, "scale": best.scale,
                          "rollbacks": result.history["rollbacks"][-1], "seconds": seconds})
            domains[method] = best.domain
            print(f"  {name} {objective} {method}: mean width {best.mean_width:.4g} (iteration "
                  f"{best.iteration}, scale {best.scale:.3f}), {seconds:.1f}s", file=sys.stderr)
        for row in block:
            certifier = LIDConfig(**bound_plan(row["method"])).final_method
            row["ibp_direction_scale"] = max_scale(net, spec, domains["IBP"], certifier)
        rows += block
    return rows


def markdown(rows: list[dict], threads: int) -> str:
    head = ("| model | objective | method | τ | mean width | mean log-width | zero-width elements | hard value | "
            "best iteration (scale: < 1 shrunk, > 1 grown) | rollbacks | wall time (s) | max scale of IBP's domain |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(f"| {r['model']} | {r['objective']} | {r['method']} | {r['tau']:.3f} | {r['mean_width']:.4g} | "
                     f"{r['mean_log_width']:.3f} | {r['zero_width']}/{r['n_free']} | {r['hard']:.3f} | "
                     f"{r['iteration']} ({r['scale']:.2f}) | {r['rollbacks']} | {r['seconds']:.1f} | "
                     f"{r['ibp_direction_scale']:.3f} |")
    lines += ["", f"torch {torch.__version__}, {threads} thread(s). Mean width: the LID's size measure (mean of "
              "l + u over the free elements). Max scale: the largest s such that s × (the IBP LID) still meets τ "
              "under the row's method (like-for-like tightness; ≥ 1 for IBP by construction, up to bisection "
              "precision)."]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    """Bars per model and method: mean width (first objective) and the like-for-like scale."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [r for r in rows if r["objective"] == rows[0]["objective"]]
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    width = 0.8 / len(METHODS)
    def value(key, m, method):
        row = next(r for r in rows if r["model"] == m and r["method"] == method)
        if key == "mean_width":  # relative to IBP: the two models' widths differ by orders of magnitude
            return row[key] / next(r[key] for r in rows if r["model"] == m and r["method"] == "IBP")
        return row[key]

    for k, (key, title) in enumerate((("mean_width", "LID mean width / IBP's (same τ)"),
                                      ("ibp_direction_scale", "max scale of the IBP LID"))):
        ax = axes[k]
        for j, method in enumerate(METHODS):
            vals = [value(key, m, method) for m in models]
            ax.bar([i + (j - (len(METHODS) - 1) / 2) * width for i in range(len(models))], vals, width,
                   label=method)
        ax.set_xticks(range(len(models)))
        ax.set_xticklabels(models)
        ax.set_title(title)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="blobs only, fewer MNIST iterations")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--objective", choices=("mean_width", "log_volume", "both"), default="both")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: stable timings on a shared machine)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    objectives = ("mean_width", "log_volume") if args.objective == "both" else (args.objective,)
    rows = run("blobs MLP 2-32-6", *blobs_model(), objectives)
    rows += run("MNIST MLP 784-100-100-10", *mnist_model(data_dir=args.data_dir,
                                                          iterations=40 if args.quick else 200), objectives)
    # sanity: every reported domain meets τ, and CROWN never certifies less than IBP on the same box
    for r in rows:
        assert r["hard"] >= r["tau"], r
    for m in dict.fromkeys((r["model"], r["objective"]) for r in rows):
        by = {r["method"]: r for r in rows if (r["model"], r["objective"]) == m}
        assert by["CROWN"]["ibp_direction_scale"] >= by["IBP"]["ibp_direction_scale"] - 4.0 / 2 ** 11, by
    table = markdown(rows, threads)
    RESULTS.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS / "lid_size.md.tmp"
    tmp.write_text(table)
    os.replace(tmp, RESULTS / "lid_size.md")
    plot(rows, RESULTS / "lid_size.png")
    (RESULTS / "lid_size.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(table)
    ratios = {}
    first = objectives[0]
    for m in dict.fromkeys(r["model"] for r in rows):
        by = {r["method"]: r for r in rows if r["model"] == m and r["objective"] == first}
        ratios[m] = by["CROWN"]["mean_width"] / by["IBP"]["mean_width"]
    blobs, mnist = list(ratios)
    print(f"CROWN/IBP mean-width ratio ({blobs}): {ratios[blobs]:.3f}")
    plan = {r["method"]: r for r in rows if r["model"] == mnist and r["objective"] == first}
    print(f"IBP+CROWN/IBP mean-width ratio ({mnist}): {plan['IBP+CROWN']['mean_width'] / plan['IBP']['mean_width']:.3f}")
    print(f"CROWN/IBP mean-width ratio: {ratios[mnist]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
