"""The certified continual learner: projected training into nested LIDs ("PGD w/ LID" in the paper).

For task ``t`` (see :class:`LIDLearner`):

1. train on the task; after every optimiser step the weights are projected into the candidate
   domains of the previous task's LID (task 0: unconstrained);
2. the candidate the weights ended in becomes the domain in force, and is certified for the previous
   task on that task's *held-out* certificate items (:func:`~lirpa_lid.certificate.certify.certify`);
3. optionally (replay): if the task's accuracy falls short of a target, the domain is recomputed from
   the current weights on buffered items of the earlier tasks (one constraint each, no outer box) and
   the task is retrained with the buffer replayed; every earlier task is then re-certified on its
   held-out items (the old certificates no longer apply: the weights left the old domain);
4. a new LID for task ``t`` is computed on its LID items, *inside* the domain in force, so every
   earlier certificate stays valid for every later weight vector. Threshold (the paper's rule):
   ``τ = min(max(a − increment, a/2), limit)``, ``a`` the accuracy on the LID items (capped by the
   certified value at width 0, so the problem is feasible). An optional freezing policy
   (:class:`~lirpa_lid.continual.importance.FreezingPolicy`, the paper's bias) freezes part of the elements.

Task-incremental heads (as the paper's code): a task's certificate only involves its own two logits,
so the rows (weights and bias) of the last layer that belong to other classes do not affect it. They
are frozen while the LID is optimised and then widened to ``max_width`` (clipped to the outer box):
the next tasks can still learn their heads. Nothing certified depends on them.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor, nn

from lirpa_lid.bounds.resolve import bounded_network
from lirpa_lid.certificate.certify import Certificate, certify
from lirpa_lid.continual.heads import head_loss
from lirpa_lid.continual.importance import FreezingPolicy
from lirpa_lid.continual.metrics import accuracy
from lirpa_lid.continual.replay import ReplayBuffer
from lirpa_lid.continual.tasks import SplitTask
from lirpa_lid.continual.training import TrainConfig, fit
from lirpa_lid.datasets import Split
from lirpa_lid.domains.orthotope import Orthotope
from lirpa_lid.domains.projection import ProjectedOptimizer
from lirpa_lid.errors import InputError
from lirpa_lid.lid.solve import Candidate, LIDConfig, compute_lid, method_label
from lirpa_lid.margin import hard_values
from lirpa_lid.specification.accuracy import CertifiedAccuracy
from lirpa_lid.specification.base import threshold_from_accuracy

PAPER_TRAIN = TrainConfig(epochs=5, batch_size=64, lr=1e-3, l2=0.01, unbias=0.01)


@dataclass(frozen=True)
class ReplayConfig:
    """The paper's replay buffers (``BufferTrainer``): ``capacity`` training items kept per task
    (int or per-task list); when the new task's accuracy on its LID items is below ``target``, up to
    ``max_calls`` times: recompute the LID on ``k`` buffered items per earlier task with thresholds
    ``acc_k − increment`` (no outer box), retrain with replay; if the gain is below ``min_gain``, the
    threshold of the task closest to its bound is lowered by ``loosen``."""

    capacity: int | tuple[int, ...] = 200
    k: int = 200
    target: float = 0.65
    max_calls: int = 3
    increment: float = 0.15
    min_gain: float = 0.025
    loosen: float = 0.01


@dataclass(frozen=True)
class LIDLearnerConfig:
    """Defaults: the paper's MNIST settings (training with L2 and "unbias" 0.01, Adam 1e-3, 5 epochs,
    batch 64; LID increment 0.12, limit 1, 200 iterations, primal lr 0.33, dual lr 0.01, snapshot every
    20; projection ``sample_largest_closest``); bounds by ``lid.method``. ``bias``: an optional
    :class:`~lirpa_lid.continual.importance.FreezingPolicy` (elements the LIDs keep at width 0);
    ``replay``: an optional :class:`ReplayConfig`."""

    train: TrainConfig = PAPER_TRAIN
    lid: LIDConfig = field(default_factory=lambda: LIDConfig(progress=False))
    increment: float | None = 0.12
    limit: float | None = 1.0
    strategy: str = "sample_largest_closest"
    delta: float = 0.05
    last_task_lid: bool = False
    widen_other_heads: bool = True
    bias: FreezingPolicy | None = None
    replay: ReplayConfig | None = None


def last_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    """Name and module of the model's last ``nn.Linear`` (the head)."""
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise InputError("the model has no nn.Linear head")
    return found[-1]


class LIDLearner:
    """Continual learner with certified, nested LIDs (see module docstring).

    ``certificates()`` maps each earlier task to the certificate of the domain in force for it; all
    of them contain the current weights. ``details()`` reports per-task LID statistics.
    """

    def __init__(self, model: nn.Module, config: LIDLearnerConfig = LIDLearnerConfig(), seed: int = 0,
                 name: str | None = None):
        self.model, self.config, self.seed = model, config, int(seed)
        self.name = name or f"LID ({method_label(config.lid)})"
        self.backend = bounded_network(model)
        self.candidates: list[Candidate] = []
        self.outer: Orthotope | None = None
        self._pending: list[tuple[int, float, int]] = []   # (task, threshold, spec index) of the candidates
        self._excluded: dict[int, Tensor] = {}              # optimisation inputs per task
        self._certs: dict[int, Certificate] = {}
        self._opt_values: dict[int, float] = {}
        self.buffer = ReplayBuffer(config.replay.capacity, seed) if config.replay is not None else None
        self.lids: list[dict] = []
        self.replays: list[dict] = []

    # ------------------------------------------------------------------ the protocol
    def learn(self, t: int, tasks: Sequence[SplitTask]) -> None:
        """Steps 1-4 of the module docstring for task ``t``: projected training, adopt and certify the
        candidate in force, replay if configured, then a new LID for task ``t`` inside that domain."""
        task = tasks[t]
        chosen = self._train(t, tasks, replay=False)
        if chosen is not None:
            self._adopt(chosen, tasks, reset=False)
        if self.config.replay is not None and t > 0:
            self._maybe_replay(t, tasks)
        if self.buffer is not None:
            self.buffer.add(t, task.train.x, task.train.y)
        if t < len(tasks) - 1 or self.config.last_task_lid:
            self._compute(t, tasks)

    def certificates(self) -> dict[int, Certificate]:
        """Task index → the certificate of the domain in force for it (all contain the current weights)."""
        return dict(self._certs)

    def details(self) -> dict:
        """Per-task LID statistics, replay calls, the values certified during optimisation, bound methods."""
        return {"lids": self.lids, "replays": self.replays,
                "optimisation_certified": dict(sorted(self._opt_values.items())),
                "method": self.config.lid.method, "certify_method": self.config.lid.final_method.value,
                "grow": self.config.lid.grow}

    # ------------------------------------------------------------------ steps
    def _train(self, t: int, tasks: Sequence[SplitTask], replay: bool) -> int | None:
        """Train on task ``t`` (projected if there are candidates); index of the candidate in force."""
        task, cfg = tasks[t], self.config
        opt = cfg.train.make_optimizer(self.model)
        after, proj = None, None
        if self.candidates:
            proj = ProjectedOptimizer(opt, self.model, self.candidates, cfg.strategy,
                                      criterion=lambda logits, y: head_loss(logits, y, task.head),
                                      generator=torch.Generator().manual_seed(self.seed * 1009 + t))
            proj.current = len(self.candidates) - 1  # as the paper: start in the last (largest) box
            after = lambda xb, yb: proj.project_((xb, yb))  # noqa: E731
        fit(self.model, task.train, cfg.train, head=task.head, seed=self.seed * 1009 + t + (500 if replay else 0),
            optimizer=opt, after_step=after, replay=self.buffer if replay else None,
            replay_heads=lambda k: tasks[k].head)
        return None if proj is None else proj.current

    def _adopt(self, index: int, tasks: Sequence[SplitTask], reset: bool) -> None:
        """The candidate ``index`` is now in force: certify it for the tasks it was computed for."""
        chosen = self.candidates[index]
        self.outer = chosen.domain
        if reset:
            self._certs.clear()
            self._opt_values.clear()
        for k, tau, i in self._pending:
            task = tasks[k]
            held_out = CertifiedAccuracy(task.cert.x, task.cert.y, task.num_outputs, tau, classes=task.head,
                                         name=f"task {k} held-out")
            self._certs[k] = certify(self.model, chosen, held_out, chosen.method, self.config.delta,
                                     backend=self.backend, exclude=self._excluded[k],
                                     label=f"task {k}: LID candidate at iteration {chosen.iteration}")
            self._opt_values[k] = chosen.hard_values[i]

    def _free(self, spec_tasks: Sequence[SplitTask], t: int, tasks: Sequence[SplitTask],
              bias: FreezingPolicy | None) -> tuple[dict[str, Tensor] | None, dict[str, Tensor] | None]:
        """``free=`` masks for compute_lid (bias ∧ head rows) and the head rows to widen afterwards."""
        params = dict(self.model.named_parameters())
        frozen = {n: torch.zeros_like(p, dtype=torch.bool) for n, p in params.items()}
        if bias is not None:
            src = tasks[t + 1] if bias.lookahead else tasks[t]
            frozen = bias.frozen(self.model, src.train.x, src.train.y, src.head)
        rows = None
        if self.config.widen_other_heads and all(s.setting == "TIL" for s in spec_tasks):
            used = sorted({c for s in spec_tasks for c in s.classes})
            name, layer = last_linear(self.model)
            other = torch.ones(layer.out_features, dtype=torch.bool)
            other[used] = False
            rows = {n: torch.zeros_like(p, dtype=torch.bool) for n, p in params.items()}
            rows[f"{name}.weight"] = other.unsqueeze(1).expand_as(layer.weight).clone()
            if layer.bias is not None:
                rows[f"{name}.bias"] = other.clone()
            frozen = {n: frozen[n] | rows[n] for n in frozen}
        if bias is None and rows is None:
            return None, None
        return {n: ~m for n, m in frozen.items()}, rows

    def _widen(self, candidates: list[Candidate], rows: dict[str, Tensor] | None,
               outer: Orthotope | None) -> list[Candidate]:
        if rows is None:
            return candidates
        w = self.config.lid.max_width
        out = []
        for c in candidates:
            d = c.domain
            lower = {n: torch.where(rows[n], torch.full_like(t, w), t) for n, t in d.lower.items()}
            upper = {n: torch.where(rows[n], torch.full_like(t, w), t) for n, t in d.upper.items()}
            wide = Orthotope(d.reference, lower, upper)
            if outer is not None:
                wide = wide.clip_to(outer)
            out.append(replace(c, domain=wide, mean_width=float(wide.mean_width()),
                               log_volume=float(wide.log_volume())))
        return out

    def _feasible(self, specs: list[CertifiedAccuracy]) -> list[CertifiedAccuracy]:
        """Cap each threshold by the certified value at width 0 (the current weights), in the arithmetic
        the LID checks its candidates in."""
        zero = Orthotope.around(self.model)
        lid = self.config.lid
        vals = hard_values(self.backend, specs, zero, lid.method, lid.batch_size, lid.eval_dtype)
        return [s.with_threshold(min(s.threshold, v)) for s, v in zip(specs, vals)]

    def _compute(self, t: int, tasks: Sequence[SplitTask]) -> None:
        task, cfg = tasks[t], self.config
        started = time.perf_counter()
        spec = CertifiedAccuracy(task.lid.x, task.lid.y, task.num_outputs, 0.0, classes=task.head,
                                 name=f"task {t} LID items")
        acc = spec.nominal_value(self.model)
        spec = self._feasible([spec.with_threshold(threshold_from_accuracy(acc, cfg.increment, cfg.limit))])[0]
        bias = cfg.bias if cfg.bias is not None and (not cfg.bias.lookahead or t + 1 < len(tasks)) else None
        free, rows = self._free([task], t, tasks, bias)
        self._pending = [(t, spec.threshold, 0)]
        self._excluded[t] = task.lid.x
        frozen = 0 if free is None else sum(int((~m).sum()) for m in free.values())
        record = {"task": t, "accuracy_lid_items": acc, "tau": spec.threshold, "frozen_elements": frozen,
                  "bias": None if bias is None else bias.label}
        reused = self._trivial(spec)
        if reused is not None:  # the domain in force already meets τ (or τ = 0): keep it, as the paper's code
            self.candidates = [reused]
            self.lids.append({**record, "candidates": 1, "largest_mean_width": reused.mean_width,
                              "largest_hard": reused.hard_values[0], "reused_outer": True, "rollbacks": 0,
                              "lid_seconds": 0.0, "seconds": time.perf_counter() - started})
            return
        result = compute_lid(self.model, spec, cfg.lid, backend=self.backend, outer=self.outer, free=free,
                             label=f"task {t} LID")
        largest = result.largest()
        self.candidates = self._widen(result.candidates, rows, self.outer)
        self.lids.append({**record, "candidates": len(result.candidates), "largest_mean_width": largest.mean_width,
                          "largest_hard": largest.hard_values[0], "reused_outer": False,
                          "rollbacks": result.history["rollbacks"][-1] if result.history["rollbacks"] else 0,
                          "lid_seconds": result.seconds, "seconds": time.perf_counter() - started})

    def _trivial(self, spec: CertifiedAccuracy) -> Candidate | None:
        """The domain in force as the only candidate, if it already meets the threshold (``τ = 0``
        without a domain in force: the widest box, ``max_width`` on every element)."""
        cfg = self.config.lid
        if self.outer is None:
            if spec.threshold > 0:
                return None
            domain = Orthotope.around(self.model, lower=cfg.max_width)
        else:
            domain = self.outer
        value = hard_values(self.backend, [spec], domain, cfg.final_method, cfg.batch_size, cfg.eval_dtype)[0]
        if value < spec.threshold:
            return None
        return Candidate(domain=domain, iteration=0, hard_values=(value,), thresholds=(spec.threshold,),
                         spec_names=(spec.name,), method=cfg.final_method.value,
                         mean_width=float(domain.mean_width()), log_volume=float(domain.log_volume()),
                         label="domain in force reused")

    def _maybe_replay(self, t: int, tasks: Sequence[SplitTask]) -> None:
        rc, task = self.config.replay, tasks[t]
        acc = accuracy(self.model, task.lid, task.head)
        stored = [k for k in self.buffer.tasks if k < t]
        if acc >= rc.target or not stored:
            return
        taus = {}
        for k in stored:
            x, y = self.buffer.items(k, rc.k)
            a = accuracy(self.model, Split(x, y), tasks[k].head)
            taus[k] = threshold_from_accuracy(a, rc.increment)
        for call in range(rc.max_calls):
            started = time.perf_counter()
            specs = [CertifiedAccuracy(*self.buffer.items(k, rc.k), tasks[k].num_outputs, taus[k],
                                       classes=tasks[k].head, name=f"task {k} buffer") for k in stored]
            specs = self._feasible(specs)
            free, rows = self._free([tasks[k] for k in stored], t, tasks, None)
            result = compute_lid(self.model, specs, self.config.lid, backend=self.backend, free=free,
                                 label=f"replay {call} after task {t}")
            self.candidates = self._widen(result.candidates, rows, None)
            self._pending = [(k, s.threshold, i) for i, (k, s) in enumerate(zip(stored, specs))]
            for k in stored:
                self._excluded[k] = self.buffer.items(k, rc.k)[0]
            chosen = self._train(t, tasks, replay=True)
            self._adopt(chosen, tasks, reset=True)
            before, acc = acc, accuracy(self.model, task.lid, task.head)
            values = self.candidates[chosen].hard_values
            self.replays.append({"task": t, "call": call, "accuracy_before": before, "accuracy_after": acc,
                                 "taus": {k: s.threshold for k, s in zip(stored, specs)},
                                 "seconds": time.perf_counter() - started})
            if acc >= rc.target:
                break
            if acc - before < rc.min_gain:
                slack = [v - s.threshold for v, s in zip(values, specs)]
                k = stored[min(range(len(stored)), key=lambda i: slack[i])]
                taus[k] = max(0.0, taus[k] - rc.loosen)
