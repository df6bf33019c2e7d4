"""Named starting points: a gallery, a default cascade, and the configurations worth comparing.

Presets are data. ``shapes`` is the default of the command line and the app:
the project's own world and encoder family, so everything works offline.
"""

from __future__ import annotations

from dataclasses import dataclass

from cascade.corpus import Corpus
from cascade.errors import ConfigError


@dataclass(frozen=True)
class Preset:
    """A gallery plus cascade defaults.

    Attributes:
        levels: default cascade, cheapest first.
        ks: default k per level.
        reranker: a cross-encoder that can be appended as a last stage, or None.
        comparisons: (levels, ks) pairs for the evaluation table, singles first.
    """

    name: str
    description: str
    levels: tuple[str, ...]
    ks: tuple[int, ...]
    reranker: str | None
    comparisons: tuple[tuple[tuple[str, ...], tuple[int, ...]], ...]


_SMALL, _MEDIUM, _LARGE, _CROSS = "shapes:small", "shapes:medium", "shapes:large", "shapes:cross"

PRESETS: dict[str, Preset] = {
    "shapes": Preset(
        name="shapes",
        description="the built-in world of generated scenes (5,000-image test gallery) and its trained encoder family",
        # k_1 = 15 is the smallest that keeps [small, large] within 1 point of large alone on
        # R@1/5/10 of the test gallery (k_1 = 10 loses 1.7 points of R@5); a small k_1 is what
        # keeps alpha, the share of a lifetime gallery ever handed to level 2, small.
        levels=(_SMALL, _LARGE),
        ks=(15, 10),
        reranker=_CROSS,
        comparisons=(
            ((_SMALL,), (10,)),
            ((_MEDIUM,), (10,)),
            ((_LARGE,), (10,)),
            ((_SMALL, _LARGE), (15, 10)),
            ((_SMALL, _LARGE), (100, 10)),
            ((_SMALL, _MEDIUM, _LARGE), (100, 15, 10)),
            ((_LARGE, _CROSS), (20, 10)),
            ((_SMALL, _LARGE, _CROSS), (50, 20, 10)),
        ),
    ),
}


def names() -> list[str]:
    return sorted(PRESETS)


def get(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; presets: {', '.join(names())}") from None


GALLERIES = ("test", "lifetime")


def gallery(name: str, which: str = "test") -> Corpus:
    """One of the preset's galleries, materialised on first use into the cache directory.

    Args:
        which: ``"test"`` (5,000 images: recall, the app) or ``"lifetime"`` (100,000 images
            whose first 5,000 are the test gallery: a search system's collection, for replays).
    """
    get(name)
    if which not in GALLERIES:
        raise ConfigError(f"gallery must be one of {', '.join(GALLERIES)}, got {which!r}")
    from cascade import world

    json_path, image_root = world.materialise(which)
    return Corpus.from_karpathy(json_path, image_root, split="test")
