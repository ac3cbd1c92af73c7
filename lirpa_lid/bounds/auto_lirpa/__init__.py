"""auto_LiRPA as a bound backend: compatibility patches and the import (``compat``), the backend
(``backend``)."""
from lirpa_lid.bounds.auto_lirpa.backend import LirpaBoundedNetwork

__all__ = ["LirpaBoundedNetwork"]
