"""Your alpha from your log, at your size, with no image encoded.

An index someone already built (``analysis.embedding_sources``) is level 1 of a cascade whose upper levels exist only
as names. Every distinct query of a real log is ranked with level 1 alone; the union of their top k_1 is exactly the
set of images a cascade would ever hand to level 2 for that log, whatever the upper encoders are. So

    alpha = |union of the distinct queries' level-1 top k_1| / N

is measured, not assumed, and the paper's lifetime cost ``N x C_1 + alpha x N x C_2 + ...`` follows from the upper
levels' MACs per image, counted on their architectures (no weights). Deeper levels are handed what level 2 ranks
first, which needs level 2's embeddings: for them only an upper bound is known, each at most
``min(images of the level below, distinct queries x k_i)``, and labelled so.

Ranking streams: a ``(B, d)`` batch of query embeddings meets the index block by block, keeping a running top k_1
per query, so no ``(queries, N)`` matrix is ever held. Repeats of a query cost nothing: only distinct ones are ranked.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from analysis import embedding_sources, hardware, index_check, query_logs
from analysis.embedding_sources import EmbeddingSource
from analysis.progress import Progress, Step, Unit
from cascade.encoders import BiEncoder, backend_of, count_image_macs, create_encoder, is_cross_encoder
from cascade.errors import ConfigError, CorpusError

QUERY_BATCH = 512  # distinct queries encoded and ranked together: (B, block) float32 scores in memory
RANK_BLOCK_ROWS = 1 << 14  # index rows scored at a time; B = 512: about 200 MB at the peak (scores, rows, argpartition)
BLIP_IMAGE_PX = 384  # the BLIP presets' resolution, as Table 1 counts them
RANKING = Step("ranking the log's distinct queries with level 1", Unit.QUERIES)


@dataclass(frozen=True)
class Cost:
    """One amount of image encoding in four units: MACs, and seconds, dollars and kWh on a hardware profile."""

    macs: float
    seconds: float
    dollars: float
    kwh: float

    @classmethod
    def on(cls, profile: hardware.HardwareProfile, macs: float) -> Cost:
        real = profile.estimate(macs)
        return cls(float(macs), real.seconds, real.money, real.kwh)


@dataclass(frozen=True)
class LevelImages:
    """What one level embeds over the log's lifetime: ``images`` images of ``image_macs`` MACs each.

    ``upper_bound``: levels 3 and deeper; their hand-offs need level 2's ranking, so ``images`` is at most.
    """

    encoder: str
    image_macs: int
    images: int
    upper_bound: bool


@dataclass(frozen=True)
class LogEstimate:
    """A log's measured alpha on an existing index and what the cascade would cost at that alpha.

    Attributes:
        alpha: ``handed / images``: share of the gallery the log's queries ever hand to level 2.
        queries: the log's queries, counts honoured; distinct_queries: how many different texts (each ranked once).
        images: N, the index's rows. handed: the union of the distinct queries' level-1 top k_1.
        levels, ks: the cascade, level 1 first (the index's encoder), and what each level hands on.
        text_encoding_s, level1_s: wall time encoding the distinct queries, and ranking them against the index.
        level_images: per level, what it embeds over the log's lifetime (level 1: all N).
        build: ``N x C_1``, sunk when the index is imported. first_query: ``k_1 C_2 + k_2 C_3 + ...``.
        lifetime_level1_paid, lifetime_from_scratch: the upper levels' images, without and with the build.
        top_alone: re-embedding the whole gallery with the top model, ``N x C_L``.
        hardware, hardware_label: the profile the seconds, dollars and kWh come from, and how it gets them.
    """

    alpha: float
    queries: int
    distinct_queries: int
    images: int
    handed: int
    levels: tuple[str, ...]
    ks: tuple[int, ...]
    text_encoding_s: float
    level1_s: float
    level_images: tuple[LevelImages, ...]
    build: Cost
    first_query: Cost
    lifetime_level1_paid: Cost
    lifetime_from_scratch: Cost
    top_alone: Cost
    hardware: str
    hardware_label: str

    @property
    def upper_bound(self) -> bool:
        """Whether the lifetime figures include a deeper level's upper bound."""
        return any(level.upper_bound for level in self.level_images)

    def reduction(self, level1_paid: bool) -> float | None:
        """How many times fewer MACs than ``top_alone``; None when the cascade pays nothing (level 1 only)."""
        lifetime = self.lifetime_level1_paid if level1_paid else self.lifetime_from_scratch
        return self.top_alone.macs / lifetime.macs if lifetime.macs else None

    def break_even_alpha(self, level1_paid: bool) -> float | None:
        """The alpha at which the cascade costs as much as ``top_alone`` (every upper level handed alpha N, the
        paper's bound); above it the cascade is dearer. None: no upper level. Above 1: it never is."""
        upper = sum(level.image_macs for level in self.level_images[1:])
        if not upper:
            return None
        first, top = self.level_images[0].image_macs, self.level_images[-1].image_macs
        return (top if level1_paid else top - first) / upper

    def as_json(self) -> dict:
        """One JSON object: the fields (costs as ``{macs, seconds, dollars, kwh}``), ``upper_bound``, and
        ``reduction`` and ``break_even_alpha`` as ``{level1_paid, from_scratch}``."""
        row = asdict(self) | {"upper_bound": self.upper_bound}
        row["reduction"] = {"level1_paid": self.reduction(True), "from_scratch": self.reduction(False)}
        row["break_even_alpha"] = {
            "level1_paid": self.break_even_alpha(True),
            "from_scratch": self.break_even_alpha(False),
        }
        return row


def distinct_queries(queries: Iterable[tuple[str, int]]) -> tuple[list[str], int]:
    """The distinct non-empty queries in order of first appearance, and the total with counts honoured."""
    seen: dict[str, None] = {}
    total = 0
    for query, count in queries:
        query = query.strip()
        if not query or count <= 0:
            continue
        seen.setdefault(query)
        total += int(count)
    if not seen:
        raise ConfigError("the query log holds no queries")
    return list(seen), total


def top_k_rows(source: EmbeddingSource, embedded: np.ndarray, k: int, block_rows: int = RANK_BLOCK_ROWS) -> np.ndarray:
    """``(B, min(k, N))`` index rows of each query's top k by dot product, the index streamed in blocks.

    ``embedded``: ``(B, d)`` float32 unit rows. Ties at the k-th score are broken arbitrarily (``argpartition``).
    """
    best_scores = np.empty((len(embedded), 0), np.float32)
    best_rows = np.empty((len(embedded), 0), np.int64)
    offset = 0
    for block in index_check.normalised_blocks(source, np.float32, block_rows):
        scores = embedded @ block.embeddings.T  # (B, n)
        rows = np.broadcast_to(np.arange(offset, offset + len(block)), scores.shape)
        best_scores, best_rows = _top(np.hstack([best_scores, scores]), np.hstack([best_rows, rows]), k)
        offset += len(block)
    if offset != source.n_rows:
        raise CorpusError(f"the index gave {offset:,} rows, its headers say {source.n_rows:,}")
    return best_rows


def _top(scores: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` highest ``scores`` (unordered) and their ``rows``."""
    if scores.shape[1] <= k:
        return scores, rows
    keep = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return np.take_along_axis(scores, keep, axis=1), np.take_along_axis(rows, keep, axis=1)


@dataclass(frozen=True)
class _Ranked:
    handed: int
    text_encoding_s: float
    level1_s: float


def _rank(
    source: EmbeddingSource,
    encoder: BiEncoder,
    texts: Sequence[str],
    k: int,
    progress: Progress | None,
    batch: int,
    block_rows: int,
) -> _Ranked:
    """The size of the union of ``texts``' level-1 top ``k``; text encoding and ranking timed apart."""
    handed = np.zeros(source.n_rows, dtype=bool)
    text_s = rank_s = 0.0
    for start in range(0, len(texts), batch):
        began = time.perf_counter()
        embedded = np.asarray(encoder.encode_texts(texts[start : start + batch]), dtype=np.float32)
        encoded = time.perf_counter()
        handed[top_k_rows(source, embedded, k, block_rows).ravel()] = True
        text_s, rank_s = text_s + encoded - began, rank_s + time.perf_counter() - encoded
        if progress is not None:
            progress(RANKING, min(start + batch, len(texts)), len(texts))
    return _Ranked(int(np.count_nonzero(handed)), text_s, rank_s)


def upper_image_macs(name: str) -> int:
    """MACs per image of encoder ``name`` at its native resolution, counted on its architecture (no weights)."""
    backend, model = backend_of(name), name.strip().partition(":")[2].partition("@")[0]
    if backend == "openclip":
        from cascade import cost  # torch loads when a count runs, not when the command line parses

        return cost.openclip_image_macs(model, "full")
    if backend == "shapes":
        from cascade.encoders.shapes import CROSS_TOWER, IMAGE_TOWERS  # the built-in family's architectures

        tower = IMAGE_TOWERS.get(CROSS_TOWER if model == "cross" else model)
        return count_image_macs(name, "full", tower.image_size if tower else 0)  # an unknown model raises
    return count_image_macs(name, "full", BLIP_IMAGE_PX)


def _checked_ks(levels: Sequence[str], ks: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(int(k) for k in ks)
    if len(ks) not in {max(1, len(levels) - 1), len(levels)}:
        raise ConfigError(f"{len(levels)} level(s) need {max(1, len(levels) - 1)} or {len(levels)} ks, got {list(ks)}")
    if any(k < 1 for k in ks) or any(b > a for a, b in zip(ks, ks[1:])):
        raise ConfigError(f"ks must be at least 1 and must not grow from level to level, got {list(ks)}")
    return ks


def _level_images(
    levels: Sequence[str], macs: Sequence[int], n_images: int, handed: int, distinct: int, ks: Sequence[int]
) -> tuple[LevelImages, ...]:
    """Level 1 embeds N, level 2 the union; level i > 2 at most min(level i - 1's images, distinct x k_{i-1})."""
    out = [LevelImages(levels[0], macs[0], n_images, False)]
    for i, (name, per_image) in enumerate(zip(levels[1:], macs[1:]), start=1):
        images = handed if i == 1 else min(out[-1].images, distinct * ks[i - 1])
        out.append(LevelImages(name, per_image, images, i > 1))
    return tuple(out)


def estimate(
    source: EmbeddingSource,
    encoder: BiEncoder,
    upper: Sequence[str],
    ks: Sequence[int],
    queries: Iterable[tuple[str, int]],
    profile: hardware.HardwareProfile,
    progress: Progress | None = None,
    *,
    batch: int = QUERY_BATCH,
    block_rows: int = RANK_BLOCK_ROWS,
    image_macs: Callable[[str], int] = upper_image_macs,
) -> LogEstimate:
    """Measure a log's alpha on an existing index and cost the cascade ``[encoder, *upper]`` at it.

    Args:
        source: the index, read in place; it is level 1 (``encoder``'s image embeddings).
        encoder: level 1; only its text tower runs. upper: encoder names of levels 2.., cheapest first.
        ks: ``(k_1, ..., k_{L-1})`` or one per level. queries: ``(query, count)`` pairs, repeats allowed.
        profile: seconds, dollars and kWh per MAC. batch, block_rows: queries and index rows scored at once.
        image_macs: name -> MACs per image of an upper level (tests pass fixed numbers).

    Raises:
        ConfigError: bad ks, a cross-encoder level, or no query. CorpusError: the index does not fit ``encoder``.
    """
    levels = (encoder.id, *upper)
    ks = _checked_ks(levels, ks)
    if any(is_cross_encoder(name) for name in upper):
        raise ConfigError("an estimate costs bi-encoder levels; a cross-encoder embeds no image of its own")
    if source.dim != encoder.dim:
        raise CorpusError(f"the index's embeddings have {source.dim} dimensions, {encoder.id}'s {encoder.dim}")
    macs = [int(encoder.image_macs), *(int(image_macs(name)) for name in upper)]
    texts, total = distinct_queries(queries)
    n_images = source.n_rows
    ranked = _rank(source, encoder, texts, min(ks[0], n_images), progress, batch, block_rows)
    per_level = _level_images(levels, macs, n_images, ranked.handed, len(texts), ks)
    upper_macs = sum(level.images * level.image_macs for level in per_level[1:])
    first_query = sum(min(k, n_images) * c for k, c in zip(ks, macs[1:]))
    return LogEstimate(
        alpha=ranked.handed / n_images,
        queries=total,
        distinct_queries=len(texts),
        images=n_images,
        handed=ranked.handed,
        levels=levels,
        ks=ks,
        text_encoding_s=ranked.text_encoding_s,
        level1_s=ranked.level1_s,
        level_images=per_level,
        build=Cost.on(profile, n_images * macs[0]),
        first_query=Cost.on(profile, first_query),
        lifetime_level1_paid=Cost.on(profile, upper_macs),
        lifetime_from_scratch=Cost.on(profile, n_images * macs[0] + upper_macs),
        top_alone=Cost.on(profile, n_images * macs[-1]),
        hardware=profile.name,
        hardware_label=profile.label,
    )


def hardware_named(name: str | None = None) -> hardware.HardwareProfile:
    """An accelerator profile by its name or a unique part of it (``H100``); None: the table's first (as What-if)."""
    table = hardware.accelerators()
    if name is None:
        return hardware.accelerator_profile(next(iter(table)))
    matches = [key for key in table if key.lower() == name.strip().lower()] or [
        key for key in table if name.strip().lower() in key.lower()
    ]
    if len(matches) != 1:
        raise ConfigError(f"unknown or ambiguous hardware {name!r}; profiles: {', '.join(table)}")
    return hardware.accelerator_profile(matches[0])


def estimate_log(
    src: str | Path,
    levels: Sequence[str],
    ks: Sequence[int],
    log: str | Path,
    hardware_name: str | None = None,
    progress: Progress | None = None,
    **layout: str | None,
) -> LogEstimate:
    """The wiring both faces call: the index at ``src`` (``layout``: ``id_column``, ``embedding_column``, ``paths``
    for ``embedding_sources.detect``), level 1 ``levels[0]`` built by name, the log at ``log`` streamed."""
    if not levels:
        raise ConfigError("name level 1 (the index's encoder) and any upper levels")
    profile = hardware_named(hardware_name)
    source = embedding_sources.detect(src, **layout)
    _checked_ks(levels, ks)  # before a model loads
    encoder = create_encoder(levels[0])
    if not isinstance(encoder, BiEncoder):
        raise ConfigError(f"level 1 must be a bi-encoder (it ranks by text embedding), not {levels[0]}")
    return estimate(source, encoder, levels[1:], ks, query_logs.stream_query_log(log), profile, progress)
