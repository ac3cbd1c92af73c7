"""From a :class:`~lirpa_lid.pipeline.config.RunConfig` to library objects: model, specifications, LID settings.

This is the one place where a specification file is translated (α,β-CROWN's ``loading.py`` plays the
same part there). Everything that can be wrong with the user's input is found here, before anything
is computed or written: missing files, malformed ONNX / VNN-LIB, hooks that fail, shapes that do not
match (each a :class:`~lirpa_lid.errors.LirpaLidError` naming the problem).

Data conventions (α,β-CROWN's generic MNIST loader): images in ``[0, 1]`` are normalised
``(x − mean) / std``; the ε-balls are clipped to ``[(0 − mean)/std, (1 − mean)/std]`` and ε is divided
by ``std``. Items ``[start, end)`` of the chosen split are used; for finite-sample specifications a
seeded random part (``lid.held_out``, default half) is held out for the certificate and the rest grows
the domain. Items are reshaped to the model's input shape when the element counts agree (MNIST
``[1, 28, 28]`` → mnist_fc's ``[784, 1]``).
"""
from __future__ import annotations

import contextlib
import difflib
import fnmatch
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from lirpa_lid.bounds.resolve import bounded_network
from lirpa_lid.datasets import ENV_VAR, load_mnist
from lirpa_lid.digest import file_sha256
from lirpa_lid.domains import Orthotope
from lirpa_lid.errors import InputError, ModelError, SpecificationError
from lirpa_lid.lid import LIDConfig
from lirpa_lid.margin import compute_margins
from lirpa_lid.models.zoo import KNOWN_MODELS
from lirpa_lid.pipeline.config import RunConfig, SplitSettings
from lirpa_lid.pipeline.customized import call_data, call_model, is_customized, parse_call, parse_customized
from lirpa_lid.specification.accuracy import CertifiedAccuracy
from lirpa_lid.specification.base import Specification, threshold_from_accuracy
from lirpa_lid.specification.vnnlib.spec import VnnlibSpecification

DEFAULT_HELD_OUT = 0.5
DEFAULT_DELTA = 0.05
DEFAULT_TEMPERATURE = {"vnnlib": 100.0}  # output units of VNN-COMP networks are small; others: 10


# ------------------------------------------------------------------------------- results
@dataclass
class LoadedModel:
    """A model with its input shape (without batch) and a record of where it came from."""

    module: nn.Module
    input_shape: tuple[int, ...] | None
    record: dict


@dataclass
class Problem:
    """Everything a certify run needs, validated: the model, the specification the domain is grown on,
    the held-out specification the certificate is computed on (``None`` for VNN-LIB: deterministic),
    the optimiser's settings and what the certificate must reach (``required``) for success.

    ``base_value`` is the certified value at the model's own weights (width 0), computed while building;
    ``theta0_seconds`` the time that bound took (part of the run's total time, even when it ends there).
    ``refine``: the input-splitting budget for a VNN-LIB problem not certified at θ₀ (``None``: no
    refinement, ``lid.refine: none``); ``timeout``: an instances.csv row's timeout (``None``: none).
    """

    name: str
    model: nn.Module
    input_shape: tuple[int, ...]
    spec: Specification
    held_out: Specification | None
    lid: LIDConfig
    params: list[str] | None
    backend: str
    method: str
    required: float
    delta: float
    base_value: float
    model_record: dict
    notes: list[str] = field(default_factory=list)
    theta0_seconds: float = 0.0
    #: the data set index of every held-out item (``data.start`` + position), for names and results
    held_out_index: tuple[int, ...] | None = None
    refine: SplitSettings | None = None
    timeout: float | None = None


# ------------------------------------------------------------------------------- helpers
@contextlib.contextmanager
def data_dir_env(data_dir: str | os.PathLike | None):
    """Make ``data_dir`` visible to Customized hooks (which call :func:`lirpa_lid.datasets.data_dir`)."""
    if data_dir is None:
        yield
        return
    old = os.environ.get(ENV_VAR)
    os.environ[ENV_VAR] = str(data_dir)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = old


def _config_data_dir(cfg: RunConfig) -> Path | None:
    """``general.data_dir`` of the file (relative to the file's directory), if set."""
    if not cfg.general.data_dir:
        return None
    path = Path(os.path.expanduser(cfg.general.data_dir))
    return path if path.is_absolute() else cfg.base_dir / path


def _file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise InputError(f"{what} {path} does not exist")
    return path


def _output_size(model: nn.Module, x: Tensor) -> int:
    p = next(model.parameters(), None)
    try:
        with torch.no_grad():
            out = model(x.to(p.dtype) if p is not None else x)
    except Exception as exc:
        raise ModelError(f"the model cannot process inputs of shape {tuple(x.shape[1:])} (plus the batch "
                         f"dimension): {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    return int(out[0].numel())


def _check_model(model: nn.Module) -> None:
    params = list(model.parameters())
    if not params:
        raise ModelError("the model has no parameters, so there is no weight domain to compute")
    for name, p in model.named_parameters():
        if not p.is_floating_point():
            raise ModelError(f"parameter {name!r} is not floating point")
        if not torch.isfinite(p).all():
            raise ModelError(f"parameter {name!r} of the model contains NaN or inf")


# ------------------------------------------------------------------------------- models
def load_model(cfg: RunConfig, data_dir: str | os.PathLike | None = None,
               onnx_path: str | os.PathLike | None = None) -> LoadedModel:
    """The model of ``cfg.model`` (or the ONNX file ``onnx_path`` of a batch row), in eval mode."""
    m = cfg.model
    if onnx_path is not None or m.onnx_path is not None:
        path = Path(onnx_path) if onnx_path is not None else cfg.resolve(m.onnx_path, data_dir)
        return _onnx_model(path, m.input_shape)
    with data_dir_env(data_dir if data_dir is not None else _config_data_dir(cfg)):
        module = _named_model(cfg)
    record = {"source": m.name, "format": "pytorch"}
    if m.path is not None:
        path = _file(cfg.resolve(m.path, data_dir), "model.path")
        load_state_dict(module, path)
        record.update({"state_dict": str(path.resolve()), "sha256": file_sha256(path)})
    _check_model(module)
    if m.input_shape is not None:
        record["input_shape"] = list(m.input_shape)
    return LoadedModel(module.eval(), m.input_shape, record)


def _onnx_model(path: Path, input_shape: tuple[int, ...] | None = None) -> LoadedModel:
    """An ONNX file as a model; ``input_shape`` (``model.input_shape``), if given, must have as many
    elements as the ONNX input (the model keeps the ONNX input shape)."""
    from lirpa_lid.models.onnx import load_onnx  # onnx + onnx2torch: only when an ONNX file is read

    net = load_onnx(_file(path, "ONNX file"))
    shape = input_shape or net.input_shape
    if math.prod(shape) != math.prod(net.input_shape):
        raise ModelError(f"model.input_shape {list(shape)} has {math.prod(shape)} elements, the ONNX input "
                         f"{list(net.input_shape)} has {math.prod(net.input_shape)}")
    _check_model(net.module)
    record = {"source": str(path.resolve()), "sha256": file_sha256(path), "format": "onnx",
              "input_shape": list(net.input_shape)}
    return LoadedModel(net.module.eval(), tuple(net.input_shape), record)


def _named_model(cfg: RunConfig) -> nn.Module:
    """``model.name``: a ``Customized(...)`` hook or a builder of the model zoo
    (:data:`~lirpa_lid.models.zoo.KNOWN_MODELS`: ``mlp(sizes=[...])``, ``blobs_mlp(hidden=...)``; untrained)."""
    where = "model.name"
    if is_customized(cfg.model.name):
        return call_model(parse_customized(cfg.model.name, where), cfg.base_dir)
    name, args, kwargs = parse_call(cfg.model.name, where)
    if name not in KNOWN_MODELS:
        close = difflib.get_close_matches(name, list(KNOWN_MODELS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ModelError(f"{where}: unknown model {name!r}{hint}; known: {sorted(KNOWN_MODELS)}, or "
                         "Customized(\"module\", \"function\", ...)")
    try:
        return KNOWN_MODELS[name](*args, **kwargs)
    except TypeError as exc:
        raise ModelError(f"{where}: {exc}") from None


def load_state_dict(module: nn.Module, path: Path) -> None:
    """α,β-CROWN's conventions: a state dict, or a dict with a ``state_dict`` key, or a list of them."""
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"{path}: not a PyTorch state dict ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    if isinstance(sd, dict) and "state_dict" in sd:
        sd = sd["state_dict"]
    if isinstance(sd, list) and sd:
        sd = sd[0]
    if not isinstance(sd, dict):
        raise ModelError(f"{path}: expected a state dict (a mapping of names to tensors), got {type(sd).__name__}")
    own = module.state_dict()
    missing, unexpected = sorted(set(own) - set(sd)), sorted(set(sd) - set(own))
    if missing or unexpected:
        raise ModelError(f"{path} does not fit the model: missing {missing}, unexpected {unexpected}")
    for k, v in sd.items():
        if not isinstance(v, Tensor) or v.shape != own[k].shape:
            got = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
            raise ModelError(f"{path}: {k!r} has shape {got}, the model's has {tuple(own[k].shape)}")
    module.load_state_dict(sd)


# ------------------------------------------------------------------------------- data
@dataclass
class Items:
    """Labelled items ``x [n, *input_shape]``, ``y [n]`` and, for ε-balls, radius and clip range."""

    x: Tensor
    y: Tensor
    epsilon: Tensor | None
    data_min: Tensor | None
    data_max: Tensor | None


def _channel(value: float | tuple[float, ...], like: Tensor, what: str) -> Tensor:
    t = torch.as_tensor(value, dtype=like.dtype)
    if t.dim() == 0:
        return t
    if like.dim() < 2 or like.shape[1] != t.numel():
        raise SpecificationError(f"data.{what} has {t.numel()} values; the images have shape "
                                 f"{tuple(like.shape[1:])} (one value per channel expected)")
    return t.reshape(1, -1, *([1] * (like.dim() - 2)))


def load_items(cfg: RunConfig, data_dir: str | os.PathLike | None = None) -> Items:
    """The items ``[start, end)`` of ``cfg.data`` (normalised, with ε and the clip range for ``lp``)."""
    d, s = cfg.data, cfg.specification
    spec_dict = {"type": s.type, "epsilon": s.epsilon, "norm": s.norm, "robustness_type": s.robustness_type,
                 "vnnlib_path": None}
    if is_customized(d.dataset):
        with data_dir_env(data_dir if data_dir is not None else
                          _config_data_dir(cfg)):
            out = call_data(parse_customized(d.dataset, "data.dataset"), spec_dict, cfg.base_dir)
        x, y, eps, lo, hi = out.X, out.labels, out.eps, out.data_min, out.data_max
        if eps is None and s.epsilon is not None:
            eps = torch.tensor(s.epsilon, dtype=torch.float64)
    else:
        kind = {"MNIST": "mnist", "FashionMNIST": "fashion-mnist"}[d.dataset]
        root = data_dir if data_dir is not None else _config_data_dir(cfg)
        x, y = load_mnist(d.split, kind, root)
        mean, std = _channel(d.mean, x, "mean"), _channel(d.std, x, "std")
        x = (x - mean) / std
        lo, hi = (0.0 - mean) / std, (1.0 - mean) / std
        eps = None if s.epsilon is None else torch.as_tensor(s.epsilon, dtype=torch.float64) / std.double()
    n = int(x.shape[0])
    end = n if d.end is None else min(d.end, n)
    if d.start >= end:
        raise SpecificationError(f"data.start={d.start} leaves no items (the data set has {n})")
    x, y = x[d.start:end], torch.as_tensor(y)[d.start:end]
    if s.type == "certified-accuracy":
        eps = lo = hi = None
    return Items(x, y, eps, lo, hi)


def _shape_items(items: Items, input_shape: tuple[int, ...] | None) -> Items:
    """Reshape items (and per-channel settings stay broadcastable) to the model's input shape."""
    if input_shape is None or tuple(items.x.shape[1:]) == tuple(input_shape):
        return items
    have, want = math.prod(items.x.shape[1:]), math.prod(input_shape)
    if have != want:
        raise SpecificationError(f"data items have shape {tuple(items.x.shape[1:])} ({have} elements); the model "
                                 f"takes {tuple(input_shape)} ({want} elements)")

    def flat(t: Tensor | None) -> Tensor | None:
        if t is None or t.dim() == 0 or t.numel() == 1:
            return t
        full = torch.broadcast_to(t, (1, *items.x.shape[1:]))
        return full.reshape(1, *input_shape)
    return Items(items.x.reshape(-1, *input_shape), items.y, flat(items.epsilon), flat(items.data_min),
                 flat(items.data_max))


# ------------------------------------------------------------------------------- problems
def select_parameters(model: nn.Module, patterns: tuple[str, ...] | None) -> list[str] | None:
    """Parameter names matching ``patterns`` (fnmatch), in model order; None = all."""
    if patterns is None:
        return None
    names = [n for n, _ in model.named_parameters()]
    chosen = []
    for pat in patterns:
        hits = [n for n in names if fnmatch.fnmatchcase(n, pat)]
        if not hits:
            raise SpecificationError(f"lid.free: pattern {pat!r} matches no parameter; the model has {names}")
        chosen += [n for n in hits if n not in chosen]
    return [n for n in names if n in chosen]


def _lid_config(cfg: RunConfig, kind: str, time_limit: float | None, progress: bool) -> LIDConfig:
    lid = cfg.lid
    limit = lid.time_limit if time_limit is None else (time_limit if lid.time_limit is None
                                                       else min(time_limit, lid.time_limit))
    return LIDConfig(iterations=lid.iterations, primal_lr=lid.primal_lr, dual_lr=lid.dual_lr,
                     batch_size=lid.batch_size, snapshot_every=min(lid.snapshot_every, lid.iterations),
                     method=lid.method, certify_method=lid.certify_method, grow=lid.grow,
                     objective=lid.objective, max_width=lid.max_width,
                     seed=lid.seed if lid.seed is not None else cfg.general.seed, progress=progress,
                     time_limit=limit)


def timed_base_value(model: nn.Module, spec: Specification, method: str, backend: str) -> tuple[float, float]:
    """:func:`base_value` and the seconds it took (a run's time at θ₀, reported with its outcome)."""
    start = time.perf_counter()
    value = base_value(model, spec, method, backend)
    return value, time.perf_counter() - start


def base_value(model: nn.Module, spec: Specification, method: str, backend: str = "native") -> float:
    """The certified value of the model's own weights (width 0) in float64 (native) arithmetic."""
    net = bounded_network(model, None, backend)
    dtype = torch.float64 if net.follows_input_dtype else None
    with torch.no_grad():
        return float(spec.hard_value(compute_margins(net, spec, None, method, dtype=dtype)))


def check_domain(model: nn.Module, spec: Specification, params: list[str] | None, backend: str) -> None:
    """Bound the first query row once over a width-0 box on ``params``: a parameter the backend cannot
    put a box on (a BatchNorm weight, say) is reported now, before anything is computed or written."""
    q = spec.query().part(slice(0, 1))
    with torch.no_grad():
        bounded_network(model, params, backend).compute_bounds(q.x, Orthotope.around(model, params), C=q.C,
                                                               method="IBP", input_box=q.input_box(),
                                                               bound_upper=False)


def _held_out_split(n: int, held_out: float, seed: int) -> tuple[Tensor, Tensor]:
    k = int(round(held_out * n)) if held_out < 1 else int(held_out)
    if not 1 <= k < n:
        raise SpecificationError(f"lid.held_out={held_out:g} of {n} items leaves {k} held-out and {n - k} "
                                 "optimisation items; both must be at least 1 (use more items: data.start/end)")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[k:].sort().values, perm[:k].sort().values


def build_problem(cfg: RunConfig, data_dir: str | os.PathLike | None = None, progress: bool = False) -> Problem:
    """Translate a (non-batch) configuration into a :class:`Problem` (all validation happens here)."""
    if cfg.is_batch:
        raise InputError("this configuration is a batch run (general.csv_name); use build_instance_problem")
    if cfg.settings_only:
        raise InputError(f"{cfg.path or 'the configuration'} has no model, data or specification section; it only "
                         "holds settings for `lirpa-lid certify --instances CSV`")
    loaded = load_model(cfg, data_dir)
    if cfg.specification.type == "vnnlib":
        paths = [cfg.resolve(p, data_dir) for p in cfg.specification.vnnlib_path]
        return _vnnlib_problem(cfg, loaded, paths, None, progress)
    return _items_problem(cfg, loaded, data_dir, progress)


def build_instance_problem(cfg: RunConfig, onnx_path: Path, vnnlib_path: Path, timeout: float | None,
                           progress: bool = False) -> Problem:
    """One row of an instances.csv: the ONNX model, its VNN-LIB property, the row's timeout."""
    loaded = load_model(cfg, onnx_path=onnx_path)
    return _vnnlib_problem(cfg, loaded, [vnnlib_path], timeout, progress)


def _vnnlib_spec(cfg: RunConfig, loaded: LoadedModel, paths: list[Path]):
    if loaded.input_shape is None:
        raise SpecificationError("a vnnlib specification with a PyTorch model needs model.input_shape (VNN-LIB "
                                 "files carry no shape), as in alpha,beta-CROWN, e.g. input_shape: [-1, 5]")
    for p in paths:
        _file(p, "VNN-LIB file")
    dtype = next(loaded.module.parameters()).dtype
    temperature = cfg.lid.temperature or DEFAULT_TEMPERATURE["vnnlib"]
    spec = VnnlibSpecification.from_files(paths, loaded.input_shape, temperature=temperature,
                                          threshold=1.0 if cfg.lid.threshold is None else cfg.lid.threshold,
                                          dtype=dtype)
    n_out = _output_size(loaded.module, spec.query().x[:1])
    if n_out != spec.properties[0].n_outputs:
        raise SpecificationError(f"the VNN-LIB propert{'y' if len(paths) == 1 else 'ies'} declare "
                                 f"{spec.properties[0].n_outputs} outputs (Y_0..Y_{spec.properties[0].n_outputs - 1}); "
                                 f"the model has {n_out}")
    return spec


def _vnnlib_problem(cfg: RunConfig, loaded: LoadedModel, paths: list[Path], timeout: float | None,
                    progress: bool) -> Problem:
    spec = _vnnlib_spec(cfg, loaded, paths)
    params = select_parameters(loaded.module, cfg.lid.free)
    check_domain(loaded.module, spec, params, cfg.lid.backend)
    value, seconds = timed_base_value(loaded.module, spec, cfg.lid.method, cfg.lid.backend)
    required = cfg.lid.required if cfg.lid.required is not None else spec.threshold
    return Problem(name=spec.name, model=loaded.module, input_shape=loaded.input_shape, spec=spec, held_out=None,
                   lid=_lid_config(cfg, "vnnlib", timeout, progress), params=params, backend=cfg.lid.backend,
                   method=cfg.lid.method, required=required, delta=0.0, base_value=value,
                   model_record=loaded.record, theta0_seconds=seconds,
                   refine=None if cfg.lid.refine_kind == "none" else cfg.lid.split, timeout=timeout)


def _item_spec(cfg: RunConfig, loaded: LoadedModel, data_dir) -> tuple[CertifiedAccuracy, dict]:
    """All items ``[start, end)`` as one specification (threshold 0) and the settings to rebuild parts."""
    s, lid = cfg.specification, cfg.lid
    items = _shape_items(load_items(cfg, data_dir), loaded.input_shape)
    p = next(loaded.module.parameters())
    n_out = _output_size(loaded.module, items.x[:1])
    num_classes = cfg.data.num_outputs or n_out
    if num_classes != n_out:
        raise SpecificationError(f"data.num_outputs is {num_classes}, the model has {n_out} outputs")
    # epsilon and the clip range keep their precision: the balls are built in float64 and rounded outwards
    kwargs = dict(num_classes=num_classes, balanced=s.balanced, temperature=lid.temperature or 10.0,
                  epsilon=items.epsilon, data_min=items.data_min, data_max=items.data_max)
    # validates labels, shapes and that every item lies in its clip range
    return CertifiedAccuracy(items.x.to(p.dtype), items.y, threshold=0.0, name=cfg.name, **kwargs), kwargs


def load_spec(cfg: RunConfig, loaded: LoadedModel | None = None,
              data_dir: str | os.PathLike | None = None) -> Specification:
    """The whole specification of a (non-batch) configuration: every item ``[start, end)`` (threshold 0),
    or the VNN-LIB properties. For inspecting bounds (``lirpa-lid bounds``). ``loaded``: the model (loaded
    from ``cfg`` if not given)."""
    if loaded is None:
        loaded = load_model(cfg, data_dir)
    if cfg.specification.type == "vnnlib":
        return _vnnlib_spec(cfg, loaded, [cfg.resolve(p, data_dir) for p in cfg.specification.vnnlib_path])
    return _item_spec(cfg, loaded, data_dir)[0]


def _items_problem(cfg: RunConfig, loaded: LoadedModel, data_dir, progress: bool) -> Problem:
    lid = cfg.lid
    full, kwargs = _item_spec(cfg, loaded, data_dir)
    held = lid.held_out if lid.held_out is not None else DEFAULT_HELD_OUT
    opt_idx, held_idx = _held_out_split(len(full), held, lid.seed if lid.seed is not None else cfg.general.seed)
    opt = full.subset(opt_idx)
    params = select_parameters(loaded.module, lid.free)
    check_domain(loaded.module, opt, params, lid.backend)
    value, seconds = timed_base_value(loaded.module, opt, lid.method, lid.backend)
    tau = lid.threshold if lid.threshold is not None else threshold_from_accuracy(value, lid.increment, lid.limit)
    opt = CertifiedAccuracy(opt.x, opt.y, threshold=tau, name=f"{cfg.name} (optimisation)", **kwargs)
    held_spec = CertifiedAccuracy(full.x[held_idx], full.y[held_idx], threshold=tau, name=f"{cfg.name} (held-out)",
                                  **kwargs)
    return Problem(name=cfg.name, model=loaded.module, input_shape=tuple(full.x.shape[1:]), spec=opt,
                   held_out=held_spec, lid=_lid_config(cfg, opt.kind, None, progress), params=params,
                   backend=lid.backend, method=lid.method,
                   required=lid.required if lid.required is not None else tau,
                   delta=lid.delta if lid.delta is not None else DEFAULT_DELTA, base_value=value,
                   model_record=loaded.record, theta0_seconds=seconds,
                   held_out_index=tuple(int(i) + cfg.data.start for i in held_idx))


# ------------------------------------------------------------------------------- model files
def load_model_file(path: str | os.PathLike, cfg: RunConfig | None = None) -> LoadedModel:
    """A model given on the command line: an ``.onnx`` file, or a state dict (``.pt``/``.pth``) whose
    architecture comes from ``cfg``'s model section (a state dict alone has none)."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        return _onnx_model(path)
    if path.suffix.lower() not in (".pt", ".pth"):
        raise InputError(f"{path}: a model file must be .onnx or a PyTorch state dict (.pt / .pth)")
    if cfg is None or cfg.model.name is None:
        raise InputError(f"{path} is a state dict, which has no architecture: pass --config with a model.name "
                         "(the specification file the certificate was computed from)")
    loaded = load_model(cfg)
    load_state_dict(loaded.module, _file(path, "state dict"))
    _check_model(loaded.module)
    loaded.record.update({"state_dict": str(path.resolve()), "sha256": file_sha256(path)})
    return loaded
