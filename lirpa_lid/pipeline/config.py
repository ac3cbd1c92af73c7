"""YAML specification files: typed, validated sections with α,β-CROWN's names.

A file has up to five sections; ``model``, ``data`` and ``specification`` (and most of ``general``)
reuse α,β-CROWN's keys where the meaning is the same, ``lid`` is lirpa_lid's own::

    general:        seed, device (cpu; cuda falls back to it with a note), data_dir, root_path, csv_name (instances.csv batch run)
    model:          name (Customized(...) or a known name), path (state dict), onnx_path, input_shape
    data:           dataset (MNIST | FashionMNIST | Customized(...)), mean, std, start, end,
                    num_outputs, split (train | test)
    specification:  type (lp | vnnlib | certified-accuracy), epsilon, norm (.inf), vnnlib_path,
                    robustness_type (verified-acc), balanced
    lid:            threshold | increment + limit, required, method, certify_method, grow, backend,
                    iterations, primal_lr, dual_lr, batch_size, snapshot_every, objective, max_width,
                    temperature, free, domain (orthotope), delta, held_out, time_limit, seed,
                    refine (none | split | bab), split (max_boxes, time_limit, branching, share)

Rules. Unknown keys are errors naming the section and key, with a suggestion for near misses.
α,β-CROWN keys that do not change what is certified (``general.conv_mode``, ``model.cache_onnx_conversion``,
...) and α,β-CROWN's search sections (``solver``, ``bab``, ``attack``, ``debug``) are *ignored* and
reported in :attr:`RunConfig.ignored` (the CLI prints them): lirpa_lid bounds every margin with one
bound propagation (``lid.method``), without branch and bound, so they have nothing to configure —
ignoring them can make a result less complete, never unsound. α,β-CROWN keys that *would* change
the problem (``data.data_idx_file``, ``specification.rhs_offset``, ``model.onnx_loader``, ...) are
errors ("not supported"). Relative paths are relative to ``general.root_path`` if given, else to the
configuration file's directory; ``{data_dir}`` in a path is the data directory
(:func:`lirpa_lid.datasets.data_dir`) and ``~`` the home directory.

This module only parses and validates; :mod:`lirpa_lid.pipeline.problems` turns a :class:`RunConfig`
into models, specifications and an :class:`~lirpa_lid.lid.LIDConfig`.
"""
from __future__ import annotations

import difflib
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from lirpa_lid.bounds.core import BoundMethod
from lirpa_lid.datasets import data_dir as locate_data_dir
from lirpa_lid.errors import InputError, SpecificationError
from lirpa_lid.pipeline.customized import is_customized, parse_call, parse_customized

SPEC_TYPES = ("lp", "vnnlib", "certified-accuracy")
KNOWN_DATASETS = ("MNIST", "FashionMNIST")
IGNORED_SECTIONS = ("solver", "bab", "attack", "debug")

# α,β-CROWN keys (complete_verifier/arguments.py) of the shared sections that lirpa_lid does not use:
# harmless ones are ignored, the others rejected unless they hold a no-op value (they change the model, the data
# or the property).
_ABCROWN_IGNORED = {
    "general": {"conv_mode", "deterministic", "double_fp", "loss_reduction_func", "sparse_alpha", "sparse_interm",
                "save_adv_example", "verify_onnxruntime_output", "eval_adv_example", "onnx_adv_example",
                "show_adv_example", "precompile_jit", "reset_seed_after_precompile", "prepare_only",
                "complete_verifier", "enable_incomplete_verification", "results_file", "deterministic_opt",
                "graph_optimizer", "buffer_has_batchdim", "save_output", "output_file", "return_optimized_model",
                "store_all_specs_on_cpu", "adhoc_tuning"},
    "model": {"cache_onnx_conversion", "debug_onnx", "bound_opts"},
    "data": set(),
    "specification": set(),
}
_ABCROWN_UNSUPPORTED = {
    "general": set(),
    "model": {"onnx_path_prefix", "onnx_quirks", "onnx_loader", "onnx_optimization_flags",
              "onnx_vnnlib_joint_optimization_flags", "check_optimized", "flatten_final_output", "optimize_graph",
              "with_jacobian"},
    "data": {"select_instance", "pkl_path", "data_filter_path", "data_idx_file"},
    "specification": {"epsilon_min", "vnnlib_path_prefix", "shrink_eps", "rhs_offset"},
}
# values of those keys that change nothing: α,β-CROWN's defaults as its resolved configuration prints them
# (and the empty forms YAML writes for them); accepted silently, any other value stays an error
_ABCROWN_NO_OP_VALUES = (None, "", [], False, 0, 0.0, "none", "default_onnx_and_vnnlib_loader")


# ------------------------------------------------------------------------------- sections
@dataclass(frozen=True)
class GeneralSection:
    """``general``: the seed (torch, numpy and random are seeded from it, as in α,β-CROWN), the device
    (cpu), the data directory, and for instances.csv batch runs ``root_path`` + ``csv_name``."""

    seed: int = 0
    device: str = "cpu"
    data_dir: str | None = None
    root_path: str | None = None
    csv_name: str | None = None


@dataclass(frozen=True)
class ModelSection:
    """``model``: ``name`` (a known model or ``Customized(...)``) with an optional state dict ``path``, or
    ``onnx_path``; ``input_shape`` without the batch dimension (α,β-CROWN's leading -1 removed)."""

    name: str | None = None
    path: str | None = None
    onnx_path: str | None = None
    input_shape: tuple[int, ...] | None = None


@dataclass(frozen=True)
class DataSection:
    """``data``: the dataset (MNIST, FashionMNIST or ``Customized(...)``), its normalisation (``mean``,
    ``std``, per channel or one value), the items ``[start, end)`` of ``split``, the number of classes."""

    dataset: str | None = None
    mean: float | tuple[float, ...] = 0.0
    std: float | tuple[float, ...] = 1.0
    start: int = 0
    end: int | None = None
    num_outputs: int | None = None
    split: str = "test"


@dataclass(frozen=True)
class SpecificationSection:
    """``specification``: ``lp`` (L∞ ε-balls: local robustness), ``certified-accuracy`` (no input
    perturbation) or ``vnnlib`` (properties from ``vnnlib_path``)."""

    type: str = "lp"
    epsilon: float | None = None
    norm: float = math.inf
    vnnlib_path: tuple[str, ...] | None = None
    robustness_type: str = "verified-acc"
    balanced: bool = False


#: the values of ``lid.refine``: ``bab`` is α,β-CROWN's word for the same input splitting
REFINE_CHOICES = ("none", "split", "bab")


@dataclass(frozen=True)
class SplitSettings:
    """``lid.split``: the budget of input splitting (branch and bound on the input box of each VNN-LIB
    property, :func:`lirpa_lid.certificate.refine.split_input_boxes`) for a problem that the bound method
    cannot certify at θ₀. ``max_boxes``: sub-boxes bounded per property; ``time_limit``: seconds for all
    properties of the problem; ``share``: the fraction of an instances.csv row's timeout that splitting may
    take (the LID growth gets what is left); ``branching``: ``gradient`` or ``widest``."""

    max_boxes: int = 200_000
    time_limit: float = 60.0
    branching: str = "gradient"
    share: float = 0.5
    attack_steps: int = 5


@dataclass(frozen=True)
class LidSection:
    """``lid``: lirpa_lid's own section — the threshold rule, what the certificate must reach, the bound
    methods and backend, the optimiser's settings, which parameters are free, the certificate's
    ``delta`` and held-out share, the time limit and seed (see the module docstring for the keys)."""

    threshold: float | None = None
    increment: float | None = None
    limit: float | None = None
    required: float | None = None
    method: str = "CROWN"
    certify_method: str | None = None
    grow: float = 1.0
    backend: str = "native"
    iterations: int = 200
    primal_lr: float = 0.33
    dual_lr: float = 0.01
    batch_size: int = 500
    snapshot_every: int = 20
    objective: str = "mean_width"
    max_width: float = 10.0
    temperature: float | None = None
    free: tuple[str, ...] | None = None
    domain: str = "orthotope"
    delta: float | None = None
    held_out: float | None = None
    time_limit: float | None = None
    seed: int | None = None
    refine: str | None = None
    split: SplitSettings = SplitSettings()

    @property
    def refine_kind(self) -> str:
        """``none`` or ``split`` (``bab`` means split; unset: split — only VNN-LIB problems are refined)."""
        return "none" if self.refine == "none" else "split"


@dataclass(frozen=True)
class RunConfig:
    """A validated specification file. ``base_dir`` resolves relative paths; ``ignored`` lists the
    α,β-CROWN settings that were read but have no effect here. ``settings_only``: the file has no
    ``model``, ``data`` or ``specification`` section (only settings, for ``certify --instances``)."""

    general: GeneralSection = GeneralSection()
    model: ModelSection = ModelSection()
    data: DataSection = DataSection()
    specification: SpecificationSection = SpecificationSection()
    lid: LidSection = LidSection()
    path: Path | None = None
    base_dir: Path = field(default_factory=Path.cwd)
    ignored: tuple[str, ...] = ()
    settings_only: bool = False

    @property
    def name(self) -> str:
        """The file's stem (``config`` for a document not read from a file): names outputs and specs."""
        return self.path.stem if self.path is not None else "config"

    @property
    def is_batch(self) -> bool:
        """Whether the file runs the rows of an instances.csv (``general.csv_name``)."""
        return self.general.csv_name is not None

    def resolve(self, value: str, data_dir: str | os.PathLike | None = None) -> Path:
        """A path of the file: ``{data_dir}`` and ``~`` expanded, relative to ``root_path`` or the file."""
        path = self._expand(value, data_dir)
        return path if path.is_absolute() else self.root(data_dir) / path

    def root(self, data_dir: str | os.PathLike | None = None) -> Path:
        """The directory relative paths refer to: ``general.root_path`` (itself relative to the file's
        directory), else the file's directory."""
        if not self.general.root_path:
            return self.base_dir
        r = self._expand(self.general.root_path, data_dir)
        return r if r.is_absolute() else self.base_dir / r

    def _expand(self, value: str, data_dir: str | os.PathLike | None) -> Path:
        if "{data_dir}" in value:
            given = data_dir if data_dir is not None else self.general.data_dir
            if given is not None and "{data_dir}" not in str(given):
                given = Path(os.path.expanduser(str(given)))
                given = given if given.is_absolute() else self.base_dir / given
            value = value.replace("{data_dir}", str(locate_data_dir(given)))
        return Path(os.path.expanduser(value))


SECTIONS = {"general": GeneralSection, "model": ModelSection, "data": DataSection,
            "specification": SpecificationSection, "lid": LidSection}


# ------------------------------------------------------------------------------- validation helpers
def _where(section: str, key: str) -> str:
    return f"{section}.{key}"


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _number(value, where: str, integer: bool = False, low: float | None = None, high: float | None = None,
            low_open: bool = False) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string; accept numeric strings
            try:
                value = float(value) if not integer else int(value)
            except ValueError:
                raise SpecificationError(f"{where} must be a number, got {value!r}") from None
        else:
            raise SpecificationError(f"{where} must be a number, got {value!r}")
    if integer:
        if isinstance(value, float) and not value.is_integer():
            raise SpecificationError(f"{where} must be an integer, got {value!r}")
        value = int(value)
    elif not math.isfinite(value):
        raise SpecificationError(f"{where} must be finite, got {value!r}")
    if low is not None and (value < low or (low_open and value == low)):
        raise SpecificationError(f"{where} must be {'>' if low_open else '>='} {low}, got {value!r}")
    if high is not None and value > high:
        raise SpecificationError(f"{where} must be <= {high}, got {value!r}")
    return value


def _string(value, where: str, choices: tuple[str, ...] | None = None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SpecificationError(f"{where} must be a non-empty string, got {value!r}")
    if choices is not None and value not in choices:
        raise SpecificationError(f"{where} must be one of {list(choices)}, got {value!r}{_suggest(value, choices)}")
    return value


def _strings(value, where: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise SpecificationError(f"{where} must be a string or a non-empty list of strings, got {value!r}")
    return tuple(_string(v, where) for v in items)


def _numbers(value, where: str) -> float | tuple[float, ...]:
    if isinstance(value, list):
        if not value:
            raise SpecificationError(f"{where} must not be an empty list")
        return tuple(float(_number(v, where)) for v in value)
    return float(_number(value, where))


def _is_no_op(value) -> bool:
    """Whether an unsupported α,β-CROWN key holds a value that changes nothing (its default)."""
    return any(type(value) is type(v) and value == v for v in _ABCROWN_NO_OP_VALUES)  # 0 ≠ False: types must match


def _section(name: str, raw: dict, ignored: list[str]) -> object:
    cls = SECTIONS[name]
    known = {f.name for f in fields(cls)}
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SpecificationError(f"section {name!r} must be a mapping of keys to values, got {type(raw).__name__}")
    values = {}
    for key, value in raw.items():
        if not isinstance(key, str):
            raise SpecificationError(f"section {name!r}: keys must be strings, got {key!r}")
        if key in known:
            if value is None or (key == "root_path" and value == ""):  # YAML null / alpha,beta-CROWN's '': default
                continue
            if name == "general" and key == "device" and str(value).startswith("cuda"):
                ignored.append(f"general.device={value} (the pipeline runs on the CPU; the certificate is the same)")
                continue
            values[key] = _VALIDATE[name](key, value, _where(name, key))
        elif key in _ABCROWN_IGNORED.get(name, ()):
            ignored.append(_where(name, key))
        elif key in _ABCROWN_UNSUPPORTED.get(name, ()):
            if _is_no_op(value):
                continue
            raise SpecificationError(f"{_where(name, key)} is an alpha,beta-CROWN option that lirpa_lid does not "
                                     f"support with value {value!r} (it changes the model, the data or the property); "
                                     "remove it or give its default")
        else:
            raise SpecificationError(f"unknown key {key!r} in section {name!r}{_suggest(key, known)}; "
                                     f"known keys: {sorted(known)}")
    return cls(**values)


def _general(key: str, v, where: str):
    if key == "seed":
        return _number(v, where, integer=True, low=0)
    if key == "device":
        if v != "cpu":
            raise SpecificationError(f"{where}: lirpa_lid runs on the CPU only, got {v!r} (set device: cpu)")
        return v
    return _string(v, where)


def _model(key: str, v, where: str):
    if key == "input_shape":
        if not isinstance(v, list) or not v:
            raise SpecificationError(f"{where} must be a list such as [-1, 1, 28, 28], got {v!r}")
        dims = [_number(d, where, integer=True) for d in v]
        if dims[0] == -1:  # alpha,beta-CROWN writes the batch dimension as -1
            dims = dims[1:]
        if not dims or any(d < 1 for d in dims):
            raise SpecificationError(f"{where} must be positive dimensions after the batch dimension -1, got {v!r}")
        return tuple(dims)
    value = _string(v, where)
    if key == "name":
        if is_customized(value):
            parse_customized(value, where)
        else:
            parse_call(value, where)
    return value


def _data(key: str, v, where: str):
    if key in ("mean", "std"):
        out = _numbers(v, where)
        if key == "std" and any(s <= 0 for s in (out if isinstance(out, tuple) else (out,))):
            raise SpecificationError(f"{where} must be > 0, got {v!r}")
        return out
    if key in ("start", "end"):
        return _number(v, where, integer=True, low=0)
    if key == "num_outputs":
        return _number(v, where, integer=True, low=2)
    if key == "split":
        return _string(v, where, ("train", "test"))
    value = _string(v, where)
    if is_customized(value):
        parse_customized(value, where)
    elif value not in KNOWN_DATASETS:
        raise SpecificationError(f"{where}: unknown dataset {value!r}{_suggest(value, KNOWN_DATASETS)}; use one of "
                                 f"{list(KNOWN_DATASETS)} or Customized(\"module\", \"function\", ...)")
    return value


def _specification(key: str, v, where: str):
    if key == "type":
        if v in ("box", "bound"):
            raise SpecificationError(f"{where}: alpha,beta-CROWN's {v!r} specification (per-item boxes from the "
                                     "data loader) is not supported; use lp (epsilon balls) or vnnlib")
        return _string(v, where, SPEC_TYPES)
    if key == "epsilon":
        return float(_number(v, where, low=0.0, low_open=True))
    if key == "norm":
        if v in (math.inf, "inf", ".inf", "Inf", "infinity"):
            return math.inf
        raise SpecificationError(f"{where}: only the L-inf norm (.inf) is supported, got {v!r}")
    if key == "vnnlib_path":
        return _strings(v, where)
    if key == "robustness_type":
        if v != "verified-acc":
            raise SpecificationError(f"{where}: only 'verified-acc' (all other classes) is supported, got {v!r}")
        return v
    if key == "balanced":
        if not isinstance(v, bool):
            raise SpecificationError(f"{where} must be true or false, got {v!r}")
        return v
    raise AssertionError(key)  # unreachable: keys are checked against the dataclass fields


def _lid(key: str, v, where: str):
    if key in ("threshold", "increment", "limit", "required"):
        return float(_number(v, where, low=0.0, high=1.0))
    if key in ("method", "certify_method"):
        try:
            return BoundMethod.parse(_string(v, where)).value
        except InputError as exc:
            raise SpecificationError(f"{where}: {exc}") from None
    if key == "backend":
        return _string(v, where, ("native", "auto_lirpa"))
    if key in ("iterations", "batch_size", "snapshot_every"):
        return _number(v, where, integer=True, low=1)
    if key in ("primal_lr", "dual_lr", "max_width", "temperature", "time_limit"):
        return float(_number(v, where, low=0.0, low_open=True))
    if key == "grow":
        return float(_number(v, where, low=1.0))
    if key == "objective":
        return _string(v, where, ("mean_width", "log_volume"))
    if key == "free":
        return _strings(v, where)
    if key == "domain":
        value = _string(v, where)
        if value == "zonotope":
            raise SpecificationError(f"{where}: zonotope domains are not implemented yet; use orthotope")
        return _string(value, where, ("orthotope",))
    if key == "delta":
        return float(_number(v, where, low=0.0, high=1.0, low_open=True))
    if key == "held_out":
        value = float(_number(v, where, low=0.0, low_open=True))
        if value >= 1 and not value.is_integer():
            raise SpecificationError(f"{where} must be a fraction in (0, 1) or a whole number of items, got {v!r}")
        return value
    if key == "seed":
        return _number(v, where, integer=True, low=0)
    if key == "refine":
        return _string(v, where, REFINE_CHOICES)
    if key == "split":
        return _split_settings(v, where)
    raise AssertionError(key)


def _split_settings(raw, where: str) -> SplitSettings:
    """``lid.split``: a mapping of :class:`SplitSettings` keys, each validated."""
    known = [f.name for f in fields(SplitSettings)]
    if not isinstance(raw, dict):
        raise SpecificationError(f"{where} must be a mapping with keys {known}, got {raw!r}")
    values = {}
    for key, v in raw.items():
        at = f"{where}.{key}"
        if key not in known:
            raise SpecificationError(f"unknown key {key!r} in {where}{_suggest(str(key), known)}; known keys: {known}")
        if key in ("max_boxes", "attack_steps"):
            values[key] = _number(v, at, integer=True, low=1 if key == "max_boxes" else 0)
        elif key == "time_limit":
            values[key] = float(_number(v, at, low=0.0, low_open=True))
        elif key == "share":
            values[key] = float(_number(v, at, low=0.0, high=1.0, low_open=True))
        else:
            values[key] = _string(v, at, ("gradient", "widest"))
    return SplitSettings(**values)


_VALIDATE = {"general": _general, "model": _model, "data": _data, "specification": _specification, "lid": _lid}


# ------------------------------------------------------------------------------- the whole file
def _check_consistency(cfg: RunConfig) -> None:
    """Rules across sections (each key was validated on its own already)."""
    _check_model_source(cfg)
    if cfg.specification.type == "vnnlib":
        _check_vnnlib(cfg)
    else:
        _check_items(cfg)
    d = cfg.data
    if d.end is not None and d.end <= d.start:
        raise SpecificationError(f"data.end ({d.end}) must be larger than data.start ({d.start})")


def _check_model_source(cfg: RunConfig) -> None:
    """One model source: ``name`` or ``onnx_path`` (none for a batch run or a settings-only file)."""
    m, s, g = cfg.model, cfg.specification, cfg.general
    if cfg.settings_only:
        pass
    elif g.csv_name is not None:
        if s.vnnlib_path is not None or m.onnx_path is not None:
            raise SpecificationError("general.csv_name runs the (onnx, vnnlib) rows of an instances.csv; do not also "
                                     "set model.onnx_path or specification.vnnlib_path")
        if m.name is not None:
            raise SpecificationError("general.csv_name takes the models from the instances.csv; remove model.name")
    else:
        if m.name is None and m.onnx_path is None:
            raise SpecificationError("section 'model' needs name (Customized(...) or a known model) or onnx_path")
        if m.name is not None and m.onnx_path is not None:
            raise SpecificationError("model.name and model.onnx_path are both set; give one of them (as in "
                                     "alpha,beta-CROWN)")
    if m.path is not None and m.name is None:
        raise SpecificationError("model.path (a state dict) needs model.name for the architecture")


def _check_vnnlib(cfg: RunConfig) -> None:
    """A vnnlib specification has properties and none of the settings of sampled items."""
    s, lid = cfg.specification, cfg.lid
    if s.vnnlib_path is None and cfg.general.csv_name is None and not cfg.settings_only:
        raise SpecificationError("specification.type vnnlib needs specification.vnnlib_path (or general.csv_name)")
    for key in ("increment", "limit", "delta", "held_out"):
        if getattr(lid, key) is not None:
            raise SpecificationError(f"lid.{key} has no meaning for a vnnlib specification (deterministic: the "
                                     "properties themselves are certified, nothing is sampled); remove it")
    if s.epsilon is not None or s.balanced:
        raise SpecificationError("specification.epsilon / balanced have no meaning for a vnnlib specification")


def _check_items(cfg: RunConfig) -> None:
    """Item specifications (lp, certified-accuracy) need data, an ε for lp only, and one threshold rule."""
    s, lid = cfg.specification, cfg.lid
    if lid.refine in ("split", "bab") or lid.split != SplitSettings():
        raise SpecificationError(f"lid.refine: {lid.refine or 'split'} (input splitting) applies to vnnlib "
                                 f"specifications only, not {s.type}; remove lid.refine / lid.split")
    if cfg.data.dataset is None:
        raise SpecificationError(f"specification.type {s.type} needs data.dataset")
    if s.type == "lp" and s.epsilon is None:
        raise SpecificationError("specification.type lp needs specification.epsilon (> 0); for accuracy "
                                 "under weight perturbation only, use type: certified-accuracy")
    if s.type == "certified-accuracy" and s.epsilon is not None:
        raise SpecificationError("specification.epsilon is set but type is certified-accuracy; use type: lp "
                                 "for local robustness")
    if lid.threshold is None and lid.increment is None and lid.limit is None:
        raise SpecificationError("section 'lid' needs threshold, or increment and/or limit (the paper's rule "
                                 "tau = min(max(a - increment, a/2), limit) from the certified value a at width 0)")
    if lid.threshold is not None and (lid.increment is not None or lid.limit is not None):
        raise SpecificationError("lid.threshold and lid.increment/limit are alternatives; give one of them")


def parse_config(raw: object, path: str | os.PathLike | None = None) -> RunConfig:
    """Validate a loaded YAML document (a dict) into a :class:`RunConfig`."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SpecificationError("a specification file must be a mapping of sections (general, model, data, "
                                 f"specification, lid), got {type(raw).__name__}")
    sections, ignored = _sections(raw)
    settings_only = _imply_specification_type(sections, raw)
    p = Path(path).resolve() if path is not None else None
    cfg = RunConfig(**sections, path=p, base_dir=p.parent if p is not None else Path.cwd(), ignored=tuple(ignored),
                    settings_only=settings_only)
    _check_consistency(cfg)
    return cfg


def _sections(raw: dict) -> tuple[dict, list[str]]:
    """Each known section validated; α,β-CROWN's search sections and keys listed as ignored."""
    ignored: list[str] = []
    sections = {}
    for name, body in raw.items():
        if name in SECTIONS:
            sections[name] = _section(name, body, ignored)
        elif name in IGNORED_SECTIONS:
            ignored.append(name)
        else:
            raise SpecificationError(f"unknown section {name!r}{_suggest(str(name), list(SECTIONS))}; sections are "
                                     f"{list(SECTIONS)} (alpha,beta-CROWN's {list(IGNORED_SECTIONS)} are ignored)")
    return sections, ignored


def _imply_specification_type(sections: dict, raw: dict) -> bool:
    """Set ``specification.type`` to vnnlib where the file implies it without saying so: a
    ``vnnlib_path`` (as in α,β-CROWN it overrides lp), a batch run (``general.csv_name``) or a
    settings-only file. Returns whether the file holds settings only (no model, data or specification)."""
    spec_raw = raw.get("specification") or {}
    if isinstance(spec_raw, dict) and "type" not in spec_raw and spec_raw.get("vnnlib_path") is not None:
        sections["specification"] = SpecificationSection(**{**sections["specification"].__dict__, "type": "vnnlib"})
    general = sections.get("general", GeneralSection())
    # a batch run's rows are (onnx, vnnlib) pairs: α,β-CROWN runs the csv whatever specification.type says
    if general.csv_name is not None and not (isinstance(spec_raw, dict) and spec_raw.get("type") not in (None, "lp")):
        sections["specification"] = SpecificationSection(**{**sections.get("specification",
                                                                           SpecificationSection()).__dict__,
                                                            "type": "vnnlib"})
    settings_only = general.csv_name is None and not any(k in raw for k in ("model", "data", "specification"))
    if settings_only:  # lid (and general) settings for `certify --instances`: models and properties come later
        sections["specification"] = SpecificationSection(type="vnnlib")
    return settings_only


def load_config(path: str | os.PathLike) -> RunConfig:
    """Read and validate a YAML specification file (errors name the file, section and key)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecificationError(f"specification file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecificationError(f"cannot read specification file {path}: {exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecificationError(f"{path}{where}: malformed YAML ({problem})") from None
    try:
        return parse_config(raw, path)
    except SpecificationError as exc:
        raise SpecificationError(f"{path}: {exc}") from None
