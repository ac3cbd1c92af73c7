"""Windowed ("patch") backward passes: CROWN bounds of convolutional neurons over their receptive fields.

Why: intermediate CROWN bounds take one backward pass per neuron of a node. Through convolutions, the
coefficients of one neuron are non-zero only on a small window of every earlier node (its receptive
field), but a dense pass carries them over the whole node — for the paper's Split-MNIST CNN, 8×26×26
numbers per neuron of which 8×5×5 can be non-zero. Here every row carries only its window, and each
convolution step is one matrix product with the convolution written out on the window.

Geometry. Rows are neurons ``(c, i, j)`` of the start node. On an earlier node the coefficients of the row
at ``(i, j)`` live in a window ``[C, h, w]`` whose top-left corner is ``(i·st − pt, j·st − pt)`` (stride and
offset per dimension, accumulated along the path). At the start node the window is ``[C, 1, 1]`` (one-hot
over ``c``), ``st = 1``, ``pt = 0``; a convolution (stride s, padding p, dilation d, kernel k) turns a window
of height h on its output into one of height ``(h−1)s + d(k−1) + 1`` on its input, ``st·s``, ``pt·s + p``;
element-wise operators keep it. Window positions outside the node (a convolution's zero padding) multiply
constant zeros: their coefficients are zeroed right after the convolution step.

Every step is the operator's dense backward step restricted to the window — the relaxations of
``ActivationOp.relaxation`` (computed once for the whole node, then gathered), the McCormick weight terms of
``ConvOp.backward``, the same concretisation — so the bounds equal the dense pass's up to rounding
(``NativeBoundedNetwork(windowed=False)`` keeps the dense pass; the tests compare the two). Two rewritings
are exact identities, not relaxations: for a 1×1 output window the weight term is the Linear layer's
``|A|·Wr·(lo − |lo|)``; and a convolution applied to a fixed input (no input box) is concretised at once,
``A_in·x + (Mrᵀ|A|)·x = A·conv(x, Wc)``.

Layout. Coefficients are ``[P, R, 2, B']``: P the flattened window ``(c, u, v)``, R rows, lower/upper
(``A`` and ``−A``), batch last (``B' = 1`` while they do not depend on the input yet); constants are
``[R, 2, B]``. Node tensors are zero-padded and stored as ``[C·Hp·Wp, k·B]``, so gathering windows copies
contiguous batch rows.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from lirpa_lid.bounds.native.activation import ActivationOp
from lirpa_lid.bounds.native.affine import AffineOp
from lirpa_lid.bounds.native.base import Op, Params
from lirpa_lid.bounds.native.conv import ConvOp

#: largest convolution-on-a-window matrix (elements); a path that needs a larger one stays dense
MAX_MATRIX_ELEMENTS = 2 ** 24


@dataclass(frozen=True)
class Window:
    """Where a row's coefficients live on one node: ``size`` (h, w); the row at ``(i, j)`` starts at
    ``(i·stride[0] − offset[0], j·stride[1] − offset[1])``."""

    size: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    offset: tuple[int, int] = (0, 0)

    def before(self, op: ConvOp) -> Window:
        """The window on the input of ``op`` whose outputs fill this window."""
        s, p, d, k = op.stride, op.padding, op.dilation, op.kernel_size
        return Window(tuple((self.size[a] - 1) * s[a] + d[a] * (k[a] - 1) + 1 for a in range(2)),
                      tuple(self.stride[a] * s[a] for a in range(2)),
                      tuple(self.offset[a] * s[a] + p[a] for a in range(2)))


@dataclass(frozen=True)
class Rows:
    """Positions ``(i, j)`` on the start node of the rows of one chunk: ``[R]`` each."""

    i: Tensor
    j: Tensor


class _Grid:
    """One node ``[C, H, W]`` seen through a window, for rows anywhere on a start node of size ``start_hw``."""

    def __init__(self, shape: tuple[int, ...], window: Window, start_hw: tuple[int, ...], device: torch.device):
        self.C, self.H, self.W = shape
        self.window, self.device = window, device
        h, w = window.size
        st, pt = window.stride, window.offset
        # pad so that the window of the row at (i, j) starts at (i·st, j·st) of the padded node
        self.pad = [(pt[a], max(0, (start_hw[a] - 1) * st[a] - pt[a] + window.size[a] - shape[1 + a]))
                    for a in range(2)]
        self.Hp, self.Wp = self.H + sum(self.pad[0]), self.W + sum(self.pad[1])
        self.P = self.C * h * w
        c, u, v = torch.meshgrid(*(torch.arange(n, device=device) for n in (self.C, h, w)), indexing="ij")
        self._u, self._v = u.reshape(-1), v.reshape(-1)
        self.offsets = (c * self.Hp * self.Wp + u * self.Wp + v).reshape(-1)  # [P]

    def layout(self, tensors: list[Tensor]) -> Tensor:
        """``[B', C, H, W]`` tensors (same B') zero-padded and stacked as ``[C·Hp·Wp, k·B']``."""
        (top, bottom), (left, right) = self.pad
        t = F.pad(torch.cat(tensors, 0), (left, right, top, bottom))
        return t.reshape(t.shape[0], -1).t().contiguous()

    def gather(self, laid: Tensor, rows: Rows, offsets: Tensor | None = None) -> Tensor:
        """Entries ``offsets`` (default: the window, ``[P]``) of every row: ``[*offsets.shape, R, k·B']``."""
        offsets = self.offsets if offsets is None else offsets
        base = rows.i * self.window.stride[0] * self.Wp + rows.j * self.window.stride[1]
        idx = offsets.reshape(-1, 1) + base
        return laid.index_select(0, idx.reshape(-1)).reshape(*offsets.shape, len(base), laid.shape[1])

    def windows(self, laid: Tensor, rows: Rows, k: int) -> list[Tensor]:
        """Windows of the ``k`` tensors stacked in ``laid``: ``k × [P, R, 1, B']``."""
        return list(self.gather(laid, rows).reshape(self.P, len(rows.i), k, 1, -1).unbind(2))

    def valid(self, rows: Rows) -> Tensor:
        """Which window positions lie inside the node (not in padding): ``[P, R, 1, 1]``."""
        r = rows.i[None, :] * self.window.stride[0] + self._u[:, None] - self.pad[0][0]
        c = rows.j[None, :] * self.window.stride[1] + self._v[:, None] - self.pad[1][0]
        return ((r >= 0) & (r < self.H) & (c >= 0) & (c < self.W))[:, :, None, None]

    def patch_offsets(self, op: ConvOp, out: Window) -> Tensor:
        """Offsets of the kernel patches of ``op`` for the outputs ``out`` (``F.unfold`` of this window as
        indices): ``[C·K, h_out·w_out]``."""
        s, d, k = op.stride, op.dilation, op.kernel_size
        c, k1, k2, q1, q2 = torch.meshgrid(*(torch.arange(n, device=self.device) for n in
                                             (self.C, *k, *out.size)), indexing="ij")
        flat = c * self.Hp * self.Wp + (q1 * s[0] + k1 * d[0]) * self.Wp + q2 * s[1] + k2 * d[1]
        return flat.reshape(self.C * k[0] * k[1], out.size[0] * out.size[1])


def window_matrix(op: ConvOp, w: Tensor, out: tuple[int, int, int]) -> Tensor:
    """The convolution with kernel ``w`` restricted to a window: ``M`` of shape ``[O·h·w, C·h'·w']``, ``Mᵀ``
    maps output-window coefficients to input-window coefficients (transposed convolution of unit vectors)."""
    n = math.prod(out)
    eye = torch.eye(n, dtype=w.dtype, device=w.device).reshape(n, *out)
    return op.transpose_full(eye, w).reshape(n, -1)


def windowable(ops: list[Op], shapes: list[tuple[int, ...]], start: int, stop: int) -> bool:
    """Whether the backward path from node ``start`` to node ``stop`` (``shapes[k]``: node k without batch)
    has only convolutions, activations and element-wise affine maps on ``[C, H, W]`` nodes, with
    window matrices of at most ``MAX_MATRIX_ELEMENTS``."""
    if any(len(shapes[k]) != 3 for k in range(stop, start + 1)):
        return False
    window = Window((1, 1))
    for k in range(start, stop, -1):
        op = ops[k - 1]
        if isinstance(op, ConvOp):
            before = window.before(op)
            matrix = shapes[k][0] * math.prod(window.size) * shapes[k - 1][0] * math.prod(before.size)
            if matrix > MAX_MATRIX_ELEMENTS:
                return False
            window = before
        elif not isinstance(op, (ActivationOp, AffineOp)):
            return False
    return True


class _ActivationStep:
    """``ActivationOp.backward`` on windows: slopes and intercepts gathered from the node's relaxation."""

    def __init__(self, op: ActivationOp, lo: Tensor, hi: Tensor, grid: _Grid):
        kl, bl, ku, bu = op.relaxation(lo, hi, None)
        self.lower_intercept = bool((bl != 0).any())  # never for ReLU
        self.grid, self.k = grid, 4 if self.lower_intercept else 3
        self.laid = grid.layout([kl, ku, bu, bl] if self.lower_intercept else [kl, ku, bu])

    def __call__(self, A: Tensor, const: Tensor, rows: Rows) -> tuple[Tensor, Tensor]:
        kl, ku, bu, *bl = self.grid.windows(self.laid, rows, self.k)
        const = const + (A.clamp(max=0) * bu).sum(0)
        if bl:
            const = const + (A.clamp(min=0) * bl[0]).sum(0)
        return A * torch.where(A >= 0, kl, ku), const


class _AffineStep:
    """``AffineOp.backward`` on windows."""

    def __init__(self, op: AffineOp, lo: Tensor, grid: _Grid):
        one = (1, *lo.shape[1:])  # constants broadcast against one row, as in AffineOp.backward
        self.divides = op.divisor is not None
        factor = op.divisor if self.divides else op.scale
        factor, shift = (torch.broadcast_to(t.to(lo.dtype), one) for t in (factor, op.shift))
        self.grid, self.laid = grid, grid.layout([factor, shift])

    def __call__(self, A: Tensor, const: Tensor, rows: Rows) -> tuple[Tensor, Tensor]:
        factor, shift = self.grid.windows(self.laid, rows, 2)
        return (A / factor if self.divides else A * factor), const + (A * shift).sum(0)


class _ConvStep:
    """``ConvOp.backward`` on windows (see the class docstring there)::

        A_in = Mcᵀ·A − Mrᵀ·|A|,   const += Σ (Mrᵀ·|A|)·lo − Σ |Cw|·Wr + bias terms,

    ``Σ (Mrᵀ|A|)·lo`` being ``|A|·conv(lo, Wr)`` and ``Cw[o,c,k] = Σ_q A[o,q]·lo[c, q·s + k·d]``. With
    ``onto_point`` (the input is the fixed network input, where the pass stops) the step concretises:
    ``A_in·x + Σ (Mrᵀ|A|)·x = Σ A·(Mc·x)``, and returns no coefficients.
    """

    def __init__(self, op: ConvOp, p: Params, lo: Tensor, out: Window, grid: _Grid, onto_point: bool):
        self.grid, self.p, self.onto_point = grid, p, onto_point
        self.out_channels = op.module.out_channels
        shape = (self.out_channels, *out.size)
        w = p["weight"]
        self.mc = window_matrix(op, w.center, shape)
        self.mr = None if w.radius is None else window_matrix(op, w.radius, shape)
        self.laid = grid.layout([lo]) if w.radius is not None or onto_point else None
        self.patches = grid.patch_offsets(op, out) if w.radius is not None else None

    def row_elements(self) -> int:
        """Elements of the largest tensor per row and batch element."""
        n = 2 * max(self.mc.shape)
        if self.patches is not None:
            n = max(n, self.patches.numel(), 2 * self.out_channels * self.patches.shape[0])
        return n

    def __call__(self, A: Tensor, const: Tensor, rows: Rows) -> tuple[Tensor | None, Tensor]:
        P, R, two, Bp = A.shape
        flat = A.reshape(P, -1)
        if self.onto_point:
            (x,) = self.grid.windows(self.laid, rows, 1)
            const = const + (A * (self.mc @ x.reshape(self.grid.P, -1)).reshape(P, R, 1, -1)).sum(0)
            A_in = None
        else:
            A_in = self.mc.t() @ flat
        if self.mr is not None:
            G = None
            if A_in is not None:
                G = self.mr.t() @ flat.abs()
                A_in = A_in - G
            const = const - self._radius_terms(A, G, rows)
        if "bias" in self.p:
            b = self.p["bias"]
            per_channel = A.reshape(self.out_channels, -1, R, two, Bp).sum(1)  # [O, R, 2, B']
            const = const + torch.einsum("orsb,o->rsb", per_channel, b.center)
            if b.radius is not None:
                const = const - torch.einsum("orsb,o->rsb", per_channel.abs(), b.radius)
        if A_in is not None:
            A_in = A_in.reshape(self.grid.P, R, two, Bp) * self.grid.valid(rows)
        return A_in, const

    def _radius_terms(self, A: Tensor, G: Tensor | None, rows: Rows) -> Tensor:
        """``Σ |Cw|·Wr − Σ G·lo``, ``G = Mrᵀ|A|`` (None onto a point, where ``G`` cancels): ``[R, 2, B]``."""
        P, R, two, Bp = A.shape
        O, wr = self.out_channels, self.p["weight"].radius.reshape(self.out_channels, -1)
        CK, Q = self.patches.shape
        cols = self.grid.gather(self.laid, rows, self.patches)  # [CK, Q, R, B]
        B = cols.shape[-1]
        if Q == 1:  # one output position: Σ G·lo = |A|·(Wr·cols) and Σ |Cw|·Wr = |A|·(Wr·|cols|)
            cols = cols.reshape(CK, -1)
            term = wr @ (cols.abs() if G is None else cols.abs() - cols)
            return (A.abs() * term.reshape(O, R, 1, B)).sum(0)
        # Cw per (row, batch element) by one batched product; contiguous operands (on a strided view
        # bmm loops over the batch)
        cols = cols.permute(2, 3, 1, 0).contiguous().reshape(R * B, Q, CK)
        A_rows = A.reshape(O, Q, R, two, Bp).expand(O, Q, R, two, B).permute(2, 4, 3, 0, 1)
        Cw = torch.bmm(A_rows.reshape(R * B, two * O, Q), cols).reshape(R, B, two, O * CK)
        out = (Cw.abs() @ wr.reshape(-1)).permute(0, 2, 1)
        if G is not None:
            (lo,) = self.grid.windows(self.laid, rows, 1)
            out = out - (G.reshape(self.grid.P, R, two, Bp) * lo).sum(0)
        return out


class _Concretise:
    """The stopping node: ``Σ A⁺·lo + A⁻·hi`` over the window (``hi`` None: a point, ``Σ A·lo``)."""

    def __init__(self, lo: Tensor, hi: Tensor | None, grid: _Grid):
        self.point = hi is None
        self.grid, self.laid = grid, grid.layout([lo] if self.point else [lo, hi])

    def __call__(self, A: Tensor, const: Tensor, rows: Rows) -> Tensor:
        if self.point:
            (x,) = self.grid.windows(self.laid, rows, 1)
            return const + (A * x).sum(0)
        lo, hi = self.grid.windows(self.laid, rows, 2)
        return const + (A.clamp(min=0) * lo + A.clamp(max=0) * hi).sum(0)


class WindowedPass:
    """Lower and upper CROWN bounds of neurons of node ``start`` by windowed backward passes to node
    ``stop`` (an exact box, or the input; ``point``: a single point, ``lo[stop] == hi[stop]``). Nodes
    ``lo[k]``/``hi[k]`` are ``[B, C, H, W]``.

    Built once per bounded node (relaxations, window matrices and padded node tensors are prepared once);
    :meth:`bounds` is called per chunk of rows.
    """

    def __init__(self, ops: list[Op], params: list[Params], lo: list[Tensor], hi: list[Tensor],
                 start: int, stop: int, point: bool):
        self.batch, self.start_shape, self.dtype = lo[start].shape[0], tuple(lo[start].shape[1:]), lo[start].dtype
        start_hw, device = self.start_shape[1:], lo[start].device
        window = Window((1, 1))
        self.steps: list = []
        self.row_elements = 2 * self.start_shape[0]  #: largest tensor per row and batch element
        for k in range(start, stop, -1):
            op, out = ops[k - 1], window
            if isinstance(op, ConvOp):
                window = window.before(op)
            grid = _Grid(tuple(lo[k - 1].shape[1:]), window, start_hw, device)
            self.row_elements = max(self.row_elements, 2 * grid.P)
            if isinstance(op, ConvOp):
                onto_point = point and k - 1 == stop
                step = _ConvStep(op, params[k - 1], lo[k - 1], out, grid, onto_point)
                self.row_elements = max(self.row_elements, step.row_elements())
            elif isinstance(op, ActivationOp):
                step = _ActivationStep(op, lo[k - 1], hi[k - 1], grid)
            else:
                step = _AffineStep(op, lo[k - 1], grid)
            self.steps.append(step)
        onto_point = isinstance(self.steps[-1], _ConvStep) and self.steps[-1].onto_point
        self.concretise = None if onto_point else _Concretise(lo[stop], None if point else hi[stop], grid)

    def bounds(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        """Bounds of the start node's (flat) neurons ``rows``: lower and upper, ``[B, R]`` each."""
        C, H, W = self.start_shape
        R = len(rows)
        A = torch.zeros(C, R, 2, 1, dtype=self.dtype, device=rows.device)
        r = torch.arange(R, device=rows.device)
        A[rows // (H * W), r, 0] = 1.0
        A[rows // (H * W), r, 1] = -1.0
        at = Rows(rows // W % H, rows % W)
        const = A.new_zeros(R, 2, self.batch)
        for step in self.steps:
            A, const = step(A, const, at)
        if self.concretise is not None:
            const = self.concretise(A, const, at)
        return const[:, 0].t(), -const[:, 1].t()
