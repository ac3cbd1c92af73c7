"""SHA-256 digests: of named tensors (weights), labelled data, what a model fixes besides a domain, and
files. One implementation for certificates, specifications and the pipeline, so that digests written by
one are recomputed identically by the others."""
from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn


def named_parameter_values(source: nn.Module | Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Parameter tensors by name, from a module (its named parameters) or a mapping."""
    if isinstance(source, nn.Module):
        return dict(source.named_parameters())
    return dict(source)


def _sha() -> hashlib._Hash:
    return hashlib.sha256()


def _feed(h, name: str, t: Tensor, dtype: torch.dtype) -> None:
    t = t.detach().to("cpu", dtype).contiguous()
    if t.is_floating_point():
        t = t + 0.0  # -0.0 and 0.0 are the same value (ONNX round trips turn one into the other)
    h.update(f"{name}|{tuple(t.shape)}|{str(dtype)}|".encode())
    h.update(t.numpy().astype(t.numpy().dtype.newbyteorder("<"), copy=False).tobytes())


def digest_weights(params: nn.Module | Mapping[str, Tensor]) -> str:
    """SHA-256 of named tensors: names in sorted order, shapes, float64 little-endian bytes."""
    values = named_parameter_values(params)
    h = _sha()
    for name in sorted(values):
        _feed(h, name, values[name], torch.float64)
    return h.hexdigest()


def digest_data(x: Tensor, y: Tensor) -> str:
    """SHA-256 of a labelled set: x as float64, y as int64 (little-endian, with shapes)."""
    h = _sha()
    _feed(h, "x", x, torch.float64)
    _feed(h, "y", y, torch.int64)
    return h.hexdigest()


def digest_frozen(model: nn.Module, boxed: Sequence[str]) -> str:
    """SHA-256 of everything the bounds read from the model besides the domain: its module structure
    (``repr``), the parameters not in the domain (values), the names and shapes of all parameters, and
    the floating-point buffers."""
    h = _sha()
    h.update(f"architecture|{type(model).__name__}|{model!r}|".encode())
    boxed = set(boxed)
    params = dict(model.named_parameters())
    for name in sorted(params):
        if name in boxed:
            h.update(f"boxed|{name}|{tuple(params[name].shape)}|".encode())
        else:
            _feed(h, name, params[name], torch.float64)
    for name, buf in sorted(model.named_buffers()):
        if buf.is_floating_point():
            _feed(h, "buffer:" + name, buf, torch.float64)
    return h.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (read in 1 MiB chunks)."""
    h = _sha()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
