"""Recall@k of a cascade, and what it costs over the evaluation's lifetime.

Protocol (text -> image, as in the paper and CLIP_benchmark): every caption is a
query; it is a hit at k when its own image is among the top k results. "Recall"
in CLIP papers means "any positive in the top k": with one image per caption
that is the same as the fraction of captions whose image is retrieved.

Cost is counted for a *fresh* system, whatever the cache already holds: level 1
embeds the whole gallery (N x C_1), and level i >= 2 embeds each image the first
time any query hands it that image. So the figure does not depend on earlier
runs, and alpha = share of the gallery ever embedded above level 1.

    cascade compare --preset shapes --json
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from analysis import presets
from analysis.presets import Preset
from cascade.cache import MemoryCache
from cascade.corpus import Corpus, ProgressFn
from cascade.encoders import create_encoder
from cascade.encoders.base import BiEncoder
from cascade.errors import ConfigError
from cascade.search import CascadeSearcher

RECALL_KS: tuple[int, ...] = (1, 5, 10)


def recall_at_k(ranked: np.ndarray, positives: np.ndarray, k: int) -> float:
    """Percent of queries whose positive image is in their top k.

    Args:
        ranked: ``(n_queries, n_ranked)`` image indices, best first (n_ranked may be < k:
            a query's missing ranks are misses).
        positives: ``(n_queries,)`` index of each query's image.
        k: cut-off.
    """
    if len(ranked) == 0:
        raise ValueError("recall needs at least one query")
    hits = (ranked[:, :k] == positives[:, None]).any(axis=1)
    return 100.0 * float(hits.mean())


@dataclass(frozen=True)
class EvalResult:
    """Recall (percent) and fresh-system cost of one configuration on one dataset."""

    levels: tuple[str, ...]
    ks: tuple[int, ...]
    r1: float
    r5: float
    r10: float
    image_macs: int  # build (N x C_1) + each image embedded once by each level >= 2 that needed it
    alpha: float  # share of the gallery ever embedded above level 1 (0 for one level)
    n_images: int
    n_queries: int

    def as_json(self) -> dict:
        row = asdict(self)
        row["levels"], row["ks"] = list(self.levels), list(self.ks)
        return row


def caption_queries(corpus: Corpus) -> tuple[list[str], np.ndarray]:
    """Every caption of the corpus as a query, with the corpus index of its image."""
    texts, positives = [], []
    for index, image_id in enumerate(corpus.ids):
        for caption in corpus.captions.get(image_id, []):
            texts.append(caption)
            positives.append(index)
    if not texts:
        raise ConfigError("the dataset has no captions to use as queries")
    return texts, np.asarray(positives)


class CaptionEmbeddings:
    """The captions' embeddings by each text tower, encoded once for every evaluation over one list of captions.

    Cascades evaluated on one gallery (``compare``, ``reproduce``, a k_1 sweep) share text towers: the
    ViT family's ViT-g-14 tower is in four of Table 1's six rows. Passed to each ``evaluate``, it encodes
    the captions once per tower instead of once per cascade.
    """

    def __init__(self) -> None:
        self._texts: tuple[str, ...] | None = None
        self._by_tower: dict[str, np.ndarray] = {}

    def of(self, levels: Sequence, texts: Sequence[str], batch_size: int = 512) -> dict[str, np.ndarray]:
        """``{text tower id: (len(texts), d)}`` for the bi-encoder levels, encoding the towers not seen yet.

        Raises:
            ValueError: ``texts`` differ from the captions this object was first asked for.
        """
        texts = tuple(texts)
        if self._texts is None:
            self._texts = texts
        elif texts != self._texts:
            raise ValueError("CaptionEmbeddings holds one list of captions; these differ (another gallery or limit)")
        towers = {}
        for level in levels:
            if isinstance(level, BiEncoder):
                if level.text_tower_id not in self._by_tower:
                    batches = [texts[start : start + batch_size] for start in range(0, len(texts), batch_size)]
                    self._by_tower[level.text_tower_id] = np.concatenate([level.encode_texts(b) for b in batches])
                towers[level.text_tower_id] = self._by_tower[level.text_tower_id]
        return towers


def evaluate(
    searcher: CascadeSearcher,
    ks: Sequence[int],
    progress: Callable[[int, int], None] | None = None,
    limit: int | None = None,
    captions: CaptionEmbeddings | None = None,
) -> EvalResult:
    """Run every caption of ``searcher.corpus`` through the cascade and measure Recall@1/5/10.

    Args:
        searcher: a searcher over a corpus with captions; it should not log (evaluation
            queries would otherwise fill the cost charts).
        ks: one k per level; the last (the number of results) must be >= 10 for R@10, or
            hold the whole gallery when it has fewer than 10 images (R@k is then R@N for k > N).
        progress: called with (done, total) after each query.
        limit: evaluate only the first ``limit`` captions (quick looks).
        captions: the captions' text embeddings shared with other evaluations of the same captions
            (``CaptionEmbeddings``); by default they are encoded here, in batches. One query at a time, a
            small text tower's fixed overhead would dominate; the searcher bills the batch-encoded
            embeddings per query as if it had computed them.
    """
    ks, n_images = tuple(ks), len(searcher.corpus)
    top = min(max(RECALL_KS), n_images)  # R@k with k capped at the gallery size, as CLIP_benchmark's
    if ks and ks[-1] < top:
        raise ConfigError(f"evaluation needs the last k >= {top} to measure R@{top}, got {ks[-1]}")
    texts, positives = caption_queries(searcher.corpus)
    if limit is not None:
        texts, positives = texts[:limit], positives[:limit]
    ranked = np.empty((len(texts), top), dtype=np.int64)
    needed: list[set[str]] = [set() for _ in searcher.levels]  # images each level >= 2 had to have
    embeddings = (captions if captions is not None else CaptionEmbeddings()).of(searcher.levels, texts)
    for i, result in enumerate(searcher.search_many(texts, ks, text_embeddings=embeddings)):
        ranked[i] = [searcher.corpus.position(image_id) for image_id in result.ids[:top]]
        for index in range(1, len(result.levels)):  # level i is handed level i-1's kept ids
            needed[index].update(result.levels[index - 1].ids)
        if progress is not None:
            progress(i + 1, len(texts))
    image_macs = n_images * searcher.levels[0].image_macs
    image_macs += sum(len(ids) * level.image_macs for ids, level in zip(needed[1:], searcher.levels[1:]))
    return EvalResult(
        levels=searcher.level_ids,
        ks=ks,
        r1=recall_at_k(ranked, positives, 1),
        r5=recall_at_k(ranked, positives, 5),
        r10=recall_at_k(ranked, positives, 10),
        image_macs=image_macs,
        alpha=len(needed[1]) / n_images if len(needed) > 1 else 0.0,
        n_images=n_images,
        n_queries=len(texts),
    )


JSON_KEYS = ("levels", "ks", "r1", "r5", "r10", "image_macs", "alpha")  # the documented ``--json`` row


def compare(
    preset: Preset, limit: int | None = None, progress: Callable[[int, Sequence[str]], ProgressFn | None] | None = None
) -> Iterator[EvalResult]:
    """Evaluate every comparison of ``preset`` on its test gallery (no logging), yielding each row when done.

    One in-memory cache serves all comparisons: rows are keyed by encoder, and the
    evaluator's cost figures do not depend on what the cache held before.

    Args:
        progress: called with (comparison index, its levels) before each comparison; may
            return a ``progress(done, total)`` callback for that comparison's queries.
    """
    corpus, cache, captions = presets.gallery(preset.name), MemoryCache(), CaptionEmbeddings()
    for index, (levels, ks) in enumerate(preset.comparisons):
        searcher = CascadeSearcher([create_encoder(level) for level in levels], corpus, cache=cache)
        yield evaluate(searcher, ks, progress=progress(index, levels) if progress else None, limit=limit,
                       captions=captions)  # fmt: skip
