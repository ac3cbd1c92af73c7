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


def frozen_parts(model: nn.Module, boxed: Sequence[str]) -> dict[str, dict]:
    """Per tensor, what :func:`digest_frozen` covers as a whole, so that a mismatch can be named: for
    ``"architecture"`` (module structure, boxed names and shapes) a SHA-256; for every parameter outside
    the domain and every floating-point buffer (``"buffer:<name>"``) its SHA-256, shape and float64 L2 norm
    (the norm of the difference of two tensors is at least the difference of their norms)."""
    boxed = set(boxed)
    params = dict(model.named_parameters())
    arch = _sha()
    arch.update(f"architecture|{type(model).__name__}|{model!r}|".encode())
    for name in sorted(params):
        if name in boxed:
            arch.update(f"boxed|{name}|{tuple(params[name].shape)}|".encode())
    parts: dict[str, dict] = {"architecture": {"sha256": arch.hexdigest()}}
    tensors = [(n, params[n]) for n in sorted(params) if n not in boxed]
    tensors += [("buffer:" + n, b) for n, b in sorted(model.named_buffers()) if b.is_floating_point()]
    for name, t in tensors:
        h = _sha()
        _feed(h, name, t, torch.float64)
        parts[name] = {"sha256": h.hexdigest(), "shape": list(t.shape),
                       "norm": float(t.detach().to("cpu", torch.float64).norm())}
    return parts


def frozen_differences(recorded: Mapping[str, Mapping], model: nn.Module, boxed: Sequence[str]) -> list[str]:
    """What differs between ``recorded`` (:func:`frozen_parts` of the certified model) and ``model``: one
    line per changed, missing or new tensor, with the lower bound ``|‖new‖ − ‖old‖|`` on its change."""
    now = frozen_parts(model, boxed)
    out = []
    if now["architecture"]["sha256"] != recorded.get("architecture", {}).get("sha256"):
        out.append("the architecture (module structure, or the names/shapes of the domain's parameters)")
    for name in sorted(set(now) | set(recorded) - {"architecture"}):
        if name == "architecture":
            continue
        old, new = recorded.get(name), now.get(name)
        if old is None:
            out.append(f"{name} (not in the certified model)")
        elif new is None:
            out.append(f"{name} (missing)")
        elif old.get("sha256") != new["sha256"]:
            if list(old.get("shape", [])) != new["shape"]:
                out.append(f"{name} (shape {tuple(old.get('shape', []))} -> {tuple(new['shape'])})")
            else:
                out.append(f"{name} (changed; L2 norm {old.get('norm', float('nan')):.6g} -> {new['norm']:.6g}, "
                           f"so the change has L2 norm >= {abs(new['norm'] - old.get('norm', new['norm'])):.3g})")
    return out


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (read in 1 MiB chunks)."""
    h = _sha()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
