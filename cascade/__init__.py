"""Cascaded text-to-image search: bi-encoder cascades and cross-encoder re-ranking.

Importing this package loads no model, opens no database and downloads nothing.
It does install the torchvision compat shim (see ``_torchvision_compat``), which
must run before anything imports torchvision.
"""

from cascade import _torchvision_compat  # noqa: F401  (side effect: op schemas, see module)
from cascade.types import CascadeConfig, LevelTrace, SearchResult

__all__ = ["CascadeConfig", "LevelTrace", "SearchResult"]
