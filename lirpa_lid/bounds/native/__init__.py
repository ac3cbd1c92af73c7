"""lirpa_lid's own bound propagation over weight boxes (IBP, CROWN, CROWN-IBP, α-CROWN)."""
from lirpa_lid.bounds.native.network import NativeBoundedNetwork

__all__ = ["NativeBoundedNetwork"]
