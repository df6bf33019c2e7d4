"""Cascaded text-to-image search: bi-encoder cascades and cross-encoder re-ranking.

Importing this package does nothing: it loads no model, opens no database,
downloads nothing, imports no torch and installs no hook. The torchvision
compat shim (``cascade._torchvision_compat``) is called explicitly by the
modules that import open_clip or transformers.
"""

from __future__ import annotations

from cascade.types import CascadeConfig, LevelTrace, SearchResult

__all__ = ["CascadeConfig", "LevelTrace", "SearchResult"]
