"""Create encoders by name: ``create_encoder("openclip:ViT-B-16@laion2b_s34b_b88k")``.

A name is ``BACKEND:SPEC``. The backend picks a module from ``_BACKENDS``; that
module's ``create(spec)`` builds the encoder, and without building it (from the name
and the architecture alone) ``is_cross(spec)`` says whether the name is a
cross-encoder and ``count_image_macs(spec, mode, image_size)`` counts what one image
costs; ``known_names()`` lists names for "did you mean" hints. Backend modules are
imported on first use, so importing this package loads neither open_clip nor transformers.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import threading
from types import ModuleType
from typing import TYPE_CHECKING

from cascade.encoders.base import BiEncoder, CrossEncoder, ImageTower
from cascade.errors import EncoderNotFound

if TYPE_CHECKING:
    from cascade.cost import MacsMode

# backend prefix -> module implementing create(spec), is_cross(spec), count_image_macs(spec, mode, image_size)
# and known_names()
_BACKENDS: dict[str, str] = {
    "openclip": "cascade.encoders.open_clip",
    "shapes": "cascade.encoders.shapes",
    "blip": "cascade.encoders.blip",
}

# One encoder is built at a time. Loading a checkpoint switches torch's weight initialisers off for the
# whole process while the model is built (ours for OpenCLIP, transformers' for BLIP): a seeded random
# init running meanwhile in another thread would lose its weights. Already built encoders
# (create_encoder's cache) never wait.
_BUILDING = threading.RLock()

__all__ = [
    "BiEncoder",
    "CrossEncoder",
    "ImageTower",
    "backend_of",
    "count_image_macs",
    "create_encoder",
    "is_cross_encoder",
    "known_names",
]


def backend_of(name: str) -> str:
    """The backend prefix of an encoder name, or raise EncoderNotFound."""
    backend, sep, spec = name.strip().partition(":")
    if not sep or not spec:
        raise EncoderNotFound(
            f"encoder name {name!r} is not BACKEND:SPEC (backends: {', '.join(sorted(_BACKENDS))})" + _hint(name)
        )
    if backend not in _BACKENDS:
        backends = ", ".join(sorted(_BACKENDS))
        raise EncoderNotFound(f"unknown encoder backend {backend!r} in {name!r}; backends: {backends}")
    return backend


@functools.lru_cache(maxsize=32)
def create_encoder(name: str) -> ImageTower:
    """Build (or return the already built) encoder for ``name``.

    Args:
        name: ``BACKEND:SPEC``, e.g. ``shapes:small``, ``openclip:ViT-B-16@random``,
            ``openclip:ViT-B-16@/path/model.safetensors``, ``blip:base``.

    Returns:
        A ``BiEncoder`` or ``CrossEncoder``. The same name returns the same object,
        so levels and caches share one loaded model.

    Raises:
        EncoderNotFound: unknown backend or model (the message lists close matches).
        WeightsUnavailable: the weights are neither local nor downloadable.
    """
    name = name.strip()
    module = _backend(name)
    with _BUILDING:  # see _BUILDING
        return module.create(name.partition(":")[2])


def is_cross_encoder(name: str) -> bool:
    """Whether ``name`` denotes a cross-encoder (a re-ranking last stage); asks its backend, builds nothing.

    Raises:
        EncoderNotFound: unknown backend, or a spec its backend cannot parse.
    """
    name = name.strip()
    return _backend(name).is_cross(name.partition(":")[2])


def count_image_macs(name: str, mode: MacsMode, image_size: int) -> int:
    """MACs to encode one image with ``name`` at ``image_size`` px, counted by its backend on the architecture.

    No weights are loaded or downloaded: the count runs on a model built on the meta device
    (or a freshly initialised one for the tiny built-in families), so it is cheap for any size.

    Args:
        name: ``BACKEND:SPEC``; the weights part of SPEC plays no part (e.g. ``openclip:ViT-B-16``).
        mode: ``"paper"`` (THOP as the paper counted) or ``"full"`` (see ``cascade.cost``).
        image_size: input resolution in pixels.

    Raises:
        EncoderNotFound: unknown backend or model.
        ConfigError: the model cannot run at ``image_size``.
    """
    name = name.strip()
    return _backend(name).count_image_macs(name.partition(":")[2], mode, image_size)


def _backend(name: str) -> ModuleType:
    """The backend module of ``name`` (imported on first use)."""
    return importlib.import_module(_BACKENDS[backend_of(name)])


def known_names(backend: str | None = None) -> list[str]:
    """Encoder names the backends advertise (pretrained tags, presets)."""
    names: list[str] = []
    for prefix, module_name in _BACKENDS.items():
        if backend is not None and prefix != backend:
            continue
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # a backend whose library is missing still lets the others list
            continue
        names.extend(module.known_names())
    return names


def _hint(name: str) -> str:
    matches = difflib.get_close_matches(name, known_names(), n=3, cutoff=0.6)
    return f"; did you mean {', '.join(matches)}?" if matches else ""


def not_found(name: str, backend: str) -> EncoderNotFound:
    """An EncoderNotFound for ``name`` with close matches from ``backend``."""
    matches = difflib.get_close_matches(name, known_names(backend), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(matches)}?" if matches else ""
    return EncoderNotFound(f"unknown encoder {name!r}{hint}")
