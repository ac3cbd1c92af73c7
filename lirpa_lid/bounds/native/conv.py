"""Bound operator for ``nn.Conv2d`` with an optional box on its kernel and bias.

auto_LiRPA has no weight perturbation for convolutions (``NotImplementedError`` in every version);
this operator supplies it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lirpa_lid.bounds.native.base import Op, Params, batch_dot
from lirpa_lid.bounds.native.bilinear import interval_product
from lirpa_lid.errors import ModelError

#: largest expanded kernel tensor of one grouped convolution in :meth:`ConvOp._kernel_coefficients`
MAX_ELEMENTS = 2 ** 24


class ConvOp(Op):
    """``z = conv(h, W) + b`` (groups = 1, zero padding).

    Backward (lower direction): each product ``W[o,c,k] h[c, l+k]`` is relaxed by the McCormick
    plane through ``h = hl`` (as for Linear). A kernel element is shared by all output positions, so
    its coefficient ``Cw[o,c,k] = Σ_l A[o,l] hl[c,l+k]`` is summed over positions *before* it is
    concretised (``Cw·Wc − |Cw|·Wr``): this is the exact minimum of the relaxed bound over the box.
    Altogether::

        A·z ≥ convᵀ(A, Wc)·h − convᵀ(|A|, Wr)·h + |A|·conv(hl, Wr) − |Cw|·Wr + (bias terms)
    """

    def __init__(self, name: str, module: nn.Conv2d, param_names: dict[str, str]):
        super().__init__(name)
        if module.groups != 1:
            raise ModelError(f"layer {name!r}: grouped convolutions are not supported by the native backend")
        if module.padding_mode != "zeros":
            raise ModelError(f"layer {name!r}: padding mode {module.padding_mode!r} is not supported "
                             "(only 'zeros')")
        if isinstance(module.padding, str):
            raise ModelError(f"layer {name!r}: string padding {module.padding!r} is not supported; "
                             "give explicit sizes")
        self.module = module
        self.param_names = param_names
        self.stride, self.padding, self.dilation = module.stride, module.padding, module.dilation
        self.kernel_size = module.kernel_size

    def _conv(self, x: Tensor, w: Tensor) -> Tensor:
        # channels-last activations: on CPU, mkldnn's kernels for the few output channels of the interval
        # products run ≈ 20 % faster with them (measured on the paper's CNN, float32)
        return F.conv2d(x.contiguous(memory_format=torch.channels_last), w, None, self.stride, self.padding,
                        self.dilation)

    def forward(self, x: Tensor, p: Params) -> Tensor:
        """The convolution at the parameter centres."""
        bias = p["bias"].center if "bias" in p else None
        return F.conv2d(x, p["weight"].center, bias, self.stride, self.padding, self.dilation)

    def interval(self, lo: Tensor, hi: Tensor, p: Params) -> tuple[Tensor, Tensor]:
        """Interval bounds ``[B, O, H', W']``: centre-radius form for a fixed kernel, the exact range of every
        product term (:func:`interval_product`) for a boxed one; plus the bias box."""
        w = p["weight"]
        if w.radius is None:
            mid, rad = (hi + lo) / 2, (hi - lo) / 2
            c, r = self._conv(mid, w.center), self._conv(rad, w.center.abs())
            lower, upper = c - r, c + r
        else:
            lower, upper = interval_product(lo, hi, w.lower, w.upper, self._conv, self._unfold, 1)
        if "bias" in p:
            lower = lower + p["bias"].lower.view(-1, 1, 1)
            upper = upper + p["bias"].upper.view(-1, 1, 1)
        return lower, upper

    def _unfold(self, x: Tensor) -> Tensor:
        return F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)

    def _conv_t(self, A: Tensor, w: Tensor, in_hw: tuple[int, int]) -> Tensor:
        """Adjoint of the convolution (maps output coefficients to input coefficients)."""
        out_hw = A.shape[-2:]
        full = [self.dilation[d] * (self.kernel_size[d] - 1) for d in range(2)]
        if self.stride == (1, 1) and all(self.padding[d] <= full[d] for d in range(2)):
            # stride 1: a plain convolution with the flipped, channel-swapped kernel (much faster on CPU)
            pad = tuple(full[d] - self.padding[d] for d in range(2))
            out = F.conv2d(A, w.transpose(0, 1).flip(-1, -2), None, 1, pad, self.dilation)
            return out[..., : in_hw[0], : in_hw[1]]
        pad = []
        for d in range(2):
            natural = ((out_hw[d] - 1) * self.stride[d] - 2 * self.padding[d]
                       + self.dilation[d] * (self.kernel_size[d] - 1) + 1)
            pad.append(in_hw[d] - natural)
        return F.conv_transpose2d(A, w, None, self.stride, self.padding, tuple(pad), 1, self.dilation)

    def transpose_full(self, A: Tensor, w: Tensor) -> Tensor:
        """Adjoint of the convolution without padding or cropping: ``[N, O, h, w] → [N, C, h', w']`` with
        ``h' = (h−1)·s + d·(k−1) + 1`` (every input position that the outputs read; windowed backward)."""
        return F.conv_transpose2d(A, w, None, self.stride, 0, 0, 1, self.dilation)

    def backward(self, A: Tensor, lo: Tensor, hi: Tensor, p: Params,
                 relax: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(A_in, const)`` by the relaxation in the class docstring: ``A_in`` ``[B, S, C, H, W]``,
        ``const`` ``[B, S]``."""
        B, S = A.shape[:2]
        flat = A.reshape(B * S, *A.shape[2:])
        in_hw = lo.shape[-2:]
        w = p["weight"]
        const = A.new_zeros(B, S)
        if w.radius is None:
            A_in = self._conv_t(flat, w.center, in_hw)
        else:
            # convᵀ(A, Wc) − convᵀ(|A|, Wr) as one adjoint over [A, |A|] stacked along channels: one
            # convolution with twice the channels costs about half as much as two on CPU
            A_abs = flat.abs()
            A_in = self._conv_t(torch.cat([flat, A_abs], 1), torch.cat([w.center, -w.radius]), in_hw)
            const = const + batch_dot(A_abs.reshape(A.shape), self._conv(lo, w.radius))
        return A_in.reshape(B, S, *lo.shape[1:]), const + self._box_terms(A, lo, p)

    def concretise(self, A: Tensor, x: Tensor, p: Params) -> Tensor:
        """For a fixed input the backward step's ``A_in·x`` and ``|A|·conv(x, Wr)`` cancel to
        ``A·conv(x, Wc)``: no adjoint convolutions of the ``B·S`` coefficient maps are needed."""
        return batch_dot(A, self._conv(x, p["weight"].center)) + self._box_terms(A, x, p)

    def _kernel_coefficients(self, A: Tensor, x: Tensor) -> Tensor:
        """``Cw[b, s, (o, c, k)] = Σ_y A[b, s, o, y]·x[b, c, y·stride + k·dilation]`` (x zero-padded): ``[B, S,
        O·C·K]`` in the weight's element order.

        One grouped convolution per chunk of items, the coefficient maps as kernels (one group per item and
        input channel; stride and dilation swap roles): about twice as fast as unfolding every patch and
        multiplying, which materialises ``C·K`` copies of the input."""
        B, S, O, Ho, Wo = A.shape
        C = x.shape[1]
        (ph, pw), (kh, kw) = self.padding, self.kernel_size
        x = F.pad(x, (pw, pw, ph, ph))
        chunk = max(1, MAX_ELEMENTS // (C * S * O * Ho * Wo))
        out = []
        for s in range(0, B, chunk):
            a, xs = A[s:s + chunk], x[s:s + chunk]
            n = a.shape[0]
            kernels = a.reshape(n, 1, S * O, Ho, Wo).expand(n, C, S * O, Ho, Wo).reshape(n * C * S * O, 1, Ho, Wo)
            cw = F.conv2d(xs.reshape(1, n * C, *xs.shape[-2:]), kernels, None, self.dilation, 0, self.stride, n * C)
            cw = cw[..., :kh, :kw].reshape(n, C, S, O, kh * kw)
            out.append(cw.permute(0, 2, 3, 1, 4).reshape(n, S, O * C * kh * kw))
        return torch.cat(out)

    def _box_terms(self, A: Tensor, lo: Tensor, p: Params) -> Tensor:
        """``−|Cw|·Wr`` (kernel coefficients summed over positions, then concretised) and the bias terms."""
        B, S = A.shape[:2]
        w = p["weight"]
        const = A.new_zeros(B, S)
        if w.radius is not None:
            const = const - self._kernel_coefficients(A, lo).abs().matmul(w.radius.reshape(-1))
        if "bias" in p:
            b = p["bias"]
            per_channel = A.sum(dim=(-2, -1))  # [B, S, O]
            const = const + per_channel.matmul(b.center)
            if b.radius is not None:
                const = const - per_channel.abs().matmul(b.radius)
        return const
