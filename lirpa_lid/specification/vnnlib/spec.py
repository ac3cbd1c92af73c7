"""VNN-LIB properties as a specification: output polytopes over input boxes, under a weight box.

Each property is one *item*. It is certified for a weight domain when, for every disjunct of its
unsafe set, some row's margin ``C_r·f(x; θ) − d_r`` has a positive lower bound over the whole input
box *and* the whole weight domain (joint input + weight perturbation). That is
:meth:`VnnlibProperty.certified_margin` (min over disjuncts of max over rows) ``> 0``.

Disjunctive safe sets. VNN-LIB describes the unsafe set; a conjunctive unsafe alternative ("Y_0 is
maximal": ``Y_i ≤ Y_0`` for all i, ACAS Xu property 2) gives a disjunctive safe set ("some
``Y_i > Y_0``"). Here one fixed row must be positive over the whole box — sound, not complete (a box
may need different rows in different sub-regions; we do not split boxes). Several unsafe alternatives
(``or`` in the file, e.g. the nine "some other class wins" rows of a local-robustness property) must
*all* be excluded: min over disjuncts.

Values. Hard: the fraction of certified properties. Soft (the LID constraint): the mean of
``σ(T·smin_k smax_r m_kr)`` with ``smax_r = logsumexp(T·m)/T`` and ``smin_k = −logsumexp(−T·s)/T`` —
differentiable and increasing in every margin. Default threshold 1: every property must hold.

Guarantee: deterministic. There is no sampling: the items are the whole statement, and a certified
property holds for every weight vector of the domain and every input of its box (up to the float64
round-to-nearest arithmetic of the bounds, as in auto_LiRPA and α,β-CROWN).
"""
from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from lirpa_lid.digest import file_sha256
from lirpa_lid.errors import SpecificationError
from lirpa_lid.specification.base import BoundQuery, Guarantee, SpecificationKind, check_margins, round_outward
from lirpa_lid.specification.vnnlib.parse import VnnlibProperty, parse_vnnlib

_FILL = 1e30  # finite stand-in for ±inf in the soft reductions (keeps gradients free of NaN)


def property_name(path: str | os.PathLike) -> str:
    """The name of a VNN-LIB file: its file name without the extension, ``.gz`` included.

    ``prop_3.vnnlib`` and ``prop_3.vnnlib.gz`` (which :func:`parse_vnnlib` reads alike) are both
    ``prop_3``; a plain ``stem`` would keep ``.vnnlib`` on the compressed one.
    """
    path = Path(path)
    return Path(path.stem).stem if path.suffix == ".gz" else path.stem



class VnnlibSpecification:
    """VNN-LIB properties that must hold on their input boxes for every weight in the domain.

    Args:
        properties: one :class:`VnnlibProperty` or several (one item each).
        input_shape: the model's input shape without the batch dimension (e.g. ``(1, 1, 5)`` for the
            VNN-COMP ACAS Xu ONNX files); the property's ``X_i`` fill it in row-major order.
        threshold: the required fraction of certified properties (default 1: all of them).
        temperature: ``T > 0`` of the soft surrogate (margins are in output units: pick ``T`` so that
            ``T·margin`` is of order 1–10).
        name: used in messages and certificates.
        sources: per property, the file it was read from (recorded with its SHA-256), or ``None``.
        dtype: the dtype of :meth:`query` by default (boxes rounded outwards, ``d`` upwards).
    """

    kind = SpecificationKind.VNNLIB
    guarantee = Guarantee.DETERMINISTIC

    def __init__(self, properties: VnnlibProperty | Sequence[VnnlibProperty], input_shape: Sequence[int],
                 threshold: float = 1.0, temperature: float = 100.0, name: str = "vnnlib",
                 sources: Sequence[str | os.PathLike | None] | None = None,
                 dtype: torch.dtype = torch.float32):
        props = [properties] if isinstance(properties, VnnlibProperty) else list(properties)
        if not isinstance(name, str) or not name:
            raise SpecificationError("a specification needs a non-empty name")
        if not props:
            raise SpecificationError(f"{name}: at least one VNN-LIB property is needed")
        for i, p in enumerate(props):
            if not isinstance(p, VnnlibProperty):
                raise SpecificationError(f"{name}: item {i} is a {type(p).__name__}, not a VnnlibProperty")
        shape = tuple(int(d) for d in input_shape)
        if not shape or any(d < 1 for d in shape):
            raise SpecificationError(f"{name}: input_shape must be positive dimensions, got {tuple(input_shape)}")
        for i, p in enumerate(props):
            if p.n_inputs != math.prod(shape):
                raise SpecificationError(f"{name}: property {i} has {p.n_inputs} inputs, the model's input shape "
                                         f"{shape} has {math.prod(shape)} elements")
            if p.n_outputs != props[0].n_outputs:
                raise SpecificationError(f"{name}: property {i} has {p.n_outputs} outputs, property 0 has "
                                         f"{props[0].n_outputs}")
        threshold = float(threshold)
        if not (0.0 <= threshold <= 1.0):
            raise SpecificationError(f"{name}: threshold must lie in [0, 1], got {threshold}")
        temperature = float(temperature)
        if not (temperature > 0.0 and math.isfinite(temperature)):
            raise SpecificationError(f"{name}: temperature must be a positive number, got {temperature}")
        sources = [None] * len(props) if sources is None else list(sources)
        if len(sources) != len(props):
            raise SpecificationError(f"{name}: {len(sources)} sources for {len(props)} properties")
        if dtype not in (torch.float32, torch.float64):
            raise SpecificationError(f"{name}: dtype must be float32 or float64, got {dtype}")
        self.properties, self.input_shape = tuple(props), shape
        self.threshold, self.temperature, self.name, self.dtype = threshold, temperature, name, dtype
        self.sources = [None if s is None else str(Path(s).resolve()) for s in sources]
        self._sha = [None if s is None or not Path(s).is_file() else file_sha256(s) for s in self.sources]
        self._build()

    @classmethod
    def from_files(cls, paths: Sequence[str | os.PathLike] | str | os.PathLike, input_shape: Sequence[int],
                   n_outputs: int | None = None, **kwargs) -> VnnlibSpecification:
        """Parse VNN-LIB files (every error names the file and line) into one specification."""
        paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        if not paths:
            raise SpecificationError("no VNN-LIB file given")
        props = [parse_vnnlib(p, n_inputs=math.prod(input_shape), n_outputs=n_outputs) for p in paths]
        if "name" not in kwargs:
            kwargs["name"] = property_name(paths[0]) if len(paths) == 1 else f"{len(paths)} VNN-LIB properties"
        return cls(props, input_shape, sources=paths, **kwargs)

    # ------------------------------------------------------------------ structure
    def _build(self) -> None:
        """Stack every property's input groups into one query; index tables for the reductions."""
        rows: list[int] = []
        lows, ups, Cs, ds = [], [], [], []
        item_disjuncts: list[list[list[int]]] = []  # item -> disjunct -> flat row positions
        for prop in self.properties:
            disjuncts: list[list[int] | None] = [None] * len(prop.disjuncts)
            for g in prop.input_groups():
                q = len(lows)
                lows.append(g.input_lower)
                ups.append(g.input_upper)
                Cs.append(g.C)
                ds.append(g.d)
                rows.append(g.C.shape[0])
                start = 0
                for k, count in zip(g.disjunct_indices, g.row_counts):
                    disjuncts[k] = [(q, r) for r in range(start, start + count)]
                    start += count
            item_disjuncts.append(disjuncts)
        Q, R, K = len(lows), max(max(rows), 1), self.properties[0].n_outputs
        C, d = np.zeros((Q, R, K)), np.zeros((Q, R))
        for q, (c, dd) in enumerate(zip(Cs, ds)):
            C[q, :c.shape[0]], d[q, :c.shape[0]] = c, dd
        self._lower = torch.from_numpy(np.stack(lows))
        self._upper = torch.from_numpy(np.stack(ups))
        self._C, self._d, self._R = torch.from_numpy(C), torch.from_numpy(d), R
        n, D = len(self.properties), max(len(dj) for dj in item_disjuncts)
        Rmax = max((len(r) for dj in item_disjuncts for r in dj), default=1) or 1
        self._index = torch.zeros(n, D, Rmax, dtype=torch.long)
        self._row_mask = torch.zeros(n, D, Rmax, dtype=torch.bool)
        self._dj_mask = torch.zeros(n, D, dtype=torch.bool)
        for i, dj in enumerate(item_disjuncts):
            for k, positions in enumerate(dj):
                self._dj_mask[i, k] = True
                for r, (q, row) in enumerate(positions):
                    self._index[i, k, r] = q * R + row
                    self._row_mask[i, k, r] = True

    def __len__(self) -> int:
        return len(self.properties)

    @property
    def num_queries(self) -> int:
        """Rows of :meth:`query`: one per (property, distinct input box), ≥ the number of properties."""
        return int(self._lower.shape[0])

    def subset(self, index: Tensor) -> VnnlibSpecification:
        """The specification over the properties ``index`` (the optimiser's minibatch); the same object
        when ``index`` is every property."""
        idx = torch.as_tensor(index, dtype=torch.long).flatten().tolist()
        if idx == list(range(len(self))):
            return self  # the optimiser's "minibatch" of a small spec is the whole spec: no rebuild
        out = object.__new__(VnnlibSpecification)
        out.__dict__.update(self.__dict__)
        out.properties = tuple(self.properties[i] for i in idx)
        out.sources = [self.sources[i] for i in idx]
        out._sha = [self._sha[i] for i in idx]
        out._build()
        return out

    def with_threshold(self, threshold: float) -> VnnlibSpecification:
        """The same properties with another required fraction ``threshold`` of certified properties."""
        return VnnlibSpecification(self.properties, self.input_shape, threshold, self.temperature, self.name,
                                   self.sources, self.dtype)

    def query(self, dtype: torch.dtype | None = None) -> BoundQuery:
        """One query row per (property, distinct input box): the box, the stacked rows ``C`` (zero rows
        pad to the widest group) and ``d``, rounded soundly from the exact float64 values."""
        dtype = dtype or self.dtype
        shape = (self.num_queries, *self.input_shape)
        lo = round_outward(self._lower, dtype, -1).reshape(shape)
        up = round_outward(self._upper, dtype, +1).reshape(shape)
        x = torch.minimum(torch.maximum(((self._lower + self._upper) / 2).to(dtype).reshape(shape), lo), up)
        return BoundQuery(x, self._C.to(dtype), round_outward(self._d, dtype, +1), lo, up)

    # ------------------------------------------------------------------ values
    def _gather(self, margins: Tensor) -> Tensor:
        check_margins(self.name, margins, (self.num_queries, self._R))
        return margins.reshape(-1)[self._index.to(margins.device)]  # [n, D, R]

    def certified_margins(self, margins: Tensor) -> Tensor:
        """Per property: min over disjuncts of max over rows, ``[n]`` (> 0: certified)."""
        g = self._gather(margins)
        g = g.masked_fill(~self._row_mask.to(g.device), -math.inf).amax(dim=2)
        return g.masked_fill(~self._dj_mask.to(g.device), math.inf).amin(dim=1)

    def certified(self, margins: Tensor) -> Tensor:
        """Bool ``[n]``: every disjunct of the property has a row with margin lower bound ``> 0``."""
        return self.certified_margins(margins) > 0

    def hard_value(self, margins: Tensor) -> Tensor:
        """The fraction of certified properties, a scalar in ``[0, 1]``."""
        return self.certified(margins).to(torch.float64).mean()

    def soft_scores(self, margins: Tensor) -> Tensor:
        """Per property ``σ(T·smin_k smax_r m)`` ``[n]``: differentiable, increasing in every margin."""
        T = self.temperature
        g = self._gather(margins)
        rows, djs = self._row_mask.to(g.device), self._dj_mask.to(g.device)
        g = torch.where(rows, g, torch.full_like(g, -_FILL))
        smax = torch.logsumexp(T * g, dim=2) / T
        smax = torch.where(djs, smax, torch.full_like(smax, _FILL))
        smin = -torch.logsumexp(-T * smax, dim=1) / T
        return torch.sigmoid(T * smin)

    def soft_value(self, margins: Tensor) -> Tensor:
        """Mean of :meth:`soft_scores`: the differentiable surrogate of the certified fraction."""
        return self.soft_scores(margins).mean()

    def defect(self, value: Tensor | float) -> Tensor | float:
        """``threshold − value`` (positive: violated)."""
        return self.threshold - value

    def violated(self, value: Tensor | float) -> bool:
        """Whether ``value`` misses the threshold (:meth:`defect` > 0)."""
        return float(self.defect(value)) > 0

    # ------------------------------------------------------------------ records
    def digest(self) -> str:
        """SHA-256 of the properties' normal forms and the input shape (file formatting does not count)."""
        h = hashlib.sha256()
        h.update(f"vnnlib|{self.input_shape}|{len(self.properties)}|".encode())
        for p in self.properties:
            h.update(f"property|{p.n_inputs}|{p.n_outputs}|{len(p.disjuncts)}|".encode())
            for dj in p.disjuncts:
                for a in (dj.input_lower, dj.input_upper, dj.C, dj.d):
                    h.update(f"{a.shape}|".encode())
                    h.update(np.ascontiguousarray(a, dtype="<f8").tobytes())
        return h.hexdigest()

    def describe(self) -> dict:
        """The JSON record a certificate keeps: name, threshold, shapes, and each property's file path and
        SHA-256 (so that ``recheck`` can re-read them)."""
        return {"kind": self.kind, "name": self.name, "n": len(self), "threshold": self.threshold,
                "temperature": self.temperature, "input_shape": list(self.input_shape),
                "num_outputs": self.properties[0].n_outputs,
                "properties": [{"path": src, "sha256": sha, "disjuncts": len(p.disjuncts),
                                "input_boxes": len(p.input_groups())}
                               for p, src, sha in zip(self.properties, self.sources, self._sha)]}

    def __repr__(self) -> str:
        return (f"VnnlibSpecification({self.name!r}: {len(self)} propert{'y' if len(self) == 1 else 'ies'} "
                f"must hold (threshold {self.threshold:.4g}), {self.num_queries} input box(es))")
