"""Reproduction: biasing a LID with parameter importance (look-ahead), Split-MNIST CIL, task 1 → task 2.

Paper (``figures/lookahead_performance.pdf`` via the authors' plotting notebook; seeds 5–14): accuracy
on task 2 after learning it inside the task-1 LID (τ = 0.8, 300 LID iterations):

    no bias 0.200 · Fisher look-ahead 0.729 · SI look-ahead 0.731 · Fisher (EWC-like) 0.389 · SI 0.394

and a sweep of the frozen proportion q ∈ {0.5, 0.7, 0.8, 0.825, 0.85, 0.9, 0.95}: the look-ahead
curves peak (≈ 0.73) near q = 0.825 and collapse (≈ 0.05) at 0.95; the EWC-like variants do best at
q = 0.95.

Procedure per seed (the paper's ``run_trial``): train the CNN on task 1 (Adam 1e-3, 5 epochs, batch
32, no regularisers); compute its LID on 256 task-1 items with τ = min(a, 0.8), 300 iterations, primal
lr 0.5, dual lr 0.1, a snapshot every 100, freezing elements by the bias; train task 2 (same
optimiser) with every step projected onto the closest candidate; report task-2 test accuracy, task-1
test accuracy, and the task-1 certificate of the candidate in force (held-out items, Clopper–Pearson,
δ = 0.05). Biases (:class:`lirpa_lid.continual.importance.Bias`, importance on 400 training items):

* look-ahead — importance on *task 2*'s data, the q least important elements frozen;
* EWC-like — importance on *task 1*'s data, the most important elements frozen. As in the paper's code
  (``_get_mask(prune_prop=q, preserve_top=True)`` freezes scores above the q-quantile), an abscissa q
  freezes the top **1 − q**; the main table uses q = 0.825 for look-ahead and q = 0.95 for EWC-like
  (the paper's best values).

Every run is cached as JSON under ``<out>/runs/lookahead[_quick]-<digest>/``. Outputs
``<out>/lookahead[_quick].md|json|png``. Usage: ``python reproductions/lookahead.py [--quick]
[--seeds 5] [--bound IBP,CROWN] [--variants ...] [--fractions ...] [--no-sweep] [--data-dir DIR]
[--out DIR] [--workers N] [--quiet]`` (also ``lirpa-lid reproduce lookahead ...``).
"""
import argparse
import hashlib
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from lirpa_lid.continual.importance import Bias
from lirpa_lid.continual.lid_learner import LIDLearner, LIDLearnerConfig
from lirpa_lid.continual.tasks import DEFAULT_BOUND_PLANS, make_model, split_mnist_tasks
from lirpa_lid.continual.training import TrainConfig, run_continual
from lirpa_lid.datasets import load_mnist
from lirpa_lid.errors import InputError
from lirpa_lid.files import save_figure_atomic, write_text_atomic
from lirpa_lid.lid.solve import LIDConfig, bound_plan, bound_plans, plan_label
from lirpa_lid.pipeline.runs import add_run_options, execute, is_worker

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = ("none", "fisher-lookahead", "si-lookahead", "fisher", "si")
LABELS = {"none": "no bias", "fisher-lookahead": "Fisher look-ahead", "si-lookahead": "SI look-ahead",
          "fisher": "Fisher (EWC-like)", "si": "SI (EWC-like)"}
PAPER = {"none": 0.200, "fisher-lookahead": 0.729, "si-lookahead": 0.731, "fisher": 0.389, "si": 0.394}
BEST_Q = {"fisher-lookahead": 0.825, "si-lookahead": 0.825, "fisher": 0.95, "si": 0.95}
FRACTIONS = (0.5, 0.7, 0.8, 0.825, 0.85, 0.9, 0.95)


@dataclass(frozen=True)
class Settings:
    arch: str = "cnn"
    n_train: int | None = 2000
    n_lid: int = 256
    n_cert: int = 1000
    n_test: int | None = None
    epochs: int = 5
    batch_size: int = 32
    lid_iterations: int = 300
    snapshot_every: int = 100
    primal_lr: float = 0.5
    dual_lr: float = 0.1
    tau: float = 0.8
    importance_items: int = 400
    si_steps: int = 50
    lid_batch: int | None = None        # None: full batch (the paper)
    eval_dtype: str = "float64"

    @classmethod
    def quick(cls) -> "Settings":
        return cls(arch="mlp", n_train=300, n_lid=48, n_cert=96, n_test=200, epochs=1, lid_iterations=8,
                   snapshot_every=4, importance_items=64, si_steps=5)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]


def bias_for(variant: str, q: float, s: Settings, seed: int) -> Bias | None:
    if variant == "none":
        return None
    kind, lookahead = variant.split("-")[0], variant.endswith("lookahead")
    return Bias(kind, lookahead, fraction=q if lookahead else 1.0 - q, n_items=s.importance_items,
                si_steps=s.si_steps, seed=seed)


def run_one(variant: str, q: float | None, bound: str, seed: int, s: Settings, data, log) -> dict:
    tasks = split_mnist_tasks("CIL", seed, n_tasks=2, n_train=s.n_train, n_lid=s.n_lid, n_cert=s.n_cert,
                              n_test=s.n_test, data=data)
    train = TrainConfig(epochs=s.epochs, batch_size=s.batch_size, lr=1e-3)
    lid = LIDConfig(iterations=s.lid_iterations, primal_lr=s.primal_lr, dual_lr=s.dual_lr,
                    snapshot_every=s.snapshot_every, seed=seed, progress=False,
                    batch_size=s.lid_batch or LIDConfig.batch_size, eval_dtype=getattr(torch, s.eval_dtype),
                    **bound_plan(bound))
    bias = bias_for(variant, q, s, seed)
    cfg = LIDLearnerConfig(train=train, lid=lid, increment=None, limit=s.tau, strategy="closest", bias=bias)
    learner = LIDLearner(make_model(s.arch, 10, seed), cfg, seed, name=f"{LABELS[variant]} ({plan_label(bound)})")
    started = time.perf_counter()
    result = run_continual(learner, tasks, log=log)
    cert = result.certified[-1][0]
    lid_info = learner.lids[0]
    return {"variant": variant, "q": q, "bound": bound, "seed": seed, "digits": [list(t.digits) for t in tasks],
            "task1_after_task1": result.accuracy[0][0], "task2": result.accuracy[-1][1],
            "task1_final": result.accuracy[-1][0], "task1_certificate": cert,
            "task1_heldout_fraction": result.certified_fraction[-1][0], "tau": lid_info["tau"],
            "lid_mean_width": lid_info["largest_mean_width"], "frozen_elements": lid_info["frozen_elements"],
            "lid_seconds": lid_info["lid_seconds"], "seconds": time.perf_counter() - started,
            "settings": asdict(s), "threads": torch.get_num_threads()}


# ------------------------------------------------------------------------------- report
def mean_std(values):
    vals = [v for v in values if v is not None]
    if not vals:
        return math.nan, math.nan, 0
    m = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return m, sd, len(vals)


def fmt(values, digits=3):
    m, sd, n = mean_std(values)
    return "—" if n == 0 else f"{m:.{digits}f} ± {sd:.{digits}f} (n={n})"


def select(runs, variant, bound, q=None):
    return [r for r in runs if r["variant"] == variant and r["bound"] == bound
            and (variant == "none" or r["q"] == q)]


def markdown(runs, s: Settings, bounds, fractions) -> str:
    seeds = sorted({r["seed"] for r in runs})
    model = "paper CNN" if s.arch == "cnn" else "MLP 784-100-10 (paper values: CNN)"
    columns = list(dict.fromkeys(["IBP", "CROWN", *bounds]))
    lines = [f"# LID biasing: look-ahead vs EWC-like importance (Split-MNIST CIL, task 1 → task 2; {model})", "",
             f"Seeds: {', '.join(map(str, seeds))}; mean ± sample std over seeds (n per cell). "
             "Paper: seeds 5–14 (mean).", "",
             "## Task-2 accuracy after learning task 2 inside the task-1 LID", "",
             "| variant | q | paper | " + " | ".join(f"ours {plan_label(b)}" for b in columns) + " |",
             "|---|---|---|" + "---|" * len(columns)]
    for v in VARIANTS:
        q = BEST_Q.get(v)
        cells = [fmt([r["task2"] for r in select(runs, v, b, q)]) if b in bounds else "not run" for b in columns]
        lines.append(f"| {LABELS[v]} | {'—' if q is None else q} | {PAPER[v]:.3f} | " + " | ".join(cells) + " |")
    lines += ["", "## What the task-1 certificate keeps (same runs)", "",
              "| variant | bound | τ | LID mean width | frozen elements | task-1 test acc. after task 2 | "
              "task-1 certificate (held-out, δ = 0.05) | LID time (s) |", "|---|---|---|---|---|---|---|---|"]
    for v in VARIANTS:
        for b in bounds:
            sel = select(runs, v, b, BEST_Q.get(v))
            if not sel:
                continue
            lines.append(f"| {LABELS[v]} | {plan_label(b)} | {fmt([r['tau'] for r in sel])} | "
                         f"{fmt([r['lid_mean_width'] for r in sel], 4)} | {fmt([r['frozen_elements'] for r in sel], 0)} | "
                         f"{fmt([r['task1_final'] for r in sel])} | {fmt([r['task1_certificate'] for r in sel])} | "
                         f"{fmt([r['lid_seconds'] for r in sel], 0)} |")
    swept = sweep_bounds(runs, bounds)
    if swept:
        lines += ["", "## Sweep of the frozen proportion q: task-2 accuracy", "",
                  "The paper gives numbers only for the first table's points (its figure: look-ahead peaks near "
                  "q = 0.825 and falls to ≈ 0.05 at 0.95).", "",
                  "| variant | bound | paper | " + " | ".join(f"q={q:g}" for q in fractions) + " |",
                  "|---|---|---|" + "---|" * len(fractions)]
        for v in VARIANTS:
            paper = f"{PAPER[v]:.3f}" + (" (all q)" if v == "none" else f" (q={BEST_Q[v]:g})")
            for b in swept:
                cells = ([fmt([r["task2"] for r in select(runs, v, b)])] * len(fractions) if v == "none" else
                         [fmt([r["task2"] for r in select(runs, v, b, q)]) for q in fractions])
                lines.append(f"| {LABELS[v]} | {plan_label(b)} | {paper} | " + " | ".join(cells) + " |")
    lines += ["", "## Setup and deviations", "",
              f"* Model: {'paper CNN (6,179 parameters)' if s.arch == 'cnn' else 'MLP 784-100-10'}; training items per task "
              f"capped at {s.n_train or 'all'} (paper: all; CPU budget); LID on {s.n_lid} items of a validation split, "
              f"certificates on {s.n_cert} other held-out items (paper: the LID was optimised on test items).",
              f"* Every variant uses the same pretrained task-1 model (no regularisers) and the same LID settings "
              f"({s.lid_iterations} iterations, snapshot every {s.snapshot_every}, minibatch "
              f"{s.lid_batch or 'full (as the paper)'}, candidates checked in {s.eval_dtype}); the paper's no-bias "
              "baseline used a regularised model and 200 iterations with a snapshot every 20.",
              "* Importance: empirical Fisher (mean squared per-item log-likelihood gradient) and SI (path integral of a "
              f"{s.si_steps}-step Adam run), on {s.importance_items} training items; exactly round(q·n) elements frozen.",
              "* EWC-like abscissa q freezes the top 1 − q (the paper's code); look-ahead freezes the bottom q.",
              f"* {runs[0]['threads'] if runs else '?'} torch thread(s) per run on a shared 2-core machine; times are noisy.",
              ""]
    return "\n".join(lines)


def sweep_bounds(runs, bounds) -> list[str]:
    """The bound plans for which a sweep was run (runs at three or more q, not only the best-q points)."""
    return [b for b in bounds if len({r["q"] for r in runs if r["bound"] == b and r["variant"] != "none"}) >= 3]


def plot(runs, path: Path, bounds, fractions) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 5.5))
    width = 0.8 / max(1, len(bounds) + 1)
    for i, v in enumerate(VARIANTS):
        axes[0].bar(i - width * len(bounds) / 2, PAPER[v], width, color="lightgrey", edgecolor="black",
                    label="paper" if i == 0 else None)
        for j, b in enumerate(bounds):
            m, sd, n = mean_std([r["task2"] for r in select(runs, v, b, BEST_Q.get(v))])
            if n:
                axes[0].bar(i + width * (j + 1) - width * len(bounds) / 2, m, width, yerr=sd, capsize=3,
                            color=f"C{j}", edgecolor="black", label=f"ours {plan_label(b)}" if i == 0 else None)
    axes[0].set_xticks(range(len(VARIANTS)))
    axes[0].set_xticklabels([LABELS[v].replace(" (", "\n(") for v in VARIANTS], fontsize=8)
    axes[0].set_ylabel("task-2 accuracy")
    axes[0].set_title("bias at the paper's best q")
    axes[0].legend(fontsize=8)
    swept = sweep_bounds(runs, bounds) or bounds[:1]
    counts = set()
    for j, b in enumerate(swept):
        suffix = "" if len(swept) == 1 else f" ({plan_label(b)})"
        style = {"ls": "-", "marker": "o"} if j == 0 else {"ls": ":", "marker": "s", "mfc": "none"}
        for k, v in enumerate(VARIANTS[1:]):
            stats = [mean_std([r["task2"] for r in select(runs, v, b, q)]) for q in fractions]
            xs = [q for q, st in zip(fractions, stats) if st[2]]
            counts |= {st[2] for st in stats if st[2]}
            if xs:
                ys = [st[0] for st in stats if st[2]]
                es = [st[1] for st in stats if st[2]]
                axes[1].errorbar(xs, ys, yerr=es, capsize=3, label=LABELS[v] + suffix, color=f"C{k}", **style)
        m, sd, n = mean_std([r["task2"] for r in select(runs, "none", b)])
        if n:
            axes[1].axhline(m, color="C4", ls="--" if j == 0 else ":", label="no bias" + suffix)
    for k, v in enumerate(VARIANTS[1:]):
        axes[1].plot([BEST_Q[v]], [PAPER[v]], marker="*", ms=12, color=f"C{k}", mec="black", ls="none",
                     label="paper" if k == 0 else None)
    axes[1].set_xlabel("q (look-ahead: frozen fraction; EWC-like: 1 − frozen fraction)")
    axes[1].set_ylabel("task-2 accuracy")
    seeds = "" if len(counts) < 2 else f"\n{min(counts)}–{max(counts)} seeds per point (see the table)"
    axes[1].set_title(f"sweep ({', '.join(plan_label(b) for b in swept)}){seeds}", fontsize=10)
    axes[1].legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.15))
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)


def parse(argv):
    p = argparse.ArgumentParser(prog="reproductions/lookahead.py", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny data, 1 seed, few iterations, no sweep")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default 5; quick 1)")
    p.add_argument("--seed-offset", type=int, default=5, help="first seed (the paper used 5–14)")
    p.add_argument("--bound", default=None,
                   help="bound plans: METHOD or SHAPE+CERTIFY (e.g. IBP+CROWN: optimise with IBP, certify and "
                        "grow ×4 with CROWN); default IBP,IBP+CROWN on the CNN, IBP,CROWN on the MLP")
    p.add_argument("--variants", "--methods", dest="variants", default=",".join(VARIANTS))
    p.add_argument("--fractions", default=",".join(map(str, FRACTIONS)))
    p.add_argument("--no-sweep", action="store_true", help="only the paper's best q per variant")
    p.add_argument("--sweep-bounds", default=None,
                   help="bound plans (of --bound) for which the sweep runs (default: all of them)")
    p.add_argument("--arch", choices=("cnn", "mlp"), default=None, help="default: cnn (quick: mlp)")
    p.add_argument("--lid-batch", type=int, default=None, help="LID minibatch (default: full batch, as the paper)")
    p.add_argument("--eval-dtype", choices=("float64", "float32"), default=None,
                   help="arithmetic of the candidates' check on the LID items (certificates: always float64)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--quiet", action="store_true")
    add_run_options(p)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    s = Settings.quick() if args.quick else Settings()
    if args.arch:
        s = replace(s, arch=args.arch)
    if args.lid_batch is not None:
        s = replace(s, lid_batch=args.lid_batch)
    if args.eval_dtype is not None:
        s = replace(s, eval_dtype=args.eval_dtype)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if any(v not in VARIANTS for v in variants):
        print(f"unknown variant(s) {[v for v in variants if v not in VARIANTS]}; choose from {VARIANTS}", file=sys.stderr)
        return 2
    try:
        bounds = bound_plans(args.bound or DEFAULT_BOUND_PLANS[s.arch])
    except InputError as exc:
        print(f"--bound: {exc}", file=sys.stderr)
        return 2
    try:
        worker = is_worker(args)
    except InputError as exc:
        print(exc, file=sys.stderr)
        return 2
    fractions = [float(q) for q in args.fractions.split(",") if q.strip()]
    n_seeds = args.seeds if args.seeds is not None else (1 if args.quick else 5)
    seeds = list(range(args.seed_offset, args.seed_offset + n_seeds))
    sweep = not (args.no_sweep or args.quick)
    sweep_bounds = bounds if args.sweep_bounds is None else [b for b in args.sweep_bounds.split(",") if b in bounds]
    out = Path(args.out) if args.out else RESULTS
    name = "lookahead_quick" if args.quick else ("lookahead" if s.arch == "cnn" else f"lookahead_{s.arch}")
    cache = out / "runs" / f"{name}-{s.digest()}"
    cache.mkdir(parents=True, exist_ok=True)
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))

    jobs = [(v, BEST_Q.get(v), b, seed) for seed in seeds for b in bounds for v in variants]
    if sweep:
        for group in (("fisher-lookahead", "si-lookahead"), ("fisher", "si")):
            jobs += [(v, q, b, seed) for seed in seeds for b in sweep_bounds for v in group if v in variants
                     for q in fractions if q != BEST_Q[v]]

    def path_of(job) -> Path:
        v, q, b, seed = job
        return cache / f"{v}-q{q}-{b}-seed{seed}.json"

    def prepare():
        data = (*load_mnist("train", data_dir=args.data_dir), *load_mnist("test", data_dir=args.data_dir))

        def run(job) -> dict:
            v, q, b, seed = job
            result = run_one(v, q, b, seed, s, data, log)
            log(f"{LABELS[v]} q={q} {b} seed {seed}: task-2 acc {result['task2']:.3f}, task-1 cert "
                f"{result['task1_certificate']:.3f}, width {result['lid_mean_width']:.4g} ({result['seconds']:.0f}s)")
            return result
        return run

    failures = execute(args, argv, __file__, jobs, path_of, prepare,
                       lambda job: f"{job[0]} q={job[1]} {job[2]} seed {job[3]}", desc="look-ahead runs", log=log)
    if worker:  # the parent writes the report
        return 1 if failures else 0
    runs = [json.loads(p.read_text()) for p in sorted(cache.glob("*.json"))]
    runs = [r for r in runs if r["seed"] in seeds and r["bound"] in bounds and r["variant"] in variants]
    out.mkdir(parents=True, exist_ok=True)
    report = {"settings": asdict(s), "seeds": seeds, "paper": PAPER, "best_q": BEST_Q, "runs": runs,
              "failures": failures}
    write_text_atomic(out / f"{name}.json", json.dumps(report, indent=1) + "\n")
    write_text_atomic(out / f"{name}.md", markdown(runs, s, bounds, fractions))
    if runs:
        plot(runs, out / f"{name}.png", bounds, fractions)
    if not args.quiet:
        print((out / f"{name}.md").read_text())
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
