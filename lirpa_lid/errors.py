"""Exceptions for bad user input. Each names what is wrong; the CLI maps them to exit code 2."""
from __future__ import annotations


class LirpaLidError(Exception):
    """Base class: a problem with what the user gave us (not a bug in lirpa_lid)."""


class DomainError(LirpaLidError):
    """A weight domain is malformed (negative offsets, NaN, shape mismatch, unknown parameter)."""


class ModelError(LirpaLidError):
    """A model cannot be bounded (unsupported layer, NaN/inf weights, malformed ONNX)."""


class InputError(LirpaLidError):
    """Inputs to a bound computation are malformed (empty batch, wrong shape, bad input box)."""


class BackendError(LirpaLidError):
    """A bound backend is unavailable or cannot handle the request (e.g. auto_LiRPA missing)."""


class SpecificationError(LirpaLidError):
    """A specification (VNN-LIB, YAML, labels, thresholds) is malformed or inconsistent."""


class CertificateError(LirpaLidError):
    """A certificate file is malformed, or does not match the model or data it is checked against."""
