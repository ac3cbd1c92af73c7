"""Bound backends over weight domains: the shared types (``core``), the native backend (``native/``),
the auto_LiRPA backend (``auto_lirpa/``) and the one place a backend is chosen (``resolve``)."""
from lirpa_lid.bounds.core import AlphaOptions, BoundBackend, BoundMethod, Bounds, InputBox
from lirpa_lid.bounds.resolve import bounded_network, resolve_backend

__all__ = ["AlphaOptions", "BoundBackend", "BoundMethod", "Bounds", "InputBox", "bounded_network", "resolve_backend"]
