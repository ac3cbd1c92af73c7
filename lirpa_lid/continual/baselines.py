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
from lirpa_lid.continual.heads import head_logits, head_loss
from lirpa_lid.continual.importance import fisher_diagonal
from lirpa_lid.continual.replay import ReplayBuffer
from lirpa_lid.continual.tasks import SplitTask
from lirpa_lid.continual.training import TrainConfig, fit
from lirpa_lid.domains.orthotope import Orthotope
from lirpa_lid.margin import compute_margins, hard_values, largest_scale
from lirpa_lid.specification.accuracy import CertifiedAccuracy, log_soft_scores
from lirpa_lid.specification.base import threshold_from_accuracy

BASELINE_TRAIN = TrainConfig(epochs=5, batch_size=128, lr=0.01)
AGEM_TRAIN = TrainConfig(epochs=3, batch_size=256, lr=1e-3)


class FineTune:
    """Sequential training with no protection ("SGD"), and the base of the other baselines.

    A subclass changes what happens around :func:`~lirpa_lid.continual.training.fit` through three
    hooks: :meth:`penalty` (an extra loss term from task 1 on), :meth:`before_step` (edits the
    gradients before each optimiser step, from task 1 on) and :meth:`after_task` (records what the
    next tasks need: anchors, snapshots, memory).
    """

    def __init__(self, model: nn.Module, train: TrainConfig = BASELINE_TRAIN, seed: int = 0, name: str = "SGD"):
        self.model, self.train, self.seed, self.name = model, train, int(seed), name

    def penalty(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor | None:
        """An extra loss on the minibatch ``(x, y)`` (None: nothing); fine-tuning adds none."""
        return None

    def before_step(self) -> None:
        """Edit the gradients in place before the optimiser step; fine-tuning leaves them."""
        return None

    def learn(self, t: int, tasks: Sequence[SplitTask]) -> None:
        """Train on ``tasks[t]`` with the hooks (from task 1 on), then :meth:`after_task`."""
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
        """Record what later tasks need after task ``t`` was learned; fine-tuning records nothing."""
        return None

    def certificates(self) -> dict[int, Certificate]:
        """No certificates: the baselines other than :class:`IntervalCL` certify nothing."""
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
    """Elastic weight consolidation (see module docstring): after each task a diagonal Fisher and the
    weights are kept as an anchor; later tasks pay :func:`ewc_penalty` for moving away from them."""

    def __init__(self, model: nn.Module, lmbd: float = 1e6, fisher_batch: int = 64, fisher_mode: str = "batch",
                 train: TrainConfig = BASELINE_TRAIN, seed: int = 0, name: str = "EWC"):
        super().__init__(model, train, seed, name)
        self.lmbd, self.fisher_batch, self.fisher_mode = lmbd, fisher_batch, fisher_mode
        self.anchors: list[tuple[dict[str, Tensor], dict[str, Tensor]]] = []

    def penalty(self, model, x, y):
        """``λ/2 Σ F (θ − θ*)²`` over the anchors of the earlier tasks."""
        return ewc_penalty(model, self.anchors, self.lmbd)

    def after_task(self, t, tasks):
        """Anchor task ``t``: the Fisher on ``fisher_batch`` seeded training items, and the weights."""
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
    """Learning without forgetting (see module docstring): a frozen snapshot after each task; later
    tasks pay ``λ`` times the distillation loss of every snapshot on the current minibatch."""

    def __init__(self, model: nn.Module, lmbd: float = 0.05, temperature: float = 2.0,
                 train: TrainConfig = BASELINE_TRAIN, seed: int = 0, name: str = "LwF"):
        super().__init__(model, train, seed, name)
        self.lmbd, self.temperature = lmbd, temperature
        self.snapshots: list[tuple[nn.Module, tuple[int, ...], bool]] = []

    def penalty(self, model, x, y):
        """``λ Σ_snapshots`` :func:`distillation_loss` of the snapshot's logits on ``x``."""
        new = model(x)
        total = new.new_zeros(())
        for old_model, classes, restrict in self.snapshots:
            with torch.no_grad():
                old = old_model(x)
            total = total + distillation_loss(new, old, classes, self.temperature, restrict)
        return self.lmbd * total

    def after_task(self, t, tasks):
        """Keep a frozen copy of the model with task ``t``'s classes (and whether its head is masked)."""
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
    """Averaged gradient episodic memory (see module docstring): a memory of items per earlier task;
    before each step the gradient is projected (:func:`agem_project`) against the memory gradient."""

    def __init__(self, model: nn.Module, memory_per_task: int = 3750, ref_batch: int = 256,
                 train: TrainConfig = AGEM_TRAIN, seed: int = 0, name: str = "A-GEM"):
        super().__init__(model, train, seed, name)
        self.memory = ReplayBuffer(memory_per_task, seed)
        self.ref_batch = ref_batch
        self.generator = torch.Generator().manual_seed(self.seed)
        self.heads: dict[int, tuple[int, ...] | None] = {}
        self.projections = 0

    def before_step(self) -> None:
        """Project the gradients in place against the gradient on a ``ref_batch`` memory sample."""
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
        """Store up to ``memory_per_task`` of task ``t``'s training items, and its head."""
        self.memory.add(t, tasks[t].train.x, tasks[t].train.y)
        self.heads[t] = tasks[t].head


# ------------------------------------------------------------------------------- interval CL
def worst_case_cross_entropy(lower: Tensor) -> Tensor:
    """Per item ``log(1 + Σ_j exp(−m_j))`` from margin lower bounds ``[n, R]``: a ``[n]`` tensor.

    With IBP margins ``m_j = z_y^low − z_j^up`` this is the cross-entropy of the worst-case logits
    (InterContiNet's loss). It is ``−log`` of :meth:`CertifiedAccuracy.soft_scores` at temperature 1,
    computed in log space: the soft score underflows to 0 for very negative margins, this does not.
    """
    return -log_soft_scores(lower, 1.0)


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
        """Train on task ``t`` projected into the current box; then (but for the last task) shrink the
        box around the new weights and certify it for task ``t``."""
        task = tasks[t]
        self.box.project_(self.model)
        fit(self.model, task.train, self.train, head=task.head, seed=self.seed * 1009 + t,
            after_step=lambda xb, yb: self.box.project_(self.model))
        if t < len(tasks) - 1:
            self._shrink(t, task)

    def certificates(self) -> dict[int, Certificate]:
        """Task index → the IBP certificate of the box in force for it (every box contains the weights)."""
        return dict(self._certs)

    def details(self) -> dict:
        """Per task: threshold, Adam steps, bisection scale and mean width of its box."""
        return {"boxes": self.boxes}

    def _shrink(self, t: int, task: SplitTask) -> None:
        """The box for task ``t``: radii grown by :meth:`_radii`, scaled until certified, nested in the
        previous box, certified on the task's held-out items."""
        spec = self._lid_spec(t, task)
        theta = {n: p.detach().clone() for n, p in self.model.named_parameters()}
        eps, steps = self._radii(theta, spec)
        box, scale = self._certified_scale(Orthotope(theta, eps, eps), spec)
        self.box = box.clip_to(self.box)
        held_out = CertifiedAccuracy(task.cert.x, task.cert.y, task.num_outputs, spec.threshold, classes=task.head,
                                     name=f"task {t} held-out")
        self._certs[t] = certify(self.model, self.box, held_out, "IBP", self.delta, backend=self.backend,
                                 exclude=task.lid.x, label=f"task {t}: interval box")
        self.boxes.append({"task": t, "tau": spec.threshold, "steps": steps, "scale": scale,
                           "mean_width": float(self.box.mean_width())})

    def _lid_spec(self, t: int, task: SplitTask) -> CertifiedAccuracy:
        """Certified accuracy on the LID items at ``τ = max(a − increment, a/2)``, capped by the IBP value
        at width 0 (so that the box ``θ_t`` itself meets it)."""
        spec = CertifiedAccuracy(task.lid.x, task.lid.y, task.num_outputs, 0.0, classes=task.head,
                                 name=f"task {t} LID items")
        acc = spec.nominal_value(self.model)
        hard0 = hard_values(self.backend, [spec], Orthotope.around(self.model), "IBP")[0]
        return spec.with_threshold(min(threshold_from_accuracy(acc, self.increment), hard0))

    def _radii(self, theta: dict[str, Tensor], spec: CertifiedAccuracy) -> tuple[dict[str, Tensor], int]:
        """Radii ``σ(v) ⊙ d`` after Adam on :func:`worst_case_cross_entropy` (stopped once ``spec`` holds
        under IBP), and the number of steps taken."""
        dist = {n: torch.minimum(*faces).to(theta[n].dtype) for n, faces in self.box.face_distances(theta).items()}
        v = {n: torch.full_like(t_, self.v0, requires_grad=True) for n, t_ in theta.items()}
        opt = torch.optim.Adam(list(v.values()), lr=self.lid_lr)
        steps = 0
        for steps in range(self.lid_steps):
            eps = {n: torch.sigmoid(v[n]) * dist[n] for n in theta}
            lower = compute_margins(self.backend, spec, Orthotope(theta, eps, eps), "IBP", batch_size=len(spec))
            if float(spec.hard_value(lower.detach())) >= spec.threshold:
                break
            opt.zero_grad()
            worst_case_cross_entropy(lower).mean().backward()
            opt.step()
        return {n: (torch.sigmoid(v[n]) * dist[n]).detach() for n in theta}, steps

    def _certified_scale(self, box: Orthotope, spec: CertifiedAccuracy, steps: int = 12) -> tuple[Orthotope, float]:
        """``box`` if it meets τ (float64 IBP), else the largest tested ``s·box`` that does (``s = 0``: θ₀)."""
        found = largest_scale(self.backend, [spec], box, "IBP", steps)
        scale = 0.0 if found is None else found[0]
        return box.scaled(scale), scale
