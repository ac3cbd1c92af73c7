"""The model zoo: every architecture lirpa_lid builds, once, named after what it is.

Every builder returns an untrained ``nn.Sequential`` of plain torch layers (what every bound backend
reads). Initialisation is torch's default, drawn from torch's *global* generator in layer order:
``seed=None`` uses the generator as it stands, an integer first calls ``torch.manual_seed(seed)``
(as every caller did before the zoo existed, so seeded models are bit-identical to theirs).

* :func:`mlp` — a fully connected ReLU network of given layer sizes (YAML ``mlp(sizes=[...])``);
* :func:`mnist_mlp` — :func:`mlp` on 28×28 images (Split-MNIST, the MNIST specification);
* :func:`blobs_mlp` — the blobs demo's 2-hidden-6 MLP (YAML ``blobs_mlp(hidden=...)``);
* :func:`paper_cnn` — the paper's Split-MNIST CNN (6,179 parameters for 10 outputs).

:data:`KNOWN_MODELS` maps the names a YAML ``model.name`` may use to their builders.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from lirpa_lid.errors import ModelError

MNIST_PIXELS = 28 * 28
BLOBS_FEATURES, BLOBS_CLASSES = 2, 6


def _seed(seed: int | None) -> None:
    """Reseed torch's global generator (the one ``nn.Linear``/``nn.Conv2d`` initialise from)."""
    if seed is not None:
        torch.manual_seed(seed)


def mlp(sizes: Sequence[int], seed: int | None = None) -> nn.Sequential:
    """``Flatten → Linear(sizes[0], sizes[1]) → ReLU → … → Linear(…, sizes[-1])`` (no ReLU at the end).

    Inputs ``[B, *shape]`` with ``prod(shape) = sizes[0]``; outputs ``[B, sizes[-1]]``.

    Raises:
        ModelError: ``sizes`` is not a list of at least two positive integers.
    """
    if not (isinstance(sizes, (list, tuple)) and len(sizes) >= 2 and all(isinstance(s, int) and s > 0 for s in sizes)):
        raise ModelError(f"mlp(sizes=...) needs a list of at least two positive layer sizes, got {sizes!r}")
    _seed(seed)
    layers: list[nn.Module] = [nn.Flatten()]
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
    return nn.Sequential(*layers)


def mnist_mlp(num_outputs: int = 10, hidden: Sequence[int] = (100,), seed: int | None = 0) -> nn.Sequential:
    """:func:`mlp` from 28×28 images: ``Flatten → [Linear → ReLU] per hidden width → Linear(→ outputs)``.

    Inputs ``[B, 1, 28, 28]`` (or ``[B, 784]``); outputs ``[B, num_outputs]``. 79,510 parameters with
    the default one hidden layer of 100 and 10 outputs.
    """
    return mlp([MNIST_PIXELS, *hidden, num_outputs], seed)


def blobs_mlp(hidden: int = 32, seed: int | None = None) -> nn.Sequential:
    """The blobs demo's MLP: ``Linear(2, hidden) → ReLU → Linear(hidden, 6)`` (no Flatten).

    Inputs ``[B, 2]`` (points of the six Gaussian blobs); outputs ``[B, 6]``. 294 parameters for
    ``hidden=32``.
    """
    _seed(seed)
    return nn.Sequential(nn.Linear(BLOBS_FEATURES, int(hidden)), nn.ReLU(), nn.Linear(int(hidden), BLOBS_CLASSES))


def paper_cnn(num_outputs: int = 10, seed: int | None = 0) -> nn.Sequential:
    """The paper's Split-MNIST CNN: ``Conv(1→8, k5, p1) → ReLU → Conv(8→1, k5, p1) → ReLU → Flatten →
    Linear(576→outputs)``.

    Inputs ``[B, 1, 28, 28]``; outputs ``[B, num_outputs]``; 6,179 parameters for 10 outputs.
    """
    _seed(seed)
    return nn.Sequential(nn.Conv2d(1, 8, 5, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 5, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(576, num_outputs))


#: the builders a YAML ``model.name`` may call by name (``mlp(sizes=[...])``, ``blobs_mlp(hidden=...)``)
KNOWN_MODELS: dict[str, Callable[..., nn.Module]] = {"mlp": mlp, "blobs_mlp": blobs_mlp}
