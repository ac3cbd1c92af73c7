"""Small torch layers that imported models are normalised into (so every backend sees plain modules)."""
from __future__ import annotations

import torch
from torch import Tensor, nn


class ElementwiseAffine(nn.Module):
    """``y = x * scale + shift`` with constant (non-trainable) ``scale`` and ``shift``.

    Holds input normalisation (ONNX ``Sub``/``Div``/``Mul``/``Add`` by constants). ``scale`` and
    ``shift`` broadcast against one input row (no batch dimension).
    """

    def __init__(self, scale: Tensor | float = 1.0, shift: Tensor | float = 0.0):
        super().__init__()
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.get_default_dtype()).clone())
        self.register_buffer("shift", torch.as_tensor(shift, dtype=torch.get_default_dtype()).clone())

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale + self.shift

    def extra_repr(self) -> str:
        return f"scale_shape={tuple(self.scale.shape)}, shift_shape={tuple(self.shift.shape)}"
