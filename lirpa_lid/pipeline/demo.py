"""The main demo: certified class-incremental learning on the paper's blobs (its Fig. 1), with CROWN.

Three tasks (class pairs of six Gaussian blobs), an MLP 2-32-6. Two learners start from the same
task-0 model: plain SGD, and SGD projected into certified LIDs ("PGD w/ LID"). After each task the
LID learner computes a new LID with **CROWN** bounds on that task's training split — inside the
domain it currently uses, so every earlier certificate stays valid — and certifies it on the task's
*validation* split (items the LID never saw; accuracy is reported on the test split).

Settings follow the paper's toy run (SGD 10 epochs, batch 64, lr 0.1; LID τ from limit 0.9 and
increment 0.1, 100 iterations, primal lr 0.5, dual lr 0.1, a snapshot every 5 iterations,
``best_loss`` projection). Changes: no L2/"unbias" regularisers or weight decay when training (not
needed here); the optimiser's collapse rollback and snapshot shrinking (see ``lirpa_lid.lid``) are on.
"""
from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lirpa_lid.certificate.certify import Certificate, certify, verify_update
from lirpa_lid.datasets import Split, Task, blobs_tasks
from lirpa_lid.domains.projection import ProjectedOptimizer
from lirpa_lid.files import save_figure_atomic
from lirpa_lid.lid.solve import LIDConfig, compute_lid
from lirpa_lid.specification.accuracy import CertifiedAccuracy
from lirpa_lid.specification.base import threshold_from_accuracy


@dataclass(frozen=True)
class DemoConfig:
    seed: int = 0
    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.1
    hidden: int = 32
    limit: float = 0.9
    increment: float = 0.1
    lid_iterations: int = 100
    primal_lr: float = 0.5
    dual_lr: float = 0.1
    snapshot_every: int = 5
    method: str = "CROWN"
    strategy: str = "best_loss"
    delta: float = 0.05
    progress: bool = True

    @classmethod
    def quick(cls, **changes) -> DemoConfig:
        """A few-second version for tests."""
        return cls(**{"epochs": 3, "lid_iterations": 20, "snapshot_every": 5, **changes})


@dataclass
class StageRow:
    stage: int
    learner: str
    accuracy: list[float]
    certified: list[float | None] = field(default_factory=list)
    mean_width: float | None = None


def make_model(hidden: int = 32, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, 6))


def _train(model: nn.Module, data: Split, cfg: DemoConfig, projector: ProjectedOptimizer | None = None,
           seed: int = 0) -> None:
    opt = projector or torch.optim.SGD(model.parameters(), lr=cfg.lr)
    g = torch.Generator().manual_seed(seed)
    for _ in range(cfg.epochs):
        perm = torch.randperm(len(data), generator=g)
        for start in range(0, len(data), cfg.batch_size):
            idx = perm[start:start + cfg.batch_size]
            x, y = data.x[idx], data.y[idx]
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            if projector is not None:
                projector.step(batch=(x, y))
            else:
                opt.step()


@torch.no_grad()
def _accuracy(model: nn.Module, data: Split) -> float:
    return float((model(data.x).argmax(1) == data.y).float().mean())


def _spec(task: Task, split: Split, tau: float, suffix: str) -> CertifiedAccuracy:
    return CertifiedAccuracy(split.x, split.y, 6, tau, name=f"task {task.name.split()[1]} {suffix}")


def run_demo(outdir: str | os.PathLike | None = None, config: DemoConfig = DemoConfig(),
             log=print) -> dict:
    """Run the demo; write ``results.md``, ``results.json``, certificates and the figure to ``outdir``.

    Returns a JSON-able dict (rows, certificates, timings, ``all_verified``).
    """
    threads = torch.get_num_threads()
    # the tensors here are tiny: one thread is as fast as two, and on a shared machine a second
    # OpenMP thread waiting for a busy core makes every small op several times slower
    torch.set_num_threads(1)
    try:
        return _run_demo(outdir, config, log)
    finally:
        torch.set_num_threads(threads)


def _run_demo(outdir, config: DemoConfig, log) -> dict:
    started = time.perf_counter()
    tasks = blobs_tasks(config.seed)
    out = Path(outdir) if outdir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)

    base = make_model(config.hidden, config.seed)
    _train(base, tasks[0].train, config, seed=config.seed)
    sgd, lid_model = copy.deepcopy(base), copy.deepcopy(base)
    snapshots = {"SGD": [copy.deepcopy(sgd)], "PGD w/ LID": [copy.deepcopy(lid_model)]}

    lid_cfg = LIDConfig(iterations=config.lid_iterations, primal_lr=config.primal_lr, dual_lr=config.dual_lr,
                        snapshot_every=config.snapshot_every, method=config.method, seed=config.seed,
                        progress=config.progress)
    certificates: list[Certificate] = []
    candidates, outer, in_use = None, None, None
    rows: list[StageRow] = []
    timings = {"lid_seconds": []}

    for stage, task in enumerate(tasks):
        if stage > 0:
            _train(sgd, task.train, config, seed=config.seed + stage)
            projector = ProjectedOptimizer(torch.optim.SGD(lid_model.parameters(), lr=config.lr), lid_model,
                                           candidates, config.strategy)
            _train(lid_model, task.train, config, projector, seed=config.seed + stage)
            in_use = candidates[projector.current]
            # the certificate that covers the model now is that of the candidate in use
            certificates[-1] = certify(lid_model, in_use, _spec(tasks[stage - 1], tasks[stage - 1].val,
                                                                 certificates[-1].threshold, "held-out"),
                                       config.method, config.delta, exclude=tasks[stage - 1].train,
                                       label=f"task {stage - 1}: {in_use.label or 'candidate'} "
                                             f"(iteration {in_use.iteration})")
            outer = in_use.domain
            snapshots["SGD"].append(copy.deepcopy(sgd))
            snapshots["PGD w/ LID"].append(copy.deepcopy(lid_model))

        # a new LID for this task, inside the domain in use
        acc = CertifiedAccuracy(task.train.x, task.train.y, 6, 0.0).nominal_value(lid_model)
        tau = threshold_from_accuracy(acc, config.increment, config.limit)
        t0 = time.perf_counter()
        result = compute_lid(lid_model, _spec(task, task.train, tau, "train"), lid_cfg, outer=outer,
                             label=f"task {stage} LID")
        timings["lid_seconds"].append(time.perf_counter() - t0)
        candidates = result.candidates
        largest = result.largest()
        certificates.append(certify(lid_model, largest, _spec(task, task.val, tau, "held-out"), config.method,
                                    config.delta, exclude=task.train, label=f"task {stage}: largest candidate"))
        log(f"stage {stage}: LID for {task.name}: tau={tau:.3f}, {len(candidates)} candidates, largest mean "
            f"width {largest.mean_width:.4f}, held-out certified {certificates[-1].k}/{certificates[-1].n} -> "
            f"bound {certificates[-1].bound:.3f} ({timings['lid_seconds'][-1]:.1f}s)")

        rows.append(StageRow(stage, "SGD", [_accuracy(sgd, t.test) for t in tasks]))
        rows.append(StageRow(stage, "PGD w/ LID", [_accuracy(lid_model, t.test) for t in tasks],
                             [c.bound for c in certificates] + [None] * (len(tasks) - len(certificates)),
                             float(largest.domain.mean_width())))

    # every certificate must cover the final LID model; none covers the SGD model
    verdicts = {f"task {i}": verify_update(lid_model, c, (tasks[i].val.x, tasks[i].val.y))
                for i, c in enumerate(certificates)}
    sgd_verdict = verify_update(sgd, certificates[0])
    seconds = time.perf_counter() - started
    report = {
        "config": asdict(config),
        "rows": [asdict(r) for r in rows],
        "certificates": [{"task": i, "k": c.k, "n": c.n, "bound": c.bound, "threshold": c.threshold,
                          "method": c.method, "label": c.label, "statement": c.statement}
                         for i, c in enumerate(certificates)],
        "verified": {k: {"ok": v.ok, "reasons": v.reasons} for k, v in verdicts.items()},
        "sgd_model_covered_by_task0_certificate": sgd_verdict.ok,
        "all_verified": all(v.ok for v in verdicts.values()),
        "lid_seconds": timings["lid_seconds"],
        "seconds": seconds,
    }
    if out is not None:
        for i, c in enumerate(certificates):
            c.save(out / f"certificate_task{i}.json")
        (out / "results.md").write_text(markdown_table(report, [t.name for t in tasks]))
        (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
        plot_boundaries(snapshots, tasks, out / "decision_boundaries.png")
        report["outdir"] = str(out)
    return report


def markdown_table(report: dict, task_names: list[str]) -> str:
    """The stage-by-stage table (test accuracy per task; LID rows also give the certified bounds)."""
    head = ["stage", "learner"] + [f"acc {n.split(' (')[0]}" for n in task_names] + \
           [f"cert {n.split(' (')[0]}" for n in task_names] + ["LID mean width"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in report["rows"]:
        cert = [("—" if c is None else f"{c:.3f}") for c in r["certified"]] or ["—"] * len(task_names)
        width = "—" if r["mean_width"] is None else f"{r['mean_width']:.4f}"
        lines.append("| " + " | ".join([str(r["stage"]), r["learner"]] + [f"{a:.3f}" for a in r["accuracy"]]
                                       + cert + [width]) + " |")
    cfg = report["config"]
    notes = [
        "",
        f"Accuracy: test split. Certified: finite-sample lower bound (Clopper-Pearson, delta={cfg['delta']}) on the "
        f"expected accuracy of *every* weight vector in the LID in use, from {cfg['method']} bounds on the task's "
        "held-out validation split; each new LID lies inside the previous one, so earlier bounds stay valid.",
        f"Final LID model covered by every earlier certificate: {report['all_verified']}; final SGD model covered "
        f"by the task-0 certificate: {report['sgd_model_covered_by_task0_certificate']}.",
        f"Wall time: {report['seconds']:.1f} s (LIDs: {', '.join(f'{s:.1f}' for s in report['lid_seconds'])} s).",
    ]
    return "\n".join(lines + notes) + "\n"


def plot_boundaries(snapshots: dict[str, list[nn.Module]], tasks: list[Task], path: Path) -> None:
    """Decision regions per stage (columns) for each learner (rows), test points on top."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = torch.cat([t.test.x for t in tasks])
    ys = torch.cat([t.test.y for t in tasks])
    lo, hi = xs.min(0).values - 2, xs.max(0).values + 2
    gx, gy = torch.meshgrid(torch.linspace(float(lo[0]), float(hi[0]), 200),
                            torch.linspace(float(lo[1]), float(hi[1]), 200), indexing="xy")
    grid = torch.stack([gx.flatten(), gy.flatten()], 1)
    learners = list(snapshots)
    n_stages = len(snapshots[learners[0]])
    fig, axes = plt.subplots(len(learners), n_stages, figsize=(3.2 * n_stages, 3.2 * len(learners)),
                             squeeze=False)
    cmap = plt.get_cmap("tab10")
    for r, learner in enumerate(learners):
        for c, model in enumerate(snapshots[learner]):
            ax = axes[r][c]
            with torch.no_grad():
                pred = model(grid).argmax(1).reshape(gx.shape)
            ax.contourf(gx, gy, pred, levels=torch.arange(-0.5, 6.5, 1).tolist(), colors=[cmap(i) for i in range(6)],
                        alpha=0.3)
            seen = torch.isin(ys, torch.tensor([k for t in tasks[:c + 1] for k in t.classes]))
            ax.scatter(xs[seen, 0], xs[seen, 1], c=[cmap(int(k)) for k in ys[seen]], s=4)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"after task {c}")
            if c == 0:
                ax.set_ylabel(learner)
    fig.suptitle("Class-incremental blobs: plain SGD vs SGD projected into CROWN-certified LIDs")
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)
