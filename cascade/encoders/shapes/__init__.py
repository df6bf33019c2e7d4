"""The built-in encoder family of the shapes world: ``shapes:small|medium|large|cross``.

Three image towers of increasing cost (a convnet each, on 32, 48 and 64 px
inputs) share ONE text tower, as Algorithm 1 of the bi-encoder cascades paper
assumes; ``shapes:cross`` is a small cross-encoder for CrispSearch-style
re-ranking. All weights ship in ``cascade/assets/shapes_*.safetensors`` and are
regenerated from a seed by ``python -m tools.train_shapes``.

Architectures are data (``IMAGE_TOWERS``, ``TEXT_TOWER``, ``CROSS``); every
weights file records the configuration and the vocabulary it was trained
with, and a file that does not match the code is refused, not half loaded.

The package, along its seams: ``networks`` (configs and modules), ``weights``
(safetensors files), ``adapters`` (the encoder contract). This module is what
the encoder registry calls: ``create(spec)``, ``is_cross(spec)``,
``count_image_macs(spec, mode, image_size)`` and ``known_names()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cascade.encoders import not_found
from cascade.encoders.base import ImageTower
from cascade.encoders.shapes.adapters import WORLD_IMAGE_PX, ShapesBiEncoder, ShapesCrossEncoder, image_macs, load
from cascade.encoders.shapes.networks import (
    CROSS,
    CROSS_TOWER,
    IMAGE_TOWERS,
    MODELS,
    TEXT_TOWER,
    ConvConfig,
    ConvTower,
    CrossModel,
    FilmConfig,
    TextTower,
    Tokeniser,
    TransformerConfig,
    build,
    to_pixels,
)
from cascade.encoders.shapes.weights import REGENERATE_HINT, read_module, save, weights_path
from cascade.errors import ConfigError
from cascade.paths import ASSETS_DIR

if TYPE_CHECKING:
    from cascade.cost import MacsMode

__all__ = [
    "CROSS",
    "CROSS_TOWER",
    "IMAGE_TOWERS",
    "MODELS",
    "REGENERATE_HINT",
    "TEXT_TOWER",
    "WORLD_IMAGE_PX",
    "ConvConfig",
    "ConvTower",
    "CrossModel",
    "FilmConfig",
    "ShapesBiEncoder",
    "ShapesCrossEncoder",
    "TextTower",
    "Tokeniser",
    "TransformerConfig",
    "build",
    "count_image_macs",
    "create",
    "image_macs",
    "known_names",
    "load",
    "read_module",
    "save",
    "to_pixels",
    "weights_path",
]


def known_names() -> list[str]:
    return [f"shapes:{model}" for model in MODELS]


def is_cross(spec: str) -> bool:
    """Whether ``spec`` (``NAME[@HASH]``) names the family's cross-encoder."""
    return spec.strip().partition("@")[0] == "cross"


def count_image_macs(spec: str, mode: MacsMode, image_size: int) -> int:
    """MACs of ``spec``'s image side on one image, counted on its architecture (the weights play no part).

    Raises:
        EncoderNotFound: not one of the family's models.
        ConfigError: ``image_size`` is not the model's own.
    """
    model = spec.strip().partition("@")[0]
    if model not in MODELS:
        raise not_found(f"shapes:{spec}", "shapes")
    native = IMAGE_TOWERS[CROSS_TOWER if model == "cross" else model].image_size
    if image_size != native:
        raise ConfigError(f"shapes:{model} runs at {native} px, not {image_size} px")
    return image_macs(model, mode)


def create(spec: str) -> ImageTower:
    """``small``, ``medium``, ``large`` (bi-encoders) or ``cross``; ``NAME@HASH`` also checks the weights."""
    return load(spec, ASSETS_DIR)
