"""Cascaded text-to-image search: bi-encoder cascades and cross-encoder re-ranking.

Importing this package loads no model, opens no database, downloads nothing and
imports no torch. It does arm the torchvision compat shim (``_torchvision_compat``):
the shim must run before torchvision is first imported (by open_clip, timm or
transformers), and it needs torch, so it runs at that moment rather than now.
"""

from __future__ import annotations

import importlib.abc
import sys

from cascade.types import CascadeConfig, LevelTrace, SearchResult

__all__ = ["CascadeConfig", "LevelTrace", "SearchResult"]


class _ShimBeforeTorchvision(importlib.abc.MetaPathFinder):
    """Runs the torchvision shim when ``import torchvision`` starts, then steps aside.

    An import hook rather than an eager call: the shim imports torch (about a second),
    and most imports of ``cascade`` (the command line's ``--help``, the what-if maths,
    the store) never touch torchvision. It finds nothing itself; the import proceeds as usual.
    """

    def find_spec(self, fullname, path, target=None):
        if fullname == "torchvision":
            sys.meta_path.remove(self)
            from cascade import _torchvision_compat

            _torchvision_compat.install()
        return None


if "torchvision" not in sys.modules and not any(isinstance(f, _ShimBeforeTorchvision) for f in sys.meta_path):
    sys.meta_path.insert(0, _ShimBeforeTorchvision())
