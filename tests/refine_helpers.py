"""A tiny problem that CROWN cannot certify at θ₀ unsplit but input splitting can (``|z| − 0.9 z`` on a
box), as files a YAML config points to: shared by the pipeline and CLI tests of ``lid.refine``."""
from __future__ import annotations

from pathlib import Path

import numpy as np

HOOK = '''
import torch
from torch import nn


def abs_net():
    """y = ReLU(z) + ReLU(-z) - 0.9 ReLU(z + 10) + 9 = |z| - 0.9 z with z = x0 + x1/2."""
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.5], [-1.0, -0.5], [1.0, 0.5]]))
        net[0].bias.copy_(torch.tensor([0.0, 0.0, 10.0]))
        net[2].weight.copy_(torch.tensor([[1.0, 1.0, -0.9]]))
        net[2].bias.fill_(9.0)
    return net
'''
_HOOK_NAMESPACE: dict = {}
exec(HOOK, _HOOK_NAMESPACE)  # the same network the hook file builds, for tests that use it directly
abs_net = _HOOK_NAMESPACE["abs_net"]
LOWER, UPPER = np.array([-1.0, -1.0]), np.array([2.0, 1.0])


def vnnlib_text(d: float) -> str:
    """Unsafe iff ``Y_0 ≤ d`` on the box."""
    return ("(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n"
            "(assert (>= X_0 -1.0))\n(assert (<= X_0 2.0))\n(assert (>= X_1 -1.0))\n(assert (<= X_1 1.0))\n"
            f"(assert (<= Y_0 {d}))\n")


def write_case(folder: Path, d: float, lid: str = "") -> Path:
    """A hook module, a VNN-LIB file and a specification file in ``folder``; returns the spec file."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "absnet_hook.py").write_text(HOOK)
    (folder / "prop.vnnlib").write_text(vnnlib_text(d))
    spec = folder / "spec.yaml"
    spec.write_text("model:\n  name: Customized(\"absnet_hook\", \"abs_net\")\n  input_shape: [-1, 2]\n"
                    "specification:\n  vnnlib_path: prop.vnnlib\n"
                    "lid:\n  iterations: 30\n  primal_lr: 0.5\n  dual_lr: 0.1\n  snapshot_every: 10\n" + lid)
    return spec
