"""Value types of the engine: a cascade's configuration and what a search returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importing the value types loads no numpy (tests/test_layering.py)
    import numpy as np

from cascade.embedding import EmbedTimes
from cascade.errors import ConfigError

_NOTHING_EMBEDDED = EmbedTimes()


@dataclass(frozen=True)
class CascadeConfig:
    """An L-level cascade: one encoder name and one k per level.

    ``ks[i]`` is the number of images level ``i`` keeps and hands on; the last k
    is the number of results. Algorithm 1 needs ``N >= k_1 >= ... >= k_L >= 1``.

    Args:
        levels: encoder names, cheapest first, e.g. ``("shapes:small", "shapes:large")``.
        ks: one k per level.
    """

    levels: tuple[str, ...]
    ks: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels", tuple(self.levels))
        object.__setattr__(self, "ks", tuple(self.ks))
        if not self.levels:
            raise ConfigError("a cascade needs at least one level")
        if any(not isinstance(name, str) or not name.strip() for name in self.levels):
            raise ConfigError(f"encoder names must be non-empty strings, got {list(self.levels)}")
        validate_ks(self.ks, n_levels=len(self.levels))

    @property
    def key(self) -> str:
        """A stable text key, e.g. ``shapes:small>shapes:large|50,10`` (used in the query log)."""
        return ">".join(self.levels) + "|" + ",".join(str(k) for k in self.ks)

    def check_corpus_size(self, n_images: int) -> None:
        """Raise ConfigError unless the first k fits a corpus of ``n_images``."""
        if n_images <= 0:
            raise ConfigError("the image collection is empty")
        if self.ks[0] > n_images:
            raise ConfigError(f"k_1 = {self.ks[0]} is larger than the collection ({n_images} images)")


def validate_ks(ks: tuple[int, ...] | list[int], n_levels: int, n_images: int | None = None) -> None:
    """Raise ConfigError with one clear line unless ``ks`` is valid for the cascade."""
    ks = tuple(ks)
    if len(ks) != n_levels:
        raise ConfigError(f"need one k per level: {n_levels} level(s) but {len(ks)} k value(s) {list(ks)}")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int):
            raise ConfigError(f"k values must be whole numbers, got {list(ks)}")
        if k <= 0:
            raise ConfigError(f"k values must be at least 1, got {list(ks)}")
    for before, after in zip(ks, ks[1:]):
        if after > before:
            raise ConfigError(f"k must not grow from level to level (k_1 >= k_2 >= ...), got {list(ks)}")
    if n_images is not None and ks[0] > n_images:
        raise ConfigError(f"k_1 = {ks[0]} is larger than the collection ({n_images} images)")


@dataclass(frozen=True)
class LevelTrace:
    """What one level of a cascade did for one query.

    Attributes:
        encoder: the encoder's stable id (includes the weights).
        k: how many images this level keeps.
        candidates: images this level scored (N at level 1, k_{i-1} after).
        hits: candidates whose image features were already cached.
        misses: candidates this level had to encode now.
        image_macs: MACs spent encoding images for this query (misses x macs_per_image).
        macs_per_image: this level's MACs to encode one image (what a baseline of it costs per image).
        text_macs: MACs spent on the text side (0 when a shared text tower already ran).
        latency_ms: wall time of this level, text encoding included.
        decode_ms, preprocess_ms, forward_ms: of ``latency_ms``, the time this level spent embedding its misses,
            by step (``cascade.embedding.EmbedTimes``: reading the pixels, the encoder's preprocessing, the
            forward passes); 0 when it embedded nothing.
        ids: the kept image ids, best first, ``len(ids) == k``.
        scores: their scores, same order.
    """

    encoder: str
    k: int
    candidates: int
    hits: int
    misses: int
    image_macs: int
    text_macs: int
    latency_ms: float
    ids: tuple[str, ...]
    scores: tuple[float, ...]
    macs_per_image: int = 0
    missed_ids: frozenset[str] = field(default_factory=frozenset)
    decode_ms: float = 0.0
    preprocess_ms: float = 0.0
    forward_ms: float = 0.0


@dataclass(frozen=True)
class SearchResult:
    """A query's pass through the cascade: one LevelTrace per level."""

    query: str
    config: CascadeConfig
    levels: tuple[LevelTrace, ...]

    @property
    def ids(self) -> tuple[str, ...]:
        """The final ranking (the last level's kept ids)."""
        return self.levels[-1].ids

    @property
    def scores(self) -> tuple[float, ...]:
        return self.levels[-1].scores

    @property
    def image_macs(self) -> int:
        return sum(level.image_macs for level in self.levels)

    @property
    def text_macs(self) -> int:
        return sum(level.text_macs for level in self.levels)

    @property
    def latency_ms(self) -> float:
        return sum(level.latency_ms for level in self.levels)


@dataclass(frozen=True)
class BuildReport:
    """What building level 1 over a corpus cost.

    Attributes:
        encoder: level 1's encoder id.
        images: images in the corpus.
        embedded: images encoded now (cache misses).
        reused: images whose embedding came from the cache.
        image_macs: MACs spent now (embedded x MACs per image).
    """

    encoder: str
    images: int
    embedded: int
    reused: int
    image_macs: int


def check_query(query: object) -> None:
    """Raise ConfigError unless ``query`` is non-blank text every tokenizer and database takes."""
    if not isinstance(query, str) or not query.strip():
        raise ConfigError("the query is empty")
    try:
        query.encode("utf-8")
    except UnicodeEncodeError:  # e.g. a lone surrogate sent as JSON "\ud800": no tokenizer or database takes it
        raise ConfigError("the query is not valid text (it holds an unpaired surrogate character)") from None


def level_trace(
    level,
    k: int,
    candidates: Sequence[str],
    positions: np.ndarray,
    scores: np.ndarray,
    missed: list[str],
    text_macs: int,
    latency_ms: float,
    embedded: EmbedTimes | None = None,
) -> LevelTrace:
    """The trace of one level that scored ``candidates`` and kept ``candidates[positions]``.

    Args:
        positions: ``(k,)`` indices into ``candidates`` of the kept images, best first.
        scores: ``(k,)`` their scores, aligned with ``positions``.
        missed: the candidates encoded now (cache misses).
        embedded: the time spent embedding ``missed``, by step.
    """
    times = embedded if embedded is not None else _NOTHING_EMBEDDED
    return LevelTrace(
        encoder=level.id,
        k=k,
        candidates=len(candidates),
        hits=len(candidates) - len(missed),
        misses=len(missed),
        image_macs=len(missed) * level.image_macs,
        text_macs=text_macs,
        latency_ms=latency_ms,
        ids=tuple(candidates[i] for i in positions),
        scores=tuple(float(score) for score in scores),
        macs_per_image=level.image_macs,
        missed_ids=frozenset(missed),
        decode_ms=times.decode_ms,
        preprocess_ms=times.preprocess_ms,
        forward_ms=times.forward_ms,
    )
