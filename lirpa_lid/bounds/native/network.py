"""The native bound backend: IBP, CROWN, CROWN-IBP and α-CROWN over weight boxes, for chain networks.

Why a backward pass of our own instead of auto_LiRPA's ``compute_bounds`` (see also the README):
auto_LiRPA gives every perturbed weight a coefficient tensor of shape ``[spec, batch, *weight]``
(and ``[neurons, batch, *weight]`` for every intermediate bound), which for an MNIST MLP is gigabytes
per layer, and it has no weight perturbation for convolutions at all. Here each operator concretises
its own weight terms immediately (they are independent of everything else), so the backward pass
costs a few matrix products per layer, like CROWN without weight perturbation.

Two exact shortcuts keep it cheap and never loosen a bound:

* a node whose reachable set is a box with independent coordinates ("exact box": the input box, the
  output of a dense layer applied to a fixed input, and element-wise maps of such nodes) ends every
  backward pass — going further back cannot tighten anything;
* intermediate CROWN bounds are only computed for neurons of a following ReLU that IBP finds
  unstable (for a stable neuron the relaxation is exact whatever its bounds), and not at all for a
  node one layer away from an exact box (there IBP computes the exact range of every product term,
  which no linear relaxation of those terms can beat).

Intermediate bounds of a convolutional node whose backward path has only convolutions, activations
and element-wise affine maps take *windowed* passes (``window.py``): each neuron carries coefficients
only on its receptive field, not on whole nodes — the same bounds up to rounding, about 50 times faster
for the paper's CNN. ``windowed=False`` keeps every pass dense (the reference in the tests).

Final bounds are the element-wise tighter of the CROWN-family bound and IBP (under weight boxes CROWN
is sometimes looser than IBP).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from lirpa_lid.bounds.core import (
    AlphaOptions,
    BoundMethod,
    Bounds,
    InputBox,
    check_batch,
    check_model_finite,
    spec_matrix,
)
from lirpa_lid.bounds.native.activation import ReluOp
from lirpa_lid.bounds.native.base import Op, ParamBox, Params, batch_dot, pos_neg
from lirpa_lid.bounds.native.chain import build_chain
from lirpa_lid.bounds.native.window import WindowedPass, windowable
from lirpa_lid.domains.base import WeightDomain
from lirpa_lid.errors import DomainError


class NativeBoundedNetwork:
    """``model`` prepared for bounds over weight boxes (the chain is built once per input shape).

    ``max_chunk_elements`` caps the size of one coefficient tensor when intermediate bounds are
    computed for many neurons at once (rows are processed in chunks). ``windowed=False`` computes every
    intermediate bound by a dense backward pass (the reference for the windowed one; same bounds, slower).
    """

    follows_input_dtype = True
    bounds_convolution_weights = True
    differentiable = True

    def __init__(self, model: nn.Module, max_chunk_elements: int = 2 ** 25, windowed: bool = True):
        self.model = model
        self.max_chunk_elements = max_chunk_elements
        self.windowed = windowed
        self._chains: dict[tuple[int, ...], list[Op]] = {}

    def chain(self, input_shape: tuple[int, ...]) -> list[Op]:
        """The operator chain of the model for inputs ``[B, *input_shape]``, built once and cached."""
        key = tuple(input_shape)
        if key not in self._chains:
            self._chains[key] = build_chain(self.model, key)
        return self._chains[key]

    def boxable_parameters(self, input_shape: tuple[int, ...]) -> list[str]:
        """Names of the parameters that a weight domain may cover (Linear / Conv2d weights, biases)."""
        return [name for op in self.chain(input_shape) for name in op.param_names.values()]

    # ------------------------------------------------------------------ parameters
    def _params(self, ops: list[Op], domain: WeightDomain | None, dtype: torch.dtype) -> list[Params]:
        boxed = set(domain.names) if domain is not None else set()
        boxes = domain.center_radius(dtype) if domain is not None else {}
        used = set()
        out = []
        for op in ops:
            p = {}
            for role, pname in op.param_names.items():
                if pname in boxed:
                    centre, radius = boxes[pname]
                    if centre.shape != getattr(op.module, role).shape:
                        raise DomainError(f"domain parameter {pname!r} has shape {tuple(centre.shape)}, the "
                                          f"model's has {tuple(getattr(op.module, role).shape)}")
                    p[role] = ParamBox(centre, radius)
                    used.add(pname)
                else:
                    p[role] = ParamBox(getattr(op.module, role).to(dtype))
            out.append(p)
        unknown = boxed - used
        if unknown:
            raise DomainError(f"domain parameter(s) {sorted(unknown)} are not weights or biases of a "
                              f"Linear/Conv2d layer of the model; boxable: "
                              f"{[n for op in ops for n in op.param_names.values()]}")
        return out

    # ------------------------------------------------------------------ bounds
    def node_bounds(self, x: Tensor, domain: WeightDomain | None = None, input_box: InputBox | None = None,
                    crown_intermediate: bool = True) -> list[tuple[Tensor, Tensor]]:
        """Bounds ``(lo, hi)`` of every node of the chain over the domain (and input box), each
        ``[B, *node shape]``, node 0 being the input and node ``i`` the input of operator ``i``: IBP, with the
        inputs of activations tightened by CROWN when ``crown_intermediate`` (what CROWN and α-CROWN use
        internally). For exact encodings (big-M constants) and branching decisions; computed in ``x``'s
        dtype without directed rounding, like every bound of this backend."""
        check_batch(x, input_box)
        check_model_finite(self.model)
        ops = self.chain(tuple(x.shape[1:]))
        state = _Propagation(ops, self._params(ops, domain, x.dtype), x, input_box, self.max_chunk_elements,
                             self.windowed)
        state.forward(crown_intermediate=crown_intermediate)
        return list(zip(state.lo, state.hi))

    def compute_bounds(self, x: Tensor, domain: WeightDomain | None = None, C: Tensor | None = None,
                       method: BoundMethod | str = BoundMethod.CROWN, input_box: InputBox | None = None,
                       bound_upper: bool = True, alpha: AlphaOptions = AlphaOptions()) -> Bounds:
        """Bounds of ``C·f(x; θ)`` over θ in ``domain`` (and x in ``input_box``): ``[B, S]`` each."""
        method = BoundMethod.parse(method)
        check_batch(x, input_box)
        check_model_finite(self.model)
        ops = self.chain(tuple(x.shape[1:]))
        params = self._params(ops, domain, x.dtype)
        state = _Propagation(ops, params, x, input_box, self.max_chunk_elements, self.windowed)
        state.forward(crown_intermediate=method in (BoundMethod.CROWN, BoundMethod.ALPHA_CROWN))

        out_lo, out_hi = state.lo[-1].flatten(1), state.hi[-1].flatten(1)
        Cm = spec_matrix(C, x.shape[0], out_lo.shape[1], x)
        C_pos, C_neg = pos_neg(Cm)
        ibp_l = (C_pos @ out_lo.unsqueeze(-1) + C_neg @ out_hi.unsqueeze(-1)).squeeze(-1)
        ibp_u = (C_pos @ out_hi.unsqueeze(-1) + C_neg @ out_lo.unsqueeze(-1)).squeeze(-1)
        if method is BoundMethod.IBP:
            return Bounds(ibp_l, ibp_u if bound_upper else None)

        S = Cm.shape[1]
        A = Cm.reshape(Cm.shape[0], S, *state.lo[-1].shape[1:])
        if bound_upper:
            A = torch.cat([A, -A], dim=1)
        alphas = state.optimise_alpha(A, alpha) if method is BoundMethod.ALPHA_CROWN else None
        res = state.backward(A, len(ops), alphas)
        lower = torch.maximum(res[:, :S], ibp_l)
        upper = torch.minimum(-res[:, S:], ibp_u) if bound_upper else None
        return Bounds(lower, upper)


class _Propagation:
    """Bounds of every node of one chain for one batch and one domain.

    Node ``i`` is the input of operator ``i`` (node 0 is the network input, the last node its output).
    """

    def __init__(self, ops: list[Op], params: list[Params], x: Tensor, input_box: InputBox | None,
                 max_chunk_elements: int, windowed: bool = True):
        self.ops, self.params = ops, params
        self.max_chunk_elements = max_chunk_elements
        self.windowed = windowed
        if input_box is None:
            self.lo, self.hi = [x], [x]
        else:
            self.lo, self.hi = [input_box.lower.to(x.dtype)], [input_box.upper.to(x.dtype)]
        self.point = [input_box is None]
        self.exact = [True]

    def forward(self, crown_intermediate: bool) -> None:
        """IBP through the chain; with ``crown_intermediate``, tighten the inputs of activations by CROWN."""
        for i, op in enumerate(self.ops):
            lo, hi = op.interval(self.lo[i], self.hi[i], self.params[i])
            perturbed = any(pb.radius is not None for pb in self.params[i].values())
            point = self.point[i] and not perturbed
            exact = point or (op.elementwise and self.exact[i]) or (op.independent_rows and self.point[i])
            self.lo.append(lo)
            self.hi.append(hi)
            self.point.append(point)
            self.exact.append(exact)
            nxt = self.ops[i + 1] if i + 1 < len(self.ops) else None
            # one layer onto an exact box: IBP's exact per-term ranges are already at least as tight
            # as any linear relaxation of those terms, so CROWN can only help further from the box
            if crown_intermediate and nxt is not None and nxt.nonlinear and not exact and not self.exact[i]:
                self.lo[-1], self.hi[-1] = self._tighten(i + 1, relu_next=isinstance(nxt, ReluOp))

    def _tighten(self, node: int, relu_next: bool) -> tuple[Tensor, Tensor]:
        """CROWN bounds of node ``node`` intersected with its IBP bounds."""
        lo, hi = self.lo[node], self.hi[node]
        B, shape = lo.shape[0], lo.shape[1:]
        lo_f, hi_f = lo.flatten(1), hi.flatten(1)
        # before a ReLU only the neurons IBP finds unstable are tightened, item by item: a neuron unstable
        # for another item of the batch is bounded for all (one pass) but its bounds change only where it is
        # unstable, so an item's bounds never depend on what it is batched with
        wanted = (lo_f < 0) & (hi_f > 0) if relu_next else torch.ones_like(lo_f, dtype=torch.bool)
        rows = wanted.any(0).nonzero().flatten()
        if rows.numel() == 0:
            return lo, hi
        stop = self._stop(node)
        windows = None
        if self.windowed and windowable(self.ops, [tuple(t.shape[1:]) for t in self.lo], node, stop):
            windows = WindowedPass(self.ops, self.params, self.lo, self.hi, node, stop, self.point[stop])
            chunk = max(1, self.max_chunk_elements // (B * windows.row_elements))
        else:
            widest = max(math.prod(t.shape[1:]) for t in self.lo[: node + 1])
            chunk = max(1, self.max_chunk_elements // (2 * B * widest))
            eye = torch.eye(lo_f.shape[1], dtype=lo.dtype, device=lo.device)
        new_lo, new_hi = lo_f.clone(), hi_f.clone()
        for start in range(0, rows.numel(), chunk):
            idx = rows[start:start + chunk]
            if windows is not None:
                lower, upper = windows.bounds(idx)
            else:
                A = eye[idx].reshape(1, len(idx), *shape).expand(B, -1, *shape)
                res = self.backward(torch.cat([A, -A], dim=1), node, None)
                lower, upper = res[:, :len(idx)], -res[:, len(idx):]
            keep = wanted[:, idx]
            new_lo[:, idx] = torch.where(keep, torch.maximum(lo_f[:, idx], lower), lo_f[:, idx])
            new_hi[:, idx] = torch.where(keep, torch.minimum(hi_f[:, idx], upper), hi_f[:, idx])
        return new_lo.reshape(lo.shape), new_hi.reshape(hi.shape)

    def _stop(self, node: int) -> int:
        """The node where backward passes from ``node`` end: the nearest exact box at or before it."""
        while not self.exact[node]:
            node -= 1
        return node

    def backward(self, A: Tensor, end: int, alphas: dict[int, Tensor] | None,
                 lo: list[Tensor] | None = None, hi: list[Tensor] | None = None,
                 params: list[Params] | None = None) -> Tensor:
        """Lower bound of ``A·(node end)``, ``A`` of shape ``[B, S, *node shape]``: ``[B, S]``."""
        lo, hi, params = lo or self.lo, hi or self.hi, params or self.params
        const = A.new_zeros(A.shape[:2])
        i = end
        while not self.exact[i]:
            op = self.ops[i - 1]
            if self.exact[i - 1] and lo[i - 1] is hi[i - 1]:  # the last step, from a fixed input
                direct = op.concretise(A, lo[i - 1], params[i - 1])
                if direct is not None:
                    return const + direct
            relax = alphas.get(i - 1) if alphas else None
            A, c = op.backward(A, lo[i - 1], hi[i - 1], params[i - 1], relax)
            const = const + c
            i -= 1
        A_pos, A_neg = pos_neg(A)
        return const + batch_dot(A_pos, lo[i]) + batch_dot(A_neg, hi[i])

    def _relus_on_path(self, end: int) -> list[int]:
        out, i = [], end
        while not self.exact[i]:
            if isinstance(self.ops[i - 1], ReluOp):
                out.append(i - 1)
            i -= 1
        return out

    def optimise_alpha(self, A: Tensor, options: AlphaOptions) -> dict[int, Tensor]:
        """α-CROWN on the final bound: lower slopes of the ReLUs between the output and the nearest exact
        box, one per (input, specification row, neuron), optimised by Adam on the sum of the bounds
        (with the domain and the intermediate bounds held fixed); the best slopes per row are kept.
        """
        end = len(self.ops)
        relus = self._relus_on_path(end)
        if not relus or options.iterations <= 0:
            return {}
        lo = [t.detach() for t in self.lo]
        hi = [t.detach() for t in self.hi]
        params = [{k: ParamBox(v.center.detach(), None if v.radius is None else v.radius.detach())
                   for k, v in p.items()} for p in self.params]
        A = A.detach()
        rows = A.shape[1]
        alphas = {j: ReluOp.initial_alpha(lo[j], hi[j], rows).requires_grad_() for j in relus}
        best_alpha = {j: a.detach().clone() for j, a in alphas.items()}
        with torch.no_grad():
            best = self.backward(A, end, best_alpha, lo, hi, params)
        opt = torch.optim.Adam(list(alphas.values()), lr=options.lr)
        with torch.enable_grad():
            for _ in range(options.iterations):
                res = self.backward(A, end, alphas, lo, hi, params)
                improved = res.detach() > best
                best = torch.where(improved, res.detach(), best)
                for j, a in alphas.items():
                    mask = improved.reshape(*improved.shape, *([1] * (a.dim() - 2)))
                    best_alpha[j] = torch.where(mask, a.detach(), best_alpha[j])
                opt.zero_grad()
                (-res.sum()).backward()
                opt.step()
                with torch.no_grad():
                    for a in alphas.values():
                        a.clamp_(0, 1)
        return best_alpha
