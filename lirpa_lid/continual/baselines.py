"""Baseline continual learners (the paper's comparisons), all on :func:`~lirpa_lid.continual.training.fit`.

* :class:`FineTune` — plain sequential training ("SGD" in the paper; Adam by default, as its code).
* :class:`EWC` — elastic weight consolidation: ``λ/2 Σ_k Σ_i F_k,i (θ_i − θ*_k,i)²`` with one diagonal
  Fisher ``F_k`` per earlier task (the paper's variant: squared gradient of the mean loss on one batch).
* :class:`LwF` — learning without forgetting: distillation of each earlier task's snapshot on that
  task's classes at temperature ``T`` (the paper's form: ``−λ Σ_items Σ_{o ∈ old classes} p_old,o log p_new,o``).
* :class:`AGEM` — averaged gradient episodic memory: if the gradient conflicts with the gradient on a
  memory batch (negative dot product) it is projected onto the half-space where it does not.
* :class:`IntervalCL` — interval continual learning in the style of InterContiNet: training keeps the
  weights in a box; after each task the box is shrunk around the new weights (inside the previous
  box) by gradient descent on the worst-case (IBP) loss until the task's IBP certified accuracy on
  its LID items reaches its threshold; each box is certified on held-out items, like a LID.

Default hyperparameters are the paper's (its ``configs/`` and wrapper): baselines Adam lr 0.01,
batch 128, 5 epochs; EWC λ = 1e6, Fisher batch 64; LwF T = 2; A-GEM memory 3750 items per task,
batch 256, 3 epochs, lr 1e-3; InterContiNet lr 0.01, batch 128.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lirpa_lid.bounds.resolve import bounded_network
from lirpa_lid.certificate.certify import Certificate, certify
from lirpa_lid.continual.importance import fisher_diagonal
from lirpa_lid.continual.replay import ReplayBuffer
from lirpa_lid.continual.tasks import SplitTask
from lirpa_lid.continual.training import TrainConfig, fit, head_logits, head_loss
from lirpa_lid.domains.orthotope import Orthotope
from lirpa_lid.margin import compute_margins, hard_values, largest_scale
from lirpa_lid.specification.accuracy import CertifiedAccuracy
from lirpa_lid.specification.base import threshold_from_accuracy

BASELINE_TRAIN = TrainConfig(epochs=5, batch_size=128, lr=0.01)
AGEM_TRAIN = TrainConfig(epochs=3, batch_size=256, lr=1e-3)


class FineTune:
    """Sequential training with no protection ("SGD")."""

    def __init__(self, model: nn.Module, train: TrainConfig = BASELINE_TRAIN, seed: int = 0, name: str = "SGD"):
        self.model, self.train, self.seed, self.name = model, train, int(seed), name

    def penalty(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor | None:
        return None

    def before_step(self) -> None:
        return None

    def learn(self, t: int, tasks: Sequence[SplitTask]) -> None:
        task = tasks[t]
        fit(self.model, task.train, self.train, head=task.head, seed=self.seed * 1009 + t,
            penalty=self._penalty if t > 0 else None, before_step=self._before if t > 0 else None)
        self.after_task(t, tasks)

    def _penalty(self, model, x, y):
        p = self.penalty(model, x, y)
        return x.new_zeros(()) if p is None else p

    def _before(self) -> None:
        self.before_step()

    def after_task(self, t: int, tasks: Sequence[SplitTask]) -> None:
        return None

    def certificates(self) -> dict[int, Certificate]:
        return {}


# ------------------------------------------------------------------------------- EWC
def ewc_penalty(model: nn.Module, anchors: Sequence[tuple[dict[str, Tensor], dict[str, Tensor]]],
                lmbd: float) -> Tensor:
    """``λ/2 Σ_(F, θ*) Σ_i F_i (θ_i − θ*_i)²`` over the anchors (one per earlier task); 0 at every θ*."""
    params = dict(model.named_parameters())
    total = next(iter(params.values())).new_zeros(())
    for fisher, star in anchors:
        for n, f in fisher.items():
            total = total + (f * (params[n] - star[n]) ** 2).sum()
    return lmbd / 2 * total


class EWC(FineTune):
    def __init__(self, model: nn.Module, lmbd: float = 1e6, fisher_batch: int = 64, fisher_mode: str = "batch",
                 train: TrainConfig = BASELINE_TRAIN, seed: int = 0, name: str = "EWC"):
        super().__init__(model, train, seed, name)
        self.lmbd, self.fisher_batch, self.fisher_mode = lmbd, fisher_batch, fisher_mode
        self.anchors: list[tuple[dict[str, Tensor], dict[str, Tensor]]] = []

    def penalty(self, model, x, y):
        return ewc_penalty(model, self.anchors, self.lmbd)

    def after_task(self, t, tasks):
        task = tasks[t]
        g = torch.Generator().manual_seed(self.seed * 1009 + t)
        idx = torch.randperm(len(task.train), generator=g)[:self.fisher_batch]
        fisher = fisher_diagonal(self.model, task.train.x[idx], task.train.y[idx], task.head, self.fisher_mode)
        self.anchors.append((fisher, {n: p.detach().clone() for n, p in self.model.named_parameters()}))


# ------------------------------------------------------------------------------- LwF
def distillation_loss(new_logits: Tensor, old_logits: Tensor, classes: Sequence[int], temperature: float,
                      restrict: bool) -> Tensor:
    """``−Σ_items Σ_{o ∈ classes} p_old,o · log p_new,o`` with softmax at ``temperature`` over the old
    task's classes (``restrict``: a masked task-incremental head) or over all outputs."""
    if restrict:
        new_logits, old_logits = head_logits(new_logits, classes), head_logits(old_logits, classes)
        cols = list(range(len(classes)))
    else:
        cols = list(classes)
    old_p = F.softmax(old_logits / temperature, dim=-1)
    new_lp = F.log_softmax(new_logits / temperature, dim=-1)
    return -(old_p[:, cols] * new_lp[:, cols]).sum()


class LwF(FineTune):
    def __init__(self, model: nn.Module, lmbd: float = 0.05, temperature: float = 2.0,
                 train: TrainConfig = BASELINE_TRAIN, seed: int = 0, name: str = "LwF"):
        super().__init__(model, train, seed, name)
        self.lmbd, self.temperature = lmbd, temperature
        self.snapshots: list[tuple[nn.Module, tuple[int, ...], bool]] = []

    def penalty(self, model, x, y):
        new = model(x)
        total = new.new_zeros(())
        for old_model, classes, restrict in self.snapshots:
            with torch.no_grad():
                old = old_model(x)
            total = total + distillation_loss(new, old, classes, self.temperature, restrict)
        return self.lmbd * total

    def after_task(self, t, tasks):
        snap = copy.deepcopy(self.model).eval()
        for p in snap.parameters():
            p.requires_grad_(False)
        task = tasks[t]
        self.snapshots.append((snap, tuple(task.classes) if task.head is not None else
                               tuple(sorted(set(task.train.y.tolist()))), task.head is not None))


# ------------------------------------------------------------------------------- A-GEM
def agem_project(g: Tensor, g_ref: Tensor) -> Tensor:
    """A-GEM: ``g`` if ``g·g_ref ≥ 0``, else ``g − (g·g_ref / ‖g_ref‖²) g_ref`` (then ``· g_ref = 0``)."""
    dot = torch.dot(g, g_ref)
    norm = torch.dot(g_ref, g_ref)
    if dot >= 0 or norm == 0:
        return g
    return g - (dot / norm) * g_ref


class AGEM(FineTune):
    def __init__(self, model: nn.Module, memory_per_task: int = 3750, ref_batch: int = 256,
                 train: TrainConfig = AGEM_TRAIN, seed: int = 0, name: str = "A-GEM"):
        super().__init__(model, train, seed, name)
        self.memory = ReplayBuffer(memory_per_task, seed)
        self.ref_batch = ref_batch
        self.generator = torch.Generator().manual_seed(self.seed)
        self.heads: dict[int, tuple[int, ...] | None] = {}
        self.projections = 0

    def before_step(self) -> None:
        if not len(self.memory):
            return
        params = [p for p in self.model.parameters() if p.grad is not None]
        g = torch.cat([p.grad.reshape(-1) for p in params])
        x, y, ids = self.memory.sample(self.ref_batch, self.generator)
        logits = self.model(x)
        loss = sum(head_loss(logits[ids == k], y[ids == k], self.heads[k]) * (ids == k).sum()
                   for k in ids.unique().tolist()) / len(ids)
        g_ref = torch.cat([gr.reshape(-1) for gr in torch.autograd.grad(loss, params)])
        new = agem_project(g, g_ref)
        self.projections += int(new is not g)
        start = 0
        for p in params:
            p.grad.copy_(new[start:start + p.numel()].view_as(p))
            start += p.numel()

    def after_task(self, t, tasks):
        self.memory.add(t, tasks[t].train.x, tasks[t].train.y)
        self.heads[t] = tasks[t].head


# ------------------------------------------------------------------------------- interval CL
class IntervalCL(FineTune):
    """InterContiNet-style interval continual learning (see module docstring).

    The first box is ``θ_init ± initial_radius``. After task ``t`` the box becomes
    ``θ_t ± σ(v) ⊙ d`` (``d``: distance of ``θ_t`` to the nearest face of the previous box, per element;
    ``v`` starts at ``v0``), with ``v`` trained by Adam (``lid_lr``) on the worst-case cross-entropy of
    IBP logit bounds on the LID items, stopped as soon as the IBP certified accuracy reaches
    ``τ = max(a − increment, a/2)``; if it never does within ``lid_steps``, the box is scaled towards
    ``θ_t`` (bisection) until it does. Certificates: IBP, on each task's held-out items.
    """

    def __init__(self, model: nn.Module, train: TrainConfig = BASELINE_TRAIN, initial_radius: float = 1.0,
                 increment: float = 0.05, lid_lr: float = 1.0, lid_steps: int = 1000, v0: float = 5.0,
                 delta: float = 0.05, seed: int = 0, name: str = "InterContiNet"):
        super().__init__(model, train, seed, name)
        self.increment, self.lid_lr, self.lid_steps, self.v0, self.delta = increment, lid_lr, lid_steps, v0, delta
        self.box = Orthotope.around(model, lower=float(initial_radius))
        self.backend = bounded_network(model)
        self._certs: dict[int, Certificate] = {}
        self.boxes: list[dict] = []

    def learn(self, t: int, tasks: Sequence[SplitTask]) -> None:
        task = tasks[t]
        self.box.project_(self.model)
        fit(self.model, task.train, self.train, head=task.head, seed=self.seed * 1009 + t,
            after_step=lambda xb, yb: self.box.project_(self.model))
        if t < len(tasks) - 1:
            self._shrink(t, task)

    def certificates(self) -> dict[int, Certificate]:
        return dict(self._certs)

    def details(self) -> dict:
        return {"boxes": self.boxes}

    def _shrink(self, t: int, task: SplitTask) -> None:
        spec = CertifiedAccuracy(task.lid.x, task.lid.y, task.num_outputs, 0.0, classes=task.head,
                                 name=f"task {t} LID items")
        acc = spec.nominal_value(self.model)
        zero = Orthotope.around(self.model)
        hard0 = hard_values(self.backend, [spec], zero, "IBP")[0]
        spec = spec.with_threshold(min(threshold_from_accuracy(acc, self.increment), hard0))
        theta = {n: p.detach().clone() for n, p in self.model.named_parameters()}
        bounds = self.box.exact_bounds()
        dist = {n: torch.minimum(theta[n].double() - bounds[n][0], bounds[n][1] - theta[n].double())
                .clamp(min=0).to(theta[n].dtype) for n in theta}
        v = {n: torch.full_like(t_, self.v0, requires_grad=True) for n, t_ in theta.items()}
        opt = torch.optim.Adam(list(v.values()), lr=self.lid_lr)
        steps = 0
        for steps in range(self.lid_steps):
            eps = {n: torch.sigmoid(v[n]) * dist[n] for n in theta}
            dom = Orthotope(theta, eps, eps)
            lower = compute_margins(self.backend, spec, dom, "IBP", batch_size=len(spec))
            if float(spec.hard_value(lower.detach())) >= spec.threshold:
                break
            z = torch.cat([torch.zeros_like(lower[:, :1]), -lower], dim=1)
            opt.zero_grad()
            torch.logsumexp(z, dim=1).mean().backward()
            opt.step()
        eps = {n: (torch.sigmoid(v[n]) * dist[n]).detach() for n in theta}
        box, scale = self._certified_scale(Orthotope(theta, eps, eps), spec)
        self.box = box.clip_to(self.box)
        held_out = CertifiedAccuracy(task.cert.x, task.cert.y, task.num_outputs, spec.threshold, classes=task.head,
                                     name=f"task {t} held-out")
        self._certs[t] = certify(self.model, self.box, held_out, "IBP", self.delta, backend=self.backend,
                                 exclude=task.lid.x, label=f"task {t}: interval box")
        self.boxes.append({"task": t, "tau": spec.threshold, "steps": steps, "scale": scale,
                           "mean_width": float(self.box.mean_width())})

    def _certified_scale(self, box: Orthotope, spec: CertifiedAccuracy, steps: int = 12) -> tuple[Orthotope, float]:
        """``box`` if it meets τ (float64 IBP), else the largest tested ``s·box`` that does (``s = 0``: θ₀)."""
        found = largest_scale(self.backend, [spec], box, "IBP", steps)
        scale = 0.0 if found is None else found[0]
        return box.scaled(scale), scale
