"""Make ``import torchvision`` work when its C++ extension cannot load.

Why this exists: the pinned torchvision 0.28.0 wheel is built against CUDA
torch. With the CPU torch wheel, ``torchvision/_C.so`` fails to load, and
``torchvision/_meta_registrations.py`` then calls
``torch.library.register_fake("torchvision::nms")`` on an operator that was
never defined, so ``import torchvision`` (and with it open_clip, timm and
transformers' BLIP) dies with ``operator torchvision::nms does not exist``.

We define the schemas of the two operators that module registers fakes for,
and only when the extension really failed to load: where torchvision works
(a matching CUDA build, a Space), this module does nothing. None of our code
calls nms; the ops only have to exist for the import to succeed.

``ensure_torchvision_compat()`` must run before anything imports torchvision.
Every cascade module that imports open_clip or transformers (which import
torchvision) calls it at its top, explicitly; importing ``cascade`` itself
does nothing. Code outside ``cascade`` that imports those libraries directly
calls it first.
"""

from __future__ import annotations

import importlib.util
import os
import threading

import torch

# The schemas as torchvision's C++ extension declares them (csrc/ops/nms.cpp).
_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)

_library: torch.library.Library | None = None  # kept alive: dropping it unregisters the ops
_ensured = False
_ensuring = threading.Lock()  # backends are imported from several threads (the app's preparation, its page)


def _extension_loads() -> bool:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return True  # torchvision absent: nothing to patch
    folder = os.path.dirname(spec.origin)
    candidates = [f for f in os.listdir(folder) if f.startswith("_C") and f.endswith((".so", ".pyd"))]
    if not candidates:
        return False
    try:
        torch.ops.load_library(os.path.join(folder, candidates[0]))
    except (OSError, RuntimeError):
        return False
    return True


def ensure_torchvision_compat() -> None:
    """Make a later ``import torchvision`` work on this torch (see the module docstring). Idempotent.

    Call it before importing open_clip, timm, transformers' vision models or torchvision.
    """
    global _ensured
    with _ensuring:
        if not _ensured:
            install()
            _ensured = True


def install() -> bool:
    """Register the missing op schemas if needed. Returns True when it patched."""
    global _library
    if _library is not None or "torchvision" in _loaded_modules():
        return False
    if _extension_loads():
        return False
    _library = torch.library.Library("torchvision", "DEF")
    for schema in _SCHEMAS:
        _library.define(schema)
    return True


def _loaded_modules() -> set[str]:
    import sys

    return set(sys.modules)
