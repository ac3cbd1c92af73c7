"""Reproduction: Split-MNIST continual learning (TIL / CIL / DIL), PGD with LIDs vs baselines.

Paper ("Provably Safe Model Updates", MNIST figure; values read off the plot, 100 seeds): final average
accuracy TIL ≈ 1.0 with certificates ≈ 0.9, CIL ≈ 0.3, DIL ≈ 0.6–0.7; LID ≥ SGD and competitive with
EWC / LwF / A-GEM; SGD ≈ 0.8 in TIL.

What runs, per setting and seed (same tasks and initial weights for every method):

* ``lid`` — :class:`lirpa_lid.continual.lid_learner.LIDLearner`, once per bound method in ``--bound`` (the paper
  used IBP; CROWN is ours). Paper hyperparameters (Adam 1e-3, 5 epochs, batch 64, L2 and "unbias"
  0.01; LID on 400 items, τ = a − 0.12, 200 iterations, primal 0.33, dual 0.01, snapshot every 20,
  ``sample_largest_closest``). Certificates: Clopper–Pearson (δ = 0.05) on *held-out* items of each
  task (``--n-cert``, default 1000), from the bound method that grew the domain.
* ``sgd``, ``ewc``, ``lwf``, ``agem``, ``icn`` — :mod:`lirpa_lid.baselines` with the paper's settings
  (LwF λ 0.001 TIL / 0.05 CIL, DIL; InterContiNet epochs 15/5/5, box lr 100/1/1000).
* ``lid-replay`` (not run by default) — the LID learner with replay buffers (200 items per task,
  targets TIL 0.95 / DIL 0.85 / CIL 0.65, up to 3 recomputations).

Every run is cached as JSON under ``<out>/runs/split_mnist[_quick]/`` (reruns skip finished runs
with the same configuration); the tables are then built from all cached runs of that configuration:
``<out>/split_mnist[_quick].md``, ``.json``, ``.png``.

Usage: ``python reproductions/split_mnist.py [--quick] [--seeds 5] [--settings TIL,CIL,DIL]
[--methods lid,sgd,ewc,lwf,agem,icn] [--bound IBP,CROWN] [--data-dir DIR] [--out DIR] [--workers N] [--quiet]``
(also ``lirpa-lid reproduce split-mnist ...``). Exit code 0 when every reported certificate
covers its final model and every requested run finished.
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

from lirpa_lid.continual.baselines import AGEM, AGEM_TRAIN, BASELINE_TRAIN, EWC, FineTune, IntervalCL, LwF
from lirpa_lid.continual.lid_learner import PAPER_TRAIN, LIDLearner, LIDLearnerConfig, ReplayConfig
from lirpa_lid.continual.tasks import DEFAULT_BOUND_PLANS, SETTINGS, make_model, split_mnist_tasks
from lirpa_lid.continual.training import TrainConfig, run_continual
from lirpa_lid.datasets import load_mnist
from lirpa_lid.errors import InputError
from lirpa_lid.files import save_figure_atomic, write_text_atomic
from lirpa_lid.lid.solve import LIDConfig, bound_plan, bound_plans, plan_label
from lirpa_lid.pipeline.runs import add_run_options, execute, is_worker

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = ("lid", "sgd", "ewc", "lwf", "agem", "icn", "lid-replay")
DEFAULT_METHODS = ("lid", "sgd", "ewc", "lwf", "agem", "icn")
LABELS = {"sgd": "SGD", "ewc": "EWC", "lwf": "LwF", "agem": "A-GEM", "icn": "InterContiNet"}
# read off the paper's MNIST figure (notes §3): final average accuracy; None: not given
PAPER = {"TIL": {"lid": 1.0, "lid_cert": 0.9, "sgd": 0.8}, "CIL": {"lid": 0.3}, "DIL": {"lid": "0.6–0.7"}}
LWF_LAMBDA = {"TIL": 0.001, "CIL": 0.05, "DIL": 0.05}
ICN = {"TIL": (15, 100.0), "CIL": (5, 1.0), "DIL": (5, 1000.0)}  # (epochs, box learning rate)
REPLAY_TARGET = {"TIL": 0.95, "CIL": 0.65, "DIL": 0.85}
PAPER_MIN_TASK0 = 0.7  # the paper discarded seeds whose task-0 accuracy was below this


@dataclass(frozen=True)
class Settings:
    """Everything that determines a run's numbers (hashed into the cache key)."""

    arch: str = "cnn"
    n_train: int | None = 2000
    n_lid: int = 400
    n_cert: int = 1000
    n_test: int | None = None
    epochs_scale: float = 1.0
    lid_iterations: int = 200
    snapshot_every: int = 20
    icn_steps: int = 1000
    kind: str = "mnist"
    lid_batch: int | None = None        # None: full batch (the paper: 500 > 400 items)
    eval_dtype: str = "float64"         # arithmetic of the candidates' check on the LID items

    @classmethod
    def quick(cls) -> "Settings":
        """A CI-size check: the MLP (bounds on it are cheap for every method), tiny data, ~1 epoch."""
        return cls(arch="mlp", n_train=300, n_lid=48, n_cert=96, n_test=200, epochs_scale=0.25,
                   lid_iterations=6, snapshot_every=3, icn_steps=10)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]

    def epochs(self, n: int) -> int:
        return max(1, int(round(n * self.epochs_scale)))


def _scaled(train: TrainConfig, s: Settings, epochs: int | None = None) -> TrainConfig:
    return replace(train, epochs=s.epochs(epochs if epochs is not None else train.epochs))


def make_learner(method: str, bound: str | None, setting: str, seed: int, s: Settings, progress: bool):
    model = make_model(s.arch, 2 if setting == "DIL" else 10, seed)
    if method in ("lid", "lid-replay"):
        lid = LIDConfig(iterations=s.lid_iterations, snapshot_every=s.snapshot_every, seed=seed,
                        progress=progress, batch_size=s.lid_batch or LIDConfig.batch_size,
                        eval_dtype=getattr(torch, s.eval_dtype), **bound_plan(bound))
        replay = ReplayConfig(target=REPLAY_TARGET[setting]) if method == "lid-replay" else None
        cfg = LIDLearnerConfig(train=_scaled(PAPER_TRAIN, s), lid=lid, replay=replay)
        name = f"LID{' + replay' if replay else ''} ({bound})"
        return LIDLearner(model, cfg, seed, name)
    if method == "sgd":
        return FineTune(model, _scaled(BASELINE_TRAIN, s), seed)
    if method == "ewc":
        return EWC(model, lmbd=1e6, fisher_batch=64, train=_scaled(BASELINE_TRAIN, s), seed=seed)
    if method == "lwf":
        return LwF(model, lmbd=LWF_LAMBDA[setting], temperature=2.0, train=_scaled(BASELINE_TRAIN, s), seed=seed)
    if method == "agem":
        return AGEM(model, memory_per_task=3750, ref_batch=256, train=_scaled(AGEM_TRAIN, s), seed=seed)
    if method == "icn":
        epochs, lid_lr = ICN[setting]
        return IntervalCL(model, train=_scaled(BASELINE_TRAIN, s, epochs), lid_lr=lid_lr, lid_steps=s.icn_steps,
                          increment=0.05, seed=seed)
    raise ValueError(method)


def run_key(method: str, bound: str | None) -> str:
    return f"{method}-{bound}" if method in ("lid", "lid-replay") else method


def run_one(setting: str, method: str, bound: str | None, seed: int, s: Settings, data, progress: bool,
            log) -> dict:
    tasks = split_mnist_tasks(setting, seed, n_train=s.n_train, n_lid=s.n_lid, n_cert=s.n_cert, n_test=s.n_test,
                              data=data)
    learner = make_learner(method, bound, setting, seed, s, progress)
    started = time.perf_counter()
    result = run_continual(learner, tasks, log=log)
    return {"setting": setting, "method": method, "bound": bound, "key": run_key(method, bound), "seed": seed,
            "learner": learner.name, "digits": [list(t.digits) for t in tasks], "settings": asdict(s),
            "seconds": time.perf_counter() - started, "threads": torch.get_num_threads(), **result.as_dict()}


# ------------------------------------------------------------------------------- aggregation
def mean_std(values: list[float]) -> tuple[float, float, int]:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return math.nan, math.nan, 0
    m = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return m, sd, len(vals)


def fmt(values: list[float], digits: int = 3) -> str:
    m, sd, n = mean_std(values)
    return "—" if n == 0 else f"{m:.{digits}f} ± {sd:.{digits}f} (n={n})"


def run_metrics(run: dict) -> dict:
    """Per-run numbers the tables use."""
    summ = run["summary"]
    certs = [c for c in run["certified"][-1] if c is not None]
    emp = [c for c in run["certified_fraction"][-1] if c is not None]
    opt = list(run["details"].get("optimisation_certified", {}).values())
    return {"average_accuracy": summ["average_accuracy"], "forgetting": summ["forgetting"],
            "backward_transfer": summ["backward_transfer"], "negative_flips": summ["mean_negative_flips"],
            "cert_bound": sum(certs) / len(certs) if certs else None,
            "cert_heldout_fraction": sum(emp) / len(emp) if emp else None,
            "cert_optimisation": sum(opt) / len(opt) if opt else None,
            "task0_final": run["accuracy"][-1][0], "task0_learned": run["accuracy"][0][0],
            "seconds": run["seconds"]}


def aggregate(runs: list[dict]) -> dict:
    out: dict = {}
    for r in runs:
        out.setdefault(r["setting"], {}).setdefault(r["key"], []).append(run_metrics(r))
    return out


def _col(agg, setting, key, metric):
    return [m[metric] for m in agg.get(setting, {}).get(key, [])]


def method_keys(agg: dict, setting: str) -> list[str]:
    """The setting's run keys, LID learners first."""
    return sorted(agg.get(setting, {}), key=lambda k: (not k.startswith("lid"), k))


def method_name(key: str) -> str:
    for prefix, name in (("lid-replay-", "LID + replay, "), ("lid-", "LID, ")):
        if key.startswith(prefix):
            return name + plan_label(key[len(prefix):])
    return LABELS.get(key, key)


def markdown(agg: dict, runs: list[dict], args, s: Settings, bounds: list[str]) -> str:
    seeds = sorted({r["seed"] for r in runs})
    model = "paper CNN" if s.arch == "cnn" else "MLP 784-100-out (the paper's values are for its CNN)"
    columns = list(dict.fromkeys(["IBP", "CROWN", *bounds]))
    lines = [f"# Split-MNIST: PGD with certified LIDs vs baselines ({model})", "",
             f"Seeds: {len(seeds)} ({', '.join(map(str, seeds))}); mean ± sample std over seeds (n = runs that "
             "finished). Paper values: read off the paper's MNIST figure (100 seeds, 85 for DIL).", "",
             "## Main table: final average accuracy and certificates of the LID learner", "",
             "| setting | quantity | paper | " + " | ".join(f"ours {plan_label(b)}" for b in columns) + " |",
             "|---|---|---|" + "---|" * len(columns)]
    quantities = [("average_accuracy", "final average accuracy", "lid"),
                  ("cert_optimisation", "certified accuracy on the LID items (the paper's \"certificates\"; mean "
                                        "over tasks 0–3)", "lid_cert"),
                  ("cert_heldout_fraction", "held-out certified fraction (mean over tasks 0–3)", None),
                  ("cert_bound", "**certificate**: Clopper–Pearson bound, δ = 0.05 (mean over tasks 0–3)", None)]
    for setting in SETTINGS:
        if setting not in agg:
            continue
        p = PAPER.get(setting, {})
        for metric, label, paper_key in quantities:
            cells = [fmt(_col(agg, setting, f"lid-{b}", metric)) if b in bounds else "not run" for b in columns]
            lines.append(f"| {setting} | {label} | {p.get(paper_key, '—') if paper_key else '—'} | "
                         + " | ".join(cells) + " |")
    lines += ["", "## All methods", "",
              "| setting | method | paper (final avg. acc.) | final average accuracy | forgetting | backward transfer "
              "| negative flips (earlier tasks) | certificate bound (mean, tasks 0–3) | wall time per run (s) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for setting in SETTINGS:
        for key in method_keys(agg, setting):
            method = "lid-replay" if key.startswith("lid-replay-") else ("lid" if key.startswith("lid-") else key)
            paper = PAPER.get(setting, {}).get(method if method != "lid" else "lid", "—") \
                if method in ("lid", "sgd") else "—"
            name = method_name(key)
            lines.append(f"| {setting} | {name} | {paper} | {fmt(_col(agg, setting, key, 'average_accuracy'))} | "
                         f"{fmt(_col(agg, setting, key, 'forgetting'))} | "
                         f"{fmt(_col(agg, setting, key, 'backward_transfer'))} | "
                         f"{fmt(_col(agg, setting, key, 'negative_flips'))} | "
                         f"{fmt(_col(agg, setting, key, 'cert_bound'))} | "
                         f"{fmt(_col(agg, setting, key, 'seconds'), 0)} |")
    lines += ["", f"## The paper's seed rule: runs whose task-0 accuracy after task 0 is < {PAPER_MIN_TASK0} dropped", "",
              "Some initialisations of a small network never learn under a method's training settings (accuracy at "
              "chance on every task); the paper discarded such seeds. Same runs as above.", "",
              "| setting | method | final average accuracy, all runs | final average accuracy, paper's rule | runs dropped |",
              "|---|---|---|---|---|"]
    for setting in SETTINGS:
        for key in method_keys(agg, setting):
            rows = agg[setting][key]
            kept = [m["average_accuracy"] for m in rows if m["task0_learned"] >= PAPER_MIN_TASK0]
            name = method_name(key)
            lines.append(f"| {setting} | {name} | {fmt([m['average_accuracy'] for m in rows])} | {fmt(kept)} | "
                         f"{len(rows) - len(kept)} of {len(rows)} |")
    lines += ["", "## Setup and deviations from the paper", "",
              f"* Model: {'the paper CNN (6,179 parameters, all in the domain)' if s.arch == 'cnn' else 'MLP 784-100-out'}; "
              f"data: {s.kind}, training items per task capped at {s.n_train or 'all'} (paper: all ≈ 9,600; CPU budget), "
              f"LID items {s.n_lid} and held-out certificate items {s.n_cert} per task from a validation split no learner "
              f"trains on (paper: the LID was optimised *and* scored on the same 400 test items), test items "
              f"{s.n_test or 'all'} per task.",
              f"* Epochs: the paper's × {s.epochs_scale:g}; LID iterations {s.lid_iterations}, snapshot every "
              f"{s.snapshot_every} (paper 200 / 20); LID minibatch {s.lid_batch or 'full (as the paper)'}; candidates "
              f"checked on the LID items in {s.eval_dtype} (certificates: float64, held-out).",
              *([f"* {plan_label(b)}: the LID is optimised with {b.split('+')[0]}, its snapshots are certified by "
                 f"{b.split('+')[1]} and grown (offsets scaled up, inside the domain in force) while {b.split('+')[1]} "
                 "certifies them; its certificates use that method (`LIDConfig.certify_method`, `grow`)."
                 for b in bounds if "+" in b]),
              "* Certificates are finite-sample bounds on held-out items (each task's own statement at 1 − δ = 0.95); "
              "the paper reports the certified accuracy on the optimisation items, shown here too.",
              "* Task-incremental heads restrict the softmax to the task's two classes (the paper multiplies the other "
              "logits by 0, which lets them compete at 0). Rows of the last layer that belong to other classes are "
              "widened to ±10 after the LID, as in the paper's code (nothing certified depends on them).",
              "* A-GEM's reference gradient uses a random memory batch of 256 per step (the paper's code used the "
              "whole memory); EWC's Fisher is the paper's (squared batch gradient, 64 items); InterContiNet is our "
              "re-implementation (box shrunk around the new weights by Adam on the worst-case IBP loss, inside the "
              "previous box).",
              "* Seeds are not filtered by task-0 accuracy in the tables above (the paper dropped seeds with task-0 "
              "accuracy < 0.7); the section before this one applies that rule.",
              f"* Wall times: {runs[0]['threads'] if runs else '?'} torch thread(s) per run on a shared 2-core machine "
              "(noisy).", ""]
    return "\n".join(lines)


def plot(agg: dict, path: Path, bounds: list[str]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = [s for s in SETTINGS if s in agg]
    fig, axes = plt.subplots(1, len(settings), figsize=(4.6 * len(settings), 3.8), squeeze=False)
    for ax, setting in zip(axes[0], settings):
        keys = method_keys(agg, setting)
        xs = range(len(keys))
        for i, key in enumerate(keys):
            acc = _col(agg, setting, key, "average_accuracy")
            m, sd, n = mean_std(acc)
            lo, hi = (min(acc), max(acc)) if acc else (m, m)
            ax.bar(i, m, color=f"C{i}", alpha=0.8, edgecolor="black")
            ax.errorbar(i, m, yerr=[[m - lo], [hi - m]], color="black", capsize=3)
            cert = [c for c in _col(agg, setting, key, "cert_bound") if c is not None]
            if cert:
                cm = sum(cert) / len(cert)
                ax.bar(i, cm, color="none", edgecolor="black", hatch="///", linewidth=0)
        ax.set_xticks(list(xs))
        ax.set_xticklabels([LABELS.get(k, k.replace("lid-replay-", "LID+R ").replace("lid-", "LID ")) for k in keys],
                           rotation=35, ha="right")
        ax.set_ylim(0, 1.05)
        ax.set_title(f"Split-MNIST {setting}")
        ax.set_ylabel("final average accuracy")
        for v in ([PAPER[setting]["lid"]] if isinstance(PAPER[setting].get("lid"), float) else []):
            ax.axhline(v, color="grey", ls="--", lw=1)
    fig.text(0.5, 0.005, "bars: mean (whiskers: min–max over seeds); hatched: certified lower bound "
             "(held-out, δ = 0.05, mean over tasks 0–3); dashed: paper's LID", ha="center", fontsize=8)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    save_figure_atomic(fig, path)
    plt.close(fig)


# ------------------------------------------------------------------------------- main
def parse(argv):
    p = argparse.ArgumentParser(prog="reproductions/split_mnist.py", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny data, 1 seed, few iterations (a CI-size check)")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default 5; quick: 1)")
    p.add_argument("--seed-offset", type=int, default=0)
    p.add_argument("--settings", default="TIL,CIL,DIL")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS), help=f"comma list of {METHODS}")
    p.add_argument("--bound", default=None,
                   help="bound plans for the LID learner: METHOD (shape and certify) or SHAPE+CERTIFY (e.g. "
                        "IBP+CROWN: optimise with IBP, certify and grow the snapshots ×4 with CROWN); default "
                        "IBP,IBP+CROWN on the CNN, IBP,CROWN on the MLP")
    p.add_argument("--arch", choices=("cnn", "mlp"), default=None)
    p.add_argument("--n-train", type=int, default=None, help="training items per task (default 2000; quick 300)")
    p.add_argument("--lid-batch", type=int, default=None,
                   help="LID minibatch (default: full batch, as the paper); smaller is cheaper per iteration")
    p.add_argument("--eval-dtype", choices=("float64", "float32"), default=None,
                   help="arithmetic of the candidates' check on the LID items (default float64); certificates on "
                        "held-out items are always float64")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default=None, help=f"output directory (default {RESULTS})")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    p.add_argument("--report-only", action="store_true", help="only rebuild the tables from cached runs")
    p.add_argument("--quiet", action="store_true")
    add_run_options(p)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    s = Settings.quick() if args.quick else Settings()
    if args.arch:
        s = replace(s, arch=args.arch)
    if args.n_train is not None:
        s = replace(s, n_train=args.n_train)
    if args.lid_batch is not None:
        s = replace(s, lid_batch=args.lid_batch)
    if args.eval_dtype is not None:
        s = replace(s, eval_dtype=args.eval_dtype)
    settings = [x.strip().upper() for x in args.settings.split(",") if x.strip()]
    methods = [m.strip().lower() for m in args.methods.split(",") if m.strip()]
    bad = [x for x in settings if x not in SETTINGS] + [m for m in methods if m not in METHODS]
    if bad:
        print(f"unknown setting(s)/method(s): {bad}", file=sys.stderr)
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
    n_seeds = args.seeds if args.seeds is not None else (1 if args.quick else 5)
    seeds = list(range(args.seed_offset, args.seed_offset + n_seeds))
    out = Path(args.out) if args.out else RESULTS
    name = "split_mnist_quick" if args.quick else ("split_mnist" if s.arch == "cnn" else f"split_mnist_{s.arch}")
    cache = out / "runs" / f"{name}-{s.digest()}"
    cache.mkdir(parents=True, exist_ok=True)
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))

    jobs = [(st, m, b, seed) for seed in seeds for st in settings for m in methods
            for b in (bounds if m.startswith("lid") else [None])]

    def path_of(job) -> Path:
        st, m, b, seed = job
        return cache / f"{st}-{run_key(m, b)}-seed{seed}.json"

    def prepare():
        data = (*load_mnist("train", s.kind, args.data_dir), *load_mnist("test", s.kind, args.data_dir))
        return lambda job: run_one(*job, s, data, progress=False, log=log)

    failures = execute(args, argv, __file__, jobs, path_of, prepare,
                       lambda job: f"{job[0]} {run_key(job[1], job[2])} seed {job[3]}",
                       desc="split-mnist runs", log=log)
    if worker:  # the parent writes the report
        return 1 if failures else 0

    runs = [json.loads(p.read_text()) for p in sorted(cache.glob("*.json"))]
    runs = [r for r in runs if r["setting"] in settings and r["seed"] in seeds
            and (r["method"] in methods) and (r["bound"] is None or r["bound"] in bounds)]
    agg = aggregate(runs)
    report = {"settings": asdict(s), "seeds": seeds, "paper": PAPER, "aggregate": agg,
              "runs": [{k: r[k] for k in ("setting", "key", "seed", "accuracy", "certified", "certified_fraction",
                                          "negative_flips", "summary", "details", "digits", "seconds")} for r in runs],
              "failures": failures}
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / f"{name}.json", json.dumps(report, indent=1, default=str) + "\n")
    write_text_atomic(out / f"{name}.md", markdown(agg, runs, args, s, bounds))
    if runs:
        plot(agg, out / f"{name}.png", bounds)
    if not args.quiet:
        print((out / f"{name}.md").read_text())
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
