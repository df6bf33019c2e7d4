"""Named starting points: a gallery, a default cascade, and the configurations worth comparing.

Presets are data. ``shapes`` is the default of the command line and the app:
the project's own world and encoder family, so everything works offline.
"""

from __future__ import annotations

from dataclasses import dataclass

from cascade.cache import MemoryCache
from cascade.corpus import Corpus
from cascade.encoders import create_encoder
from cascade.errors import ConfigError
from cascade.search import CascadeSearcher


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
        levels=(_SMALL, _LARGE),
        ks=(100, 10),
        reranker=_CROSS,
        comparisons=(
            ((_SMALL,), (10,)),
            ((_MEDIUM,), (10,)),
            ((_LARGE,), (10,)),
            ((_SMALL, _LARGE), (100, 10)),
            ((_SMALL, _MEDIUM, _LARGE), (100, 28, 10)),
            ((_LARGE, _CROSS), (20, 10)),
            ((_SMALL, _LARGE, _CROSS), (100, 20, 10)),
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


def gallery(name: str) -> Corpus:
    """The preset's gallery, materialised on first use into the cache directory."""
    get(name)
    from cascade import world

    json_path, image_root = world.materialise("test")
    return Corpus.from_karpathy(json_path, image_root, split="test")


def evaluation_table(name: str, limit: int | None = None) -> list:
    """Evaluate every comparison of the preset on its gallery (no logging).

    One in-memory cache serves all comparisons: rows are keyed by encoder, and the
    evaluator's cost figures do not depend on what the cache held before.
    """
    from analysis.evaluate import evaluate

    preset, corpus, cache = get(name), gallery(name), MemoryCache()
    rows = []
    for levels, ks in preset.comparisons:
        searcher = CascadeSearcher([create_encoder(level) for level in levels], corpus, cache=cache)
        rows.append(evaluate(searcher, ks, limit=limit))
    return rows
