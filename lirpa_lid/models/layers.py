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
        scale, shift = torch.as_tensor(scale), torch.as_tensor(shift)
        dtype = torch.promote_types(*(t.dtype if t.is_floating_point() else torch.get_default_dtype()
                                      for t in (scale, shift)))
        scale, shift = torch.broadcast_tensors(scale.to(dtype), shift.to(dtype))
        self.register_buffer("scale", scale.clone())
        self.register_buffer("shift", shift.clone())

    def forward(self, x: Tensor) -> Tensor:
        """``x * scale + shift`` for ``x`` ``[B, *row_shape]``."""
        # auto_LiRPA 0.3 mishandles un-batched tensor constants in Add/Sub under CROWN: give tensors a
        # leading unit dimension, and scalars as Python numbers
        if self.scale.dim() == 0:
            return x * self.scale.item() + self.shift.item()
        return x * self.scale.unsqueeze(0) + self.shift.unsqueeze(0)

    def extra_repr(self) -> str:
        """Shapes of the constants, for ``print(model)``."""
        return f"scale_shape={tuple(self.scale.shape)}, shift_shape={tuple(self.shift.shape)}"
