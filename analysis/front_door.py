"""Which preset the app starts on: the Space's real photos where their files can be had, else ``shapes``.

On a Hugging Face Space (``SPACE_ID`` set) the app starts on ``SPACE_PRESET``, the
Flickr30k gallery through OpenCLIP ViT-B-32 > ViT-B-16 > ViT-L-14, when its dataset and
weights are in the local cache (a Space's ``preload_from_hub`` puts them there at build
time) or the hub answers; otherwise, or when a download fails, on ``shapes``, with one
line for the page saying why. Outside a Space the default stays ``shapes``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from analysis import presets
from cascade import datasets
from cascade.encoders import create_encoder
from cascade.errors import CascadeError

SPACE_PRESET = "flickr30k-cpu"
FALLBACK = "shapes"


@dataclass(frozen=True)
class Start:
    """The preset to serve, and the one line the page shows about it ("" when all is as asked)."""

    preset: str
    notice: str = ""


def prepare(name: str) -> None:
    """Materialise the preset's gallery and load its cascade (downloads happen here), or raise CascadeError."""
    preset = presets.get(name)
    if preset.dataset != "world":
        datasets.materialise(preset.dataset)
    for level in preset.levels:
        create_encoder(level)


def choose(requested: str | None, on_space: bool, ready: Callable[[str], None] = prepare) -> Start:
    """The start preset: ``requested`` if given, else ``SPACE_PRESET`` on a Space when ``ready`` succeeds.

    Args:
        ready: makes a preset usable or raises CascadeError saying why (default: ``prepare``).
    """
    if requested:
        presets.get(requested)  # an unknown name lists the known ones
        return Start(requested)
    if not on_space:
        return Start(FALLBACK)
    try:
        ready(SPACE_PRESET)
    except CascadeError as err:
        return Start(FALLBACK, f"Started on the offline {FALLBACK} preset: {SPACE_PRESET} is unavailable ({err})")
    return Start(SPACE_PRESET)
