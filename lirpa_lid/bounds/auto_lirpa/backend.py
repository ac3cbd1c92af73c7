"""The auto_LiRPA bound backend: a ``BoundedModule`` whose boxed parameters are ``BoundedParameter``s.

A weight box ``[θ₀ − l, θ₀ + u]`` is given to auto_LiRPA as its centre ``θ₀ + (u − l)/2`` (the
parameter's value) with a per-element radius ``eps = (u + l)/2``: explicit per-element ``x_L/x_U``
on a parameter fails under CROWN in both 0.3 (shape mismatch, patched in ``compat.py`` for users who
need it) and 0.7.1 (einsum shape error), while centre + ``eps`` works in both. Gradients with respect
to ``l`` and ``u`` flow through both the centre and the radius (see ``_BoxBounds``). auto_LiRPA itself
is imported by ``compat.import_auto_lirpa`` only.
"""
from __future__ import annotations

import contextlib
import copy

import numpy as np
import torch
from torch import Tensor, nn

from lirpa_lid.bounds.auto_lirpa.compat import BOUND_OPTS, import_auto_lirpa, version
from lirpa_lid.bounds.core import (
    AlphaOptions,
    BoundMethod,
    Bounds,
    InputBox,
    check_batch,
    check_model_finite,
    spec_matrix,
)
from lirpa_lid.domains.base import WeightDomain
from lirpa_lid.errors import BackendError, DomainError, LirpaLidError


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype):
    """auto_LiRPA 0.3 creates some tensors (identity specifications, Tanh/Sigmoid tangent tables) in
    torch's default dtype; a float64 model needs them in float64."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


_METHOD_NAMES = {BoundMethod.IBP: "IBP", BoundMethod.CROWN: "CROWN", BoundMethod.CROWN_IBP: "CROWN-IBP",
                 BoundMethod.ALPHA_CROWN: "CROWN-Optimized"}


class LirpaBoundedNetwork:
    """``model`` wrapped in an auto_LiRPA ``BoundedModule`` whose boxed parameters are
    ``BoundedParameter``s. Built on the first call (auto_LiRPA needs an example input), then reused:
    each call only writes the new centre and radius into the existing perturbation objects.
    """

    follows_input_dtype = False  # built for the dtype of the first inputs; later calls must match it
    bounds_convolution_weights = False
    differentiable = True

    def __init__(self, model: nn.Module, params: list[str] | None = None):
        self.model = model
        self.params = None if params is None else list(params)
        self._bounded = None
        self._input_shape: tuple[int, ...] | None = None
        self._ptb: dict[str, object] = {}
        self._bparam: dict[str, nn.Parameter] = {}

    def _build(self, x: Tensor, names: list[str]) -> None:
        lirpa = import_auto_lirpa()
        convs = {f"{m}.{r}" for m, mod in self.model.named_modules() if isinstance(mod, nn.modules.conv._ConvNd)
                 for r in ("weight", "bias")}
        if convs & set(names):
            raise BackendError(f"auto_LiRPA has no weight perturbation for convolutions (parameters "
                               f"{sorted(convs & set(names))}); use backend='native'")
        model = copy.deepcopy(self.model).to(x.dtype)
        for name in names:
            *path, leaf = name.split(".")
            owner = model.get_submodule(".".join(path))
            value = getattr(owner, leaf)
            ptb = lirpa.PerturbationLpNorm(norm=np.inf, eps=torch.zeros_like(value.data))
            bparam = lirpa.BoundedParameter(value.data.clone(), ptb)
            delattr(owner, leaf)
            owner.register_parameter(leaf, bparam)
            self._ptb[name], self._bparam[name] = ptb, bparam
        try:
            with _default_dtype(x.dtype):
                self._bounded = lirpa.BoundedModule(model, torch.zeros_like(x[:1]), bound_opts=dict(BOUND_OPTS),
                                                    device=x.device.type)
        except Exception as exc:
            raise BackendError(f"auto_LiRPA could not build a bounded module for this model: {exc}; the native "
                               "backend (backend='native') may support it") from exc
        self.params, self._input_shape = list(names), tuple(x.shape[1:])

    def compute_bounds(self, x: Tensor, domain: WeightDomain | None = None, C: Tensor | None = None,
                       method: BoundMethod | str = BoundMethod.CROWN, input_box: InputBox | None = None,
                       bound_upper: bool = True, alpha: AlphaOptions = AlphaOptions()) -> Bounds:
        """Bounds of ``C·f(x; θ)`` over θ in ``domain`` (and x in ``input_box``): ``[B, S]`` each.

        Builds the bounded module on the first call (for the domain's parameters and the dtype and shape of
        ``x``); later calls must match them. ``domain=None`` bounds the model's own weights (width 0).
        auto_LiRPA failures are raised as :class:`BackendError`.
        """
        method = BoundMethod.parse(method)
        check_batch(x, input_box)
        check_model_finite(self.model)
        names = domain.names if domain is not None else (self.params or [])
        if self._bounded is None:
            self._build(x, names)
        elif tuple(x.shape[1:]) != self._input_shape:
            raise BackendError(f"this bounded network was built for inputs [B, {self._input_shape}], got "
                               f"{tuple(x.shape)}")
        if domain is not None and sorted(domain.names) != sorted(self.params):
            raise DomainError(f"domain covers {sorted(domain.names)} but this bounded network was built "
                              f"for {sorted(self.params)}")
        if domain is None:  # the model's own weights: width 0
            boxes = {n: (self._bparam[n].detach().to(x.dtype), torch.zeros_like(self._bparam[n], dtype=x.dtype))
                     for n in self.params}
        else:
            boxes = domain.center_radius(x.dtype)
        Cm = spec_matrix(C, x.shape[0], self._n_out(x), x)
        runner = _Runner(self, x, Cm, method, input_box, bound_upper, alpha)
        centre_radius = [boxes[n][0] for n in self.params] + [boxes[n][1] for n in self.params]
        with _reported_as_backend_error(method, input_box):
            if torch.is_grad_enabled() and any(t.requires_grad for t in centre_radius):
                lb, ub = _BoxBounds.apply(runner, *centre_radius)
            else:
                with torch.no_grad():
                    lb, ub = runner.run(centre_radius, need_graph=False)
        return Bounds(lb, ub if bound_upper else None)

    def _n_out(self, x: Tensor) -> int:
        dtype = next((p.dtype for p in self.model.parameters()), x.dtype)
        with torch.no_grad():
            return int(self.model(x[:1].to(dtype)).flatten(1).shape[1])


@contextlib.contextmanager
def _reported_as_backend_error(method: BoundMethod, input_box: InputBox | None):
    """auto_LiRPA's own failures (shape mismatches, assertions, unsupported operators in some method)
    become one :class:`BackendError` naming the method and pointing to the native backend."""
    try:
        yield
    except LirpaLidError:
        raise
    except Exception as exc:
        where = "with an input box" if input_box is not None else "with a fixed input"
        raise BackendError(
            f"auto_LiRPA {version()} cannot compute {method.value} bounds for this model {where} "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no message'}); this "
            "combination is not supported by the auto_lirpa backend. The native backend "
            "(backend='native') bounds chain networks of Linear/Conv2d/ReLU/Tanh/Sigmoid/BatchNorm/"
            "constant affine layers") from exc


class _Runner:
    """One bound computation with fixed inputs; ``run`` maps box offsets to bounds."""

    def __init__(self, net: LirpaBoundedNetwork, x, C, method, input_box, bound_upper, alpha):
        self.net, self.x, self.C, self.method = net, x, C, method
        self.input_box, self.bound_upper, self.alpha = input_box, bound_upper, alpha
        self.leaves: list[Tensor] = []

    def _bounded_input(self) -> Tensor:
        """The input: a plain tensor when fixed (a zero-width ``BoundedTensor`` sends 0.3 through code
        paths that fail on constants and element-wise layers), else a ``BoundedTensor`` over the box."""
        if self.input_box is None:
            return self.x
        lirpa = import_auto_lirpa()
        ptb = lirpa.PerturbationLpNorm(norm=np.inf, x_L=self.input_box.lower.to(self.x.dtype),
                                       x_U=self.input_box.upper.to(self.x.dtype))
        return lirpa.BoundedTensor(self.input_box.center().to(self.x.dtype), ptb)

    def run(self, centre_radius: list[Tensor], need_graph: bool) -> tuple[Tensor, Tensor]:
        """Set the boxes (``centre_radius``: centres..., radii...) and compute the bounds.

        With ``need_graph``, the centres and radii are fresh leaves (``self.leaves``, same order)
        whose gradients ``_BoxBounds.backward`` passes on.
        """
        with _default_dtype(self.x.dtype):
            return self._run(centre_radius, need_graph)

    def _run(self, centre_radius: list[Tensor], need_graph: bool) -> tuple[Tensor, Tensor]:
        net, names = self.net, self.net.params
        k = len(names)
        centres, radii = [], []
        for i, n in enumerate(names):
            bparam = net._bparam[n]
            with torch.no_grad():
                bparam.data.copy_(centre_radius[i])
            bparam.requires_grad_(need_graph)
            bparam.grad = None
            radius = centre_radius[k + i].detach().clone().requires_grad_(need_graph)
            net._ptb[n].eps = radius
            centres.append(bparam)
            radii.append(radius)
        self.leaves = centres + radii
        x = self._bounded_input()
        bm = net._bounded
        kw = dict(x=(x,), C=self.C, bound_upper=self.bound_upper)
        ibp_l, ibp_u = bm.compute_bounds(method="IBP", **kw)
        if self.method is BoundMethod.IBP:
            return ibp_l, ibp_u
        if self.method is BoundMethod.ALPHA_CROWN:
            bm.set_bound_opts({"optimize_bound_args": {"iteration": self.alpha.iterations,
                                                       "lr_alpha": self.alpha.lr}})
            with torch.enable_grad():  # the slope optimisation differentiates even when we do not
                opt_l, opt_u = bm.compute_bounds(method="CROWN-Optimized", **kw)
            # 0.3 returns α-CROWN bounds without a graph; recompute with the optimised slopes
            lb, ub = bm.compute_bounds(method="CROWN", reuse_alpha=True, **kw)
            lb = torch.maximum(lb, opt_l.detach())
            ub = torch.minimum(ub, opt_u.detach()) if self.bound_upper else None
        else:
            lb, ub = bm.compute_bounds(method=_METHOD_NAMES[self.method], **kw)
        lb = torch.maximum(lb, ibp_l)
        ub = torch.minimum(ub, ibp_u) if self.bound_upper else None
        return lb, ub


class _BoxBounds(torch.autograd.Function):
    """Bridge from box centres/radii to auto_LiRPA bounds: auto_LiRPA sees a centre as the value of a
    ``BoundedParameter`` (a leaf) and a radius as its ``eps``; the gradients with respect to those
    leaves are handed back to the centres and radii (and by autograd on to the offsets). The backward
    must run before the next bound computation on the same network (torch reports an in-place
    modification otherwise)."""

    @staticmethod
    def forward(ctx, runner: _Runner, *centre_radius: Tensor):
        with torch.enable_grad():
            lb, ub = runner.run(list(centre_radius), need_graph=True)
        ctx.runner, ctx.outputs = runner, (lb, ub)
        return lb.detach(), (ub.detach() if ub is not None else lb.new_zeros(0))

    @staticmethod
    def backward(ctx, grad_lb: Tensor, grad_ub: Tensor):
        lb, ub = ctx.outputs
        outs, grads = [lb], [grad_lb]
        if ub is not None and grad_ub.numel():
            outs.append(ub)
            grads.append(grad_ub)
        outs_g = [(o, g) for o, g in zip(outs, grads) if o.requires_grad]
        leaves = ctx.runner.leaves
        if not outs_g:
            return (None,) + tuple(torch.zeros_like(t) for t in leaves)
        runner = ctx.runner
        with _reported_as_backend_error(runner.method, runner.input_box):  # auto_LiRPA's graph, differentiated
            g = torch.autograd.grad([o for o, _ in outs_g], leaves, [g for _, g in outs_g], allow_unused=True)
        return (None, *(torch.zeros_like(t) if gi is None else gi for gi, t in zip(g, leaves)))
