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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import matplotlib
import torch
from matplotlib.figure import Figure
from torch import nn

from lirpa_lid.certificate.certify import Certificate, certify, verify_update
from lirpa_lid.continual.metrics import correct
from lirpa_lid.continual.training import TrainConfig, fit
from lirpa_lid.datasets import Split, Task, blobs_tasks
from lirpa_lid.domains.orthotope import Orthotope
from lirpa_lid.domains.projection import ProjectedOptimizer
from lirpa_lid.files import save_figure_atomic
from lirpa_lid.lid.solve import Candidate, LIDConfig, compute_lid
from lirpa_lid.models.zoo import blobs_mlp
from lirpa_lid.specification.accuracy import CertifiedAccuracy
from lirpa_lid.specification.base import threshold_from_accuracy


@dataclass(frozen=True)
class DemoConfig:
    """The demo's settings (defaults: the paper's toy run, see module docstring).

    Training: ``epochs`` of SGD at ``lr`` in minibatches of ``batch_size``; the model is
    :func:`~lirpa_lid.models.zoo.blobs_mlp` with ``hidden`` units. LIDs: ``τ`` from ``limit`` and
    ``increment``; ``lid_iterations``, ``primal_lr``, ``dual_lr``, ``snapshot_every`` and ``method``
    (bound method) go to :class:`~lirpa_lid.lid.solve.LIDConfig`; ``strategy``: the projection;
    ``delta``: the certificates' confidence parameter.
    """

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

    def train_config(self) -> TrainConfig:
        """Plain SGD at ``lr`` for ``epochs`` passes of ``batch_size`` (what both learners train with)."""
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, optimizer="sgd")

    def lid_config(self) -> LIDConfig:
        """The LID optimiser's settings."""
        return LIDConfig(iterations=self.lid_iterations, primal_lr=self.primal_lr, dual_lr=self.dual_lr,
                         snapshot_every=self.snapshot_every, method=self.method, seed=self.seed,
                         progress=self.progress)


@dataclass
class StageRow:
    """One row of the demo's table: a learner's test accuracy on every task after ``stage`` (the LID
    learner also gives the certified bounds in force and the mean width of its newest LID)."""

    stage: int
    learner: str
    accuracy: list[float]
    certified: list[float | None] = field(default_factory=list)
    mean_width: float | None = None


def _accuracy(model: nn.Module, data: Split) -> float:
    """Test accuracy as the demo reports it: the float32 mean of :func:`~lirpa_lid.continual.metrics.correct`
    (``continual.accuracy`` averages in float64, which would change the reported numbers' last digits)."""
    return float(correct(model, data).float().mean())


def _spec(task: Task, split: Split, tau: float, suffix: str) -> CertifiedAccuracy:
    """Certified accuracy ``≥ tau`` of ``split`` of ``task`` (six outputs: every blob class competes)."""
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


def _run_demo(outdir: str | os.PathLike | None, config: DemoConfig, log: Callable[[str], None]) -> dict:
    """Train task 0, then per stage: both learners learn the task (stage > 0), a new LID, a table row."""
    started = time.perf_counter()
    tasks = blobs_tasks(config.seed)
    out = Path(outdir) if outdir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    run = _Run.after_task0(config, tasks, log)
    for stage in range(len(tasks)):
        if stage > 0:
            run.learn(stage)
        run.record(stage, run.new_lid(stage))
    report = run.report(started)
    if out is not None:
        _write_outputs(out, report, run)
    return report


@dataclass
class _Run:
    """The demo's state across stages: both learners' models (and a snapshot of each per stage), the LID
    candidates in force, the certificates (one per task so far) and the table rows."""

    config: DemoConfig
    tasks: list[Task]
    log: Callable[[str], None]
    sgd: nn.Module
    lid_model: nn.Module
    snapshots: dict[str, list[nn.Module]]
    certificates: list[Certificate] = field(default_factory=list)
    candidates: list[Candidate] | None = None
    outer: Orthotope | None = None
    rows: list[StageRow] = field(default_factory=list)
    lid_seconds: list[float] = field(default_factory=list)

    @classmethod
    def after_task0(cls, config: DemoConfig, tasks: list[Task], log: Callable[[str], None]) -> _Run:
        """Both learners start from the same model, trained on task 0."""
        base = blobs_mlp(config.hidden, seed=config.seed)
        fit(base, tasks[0].train, config.train_config(), seed=config.seed)
        sgd, lid_model = copy.deepcopy(base), copy.deepcopy(base)
        return cls(config, tasks, log, sgd, lid_model,
                   {"SGD": [copy.deepcopy(sgd)], "PGD w/ LID": [copy.deepcopy(lid_model)]})

    def learn(self, stage: int) -> None:
        """Both learners learn task ``stage`` (the LID learner projected into the candidates); the previous
        task's certificate becomes that of the candidate the LID model ended in."""
        cfg, task, previous = self.config, self.tasks[stage], self.tasks[stage - 1]
        fit(self.sgd, task.train, cfg.train_config(), seed=cfg.seed + stage)
        sgd = torch.optim.SGD(self.lid_model.parameters(), lr=cfg.lr)
        projector = ProjectedOptimizer(sgd, self.lid_model, self.candidates, cfg.strategy)
        fit(self.lid_model, task.train, cfg.train_config(), seed=cfg.seed + stage, optimizer=sgd,
            after_step=lambda x, y: projector.project_((x, y)))
        in_use = self.candidates[projector.current]
        # the certificate that covers the model now is that of the candidate in use
        self.certificates[-1] = certify(self.lid_model, in_use, _spec(previous, previous.val,
                                                                      self.certificates[-1].threshold, "held-out"),
                                        cfg.method, cfg.delta, exclude=previous.train,
                                        label=f"task {stage - 1}: {in_use.label or 'candidate'} "
                                              f"(iteration {in_use.iteration})")
        self.outer = in_use.domain
        self.snapshots["SGD"].append(copy.deepcopy(self.sgd))
        self.snapshots["PGD w/ LID"].append(copy.deepcopy(self.lid_model))

    def new_lid(self, stage: int) -> Candidate:
        """A new LID for task ``stage`` inside the domain in use; certify its largest candidate."""
        cfg, task = self.config, self.tasks[stage]
        acc = CertifiedAccuracy(task.train.x, task.train.y, 6, 0.0).nominal_value(self.lid_model)
        tau = threshold_from_accuracy(acc, cfg.increment, cfg.limit)
        t0 = time.perf_counter()
        result = compute_lid(self.lid_model, _spec(task, task.train, tau, "train"), cfg.lid_config(),
                             outer=self.outer, label=f"task {stage} LID")
        self.lid_seconds.append(time.perf_counter() - t0)
        self.candidates = result.candidates
        largest = result.largest()
        self.certificates.append(certify(self.lid_model, largest, _spec(task, task.val, tau, "held-out"),
                                         cfg.method, cfg.delta, exclude=task.train,
                                         label=f"task {stage}: largest candidate"))
        cert = self.certificates[-1]
        self.log(f"stage {stage}: LID for {task.name}: tau={tau:.3f}, {len(self.candidates)} candidates, largest "
                 f"mean width {largest.mean_width:.4f}, held-out certified {cert.k}/{cert.n} -> bound "
                 f"{cert.bound:.3f} ({self.lid_seconds[-1]:.1f}s)")
        return largest

    def record(self, stage: int, largest: Candidate) -> None:
        """The stage's two table rows: test accuracies, and for the LID learner the bounds in force."""
        tasks = self.tasks
        self.rows.append(StageRow(stage, "SGD", [_accuracy(self.sgd, t.test) for t in tasks]))
        self.rows.append(StageRow(stage, "PGD w/ LID", [_accuracy(self.lid_model, t.test) for t in tasks],
                                  [c.bound for c in self.certificates] + [None] * (len(tasks) - len(self.certificates)),
                                  float(largest.domain.mean_width())))

    def report(self, started: float) -> dict:
        """Check every certificate against the final LID model (and the task-0 one against SGD's); the
        JSON-able report."""
        tasks, cfg = self.tasks, self.config
        verdicts = {f"task {i}": verify_update(self.lid_model, c, (tasks[i].val.x, tasks[i].val.y))
                    for i, c in enumerate(self.certificates)}
        sgd_verdict = verify_update(self.sgd, self.certificates[0])
        seconds = time.perf_counter() - started
        return {
            "config": asdict(cfg),
            "rows": [asdict(r) for r in self.rows],
            "certificates": [{"task": i, "k": c.k, "n": c.n, "bound": c.bound, "threshold": c.threshold,
                              "method": c.method, "label": c.label, "statement": c.statement}
                             for i, c in enumerate(self.certificates)],
            "verified": {k: {"ok": v.ok, "reasons": v.reasons} for k, v in verdicts.items()},
            "sgd_model_covered_by_task0_certificate": sgd_verdict.ok,
            "all_verified": all(v.ok for v in verdicts.values()),
            "lid_seconds": self.lid_seconds,
            "seconds": seconds,
        }


def _write_outputs(out: Path, report: dict, run: _Run) -> None:
    """Certificates, ``results.md``, ``results.json`` and the decision-boundary figure; adds ``outdir``."""
    for i, c in enumerate(run.certificates):
        c.save(out / f"certificate_task{i}.json")
    (out / "results.md").write_text(markdown_table(report, [t.name for t in run.tasks]))
    (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_boundaries(run.snapshots, run.tasks, out / "decision_boundaries.png")
    report["outdir"] = str(out)


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
    xs = torch.cat([t.test.x for t in tasks])
    ys = torch.cat([t.test.y for t in tasks])
    lo, hi = xs.min(0).values - 2, xs.max(0).values + 2
    gx, gy = torch.meshgrid(torch.linspace(float(lo[0]), float(hi[0]), 200),
                            torch.linspace(float(lo[1]), float(hi[1]), 200), indexing="xy")
    grid = torch.stack([gx.flatten(), gy.flatten()], 1)
    learners = list(snapshots)
    n_stages = len(snapshots[learners[0]])
    fig = Figure(figsize=(3.2 * n_stages, 3.2 * len(learners)))  # no pyplot: no backend, no global state
    axes = fig.subplots(len(learners), n_stages, squeeze=False)
    cmap = matplotlib.colormaps["tab10"]
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
