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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from analysis.accounting import CostAccumulator
from cascade.corpus import Corpus
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
    """Recall and fresh-system cost of one configuration on one dataset.

    Attributes:
        recall: percent of captions whose image is in the top k, by k (``RECALL_KS``).
        image_macs: build (N x C_1) + each image embedded once by each level >= 2 that needed it.
        alpha: share of the gallery ever handed above level 1 (0 for one level).
    """

    levels: tuple[str, ...]
    ks: tuple[int, ...]
    recall: Mapping[int, float]
    image_macs: int
    alpha: float
    n_images: int
    n_queries: int

    def as_json(self) -> dict:
        """The documented row: ``r1``, ``r5``, ``r10`` beside the cost and sizes."""
        return {
            "levels": list(self.levels),
            "ks": list(self.ks),
            **{f"r{k}": value for k, value in self.recall.items()},
            "image_macs": self.image_macs,
            "alpha": self.alpha,
            "n_images": self.n_images,
            "n_queries": self.n_queries,
        }


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
    counted = CostAccumulator([level.image_macs for level in searcher.levels], n_images)
    embeddings = (captions if captions is not None else CaptionEmbeddings()).of(searcher.levels, texts)
    for i, result in enumerate(searcher.search_many(texts, ks, text_embeddings=embeddings)):
        ranked[i] = [searcher.corpus.position(image_id) for image_id in result.ids[:top]]
        counted.add_result(result)
        if progress is not None:
            progress(i + 1, len(texts))
    return EvalResult(
        levels=searcher.level_ids,
        ks=ks,
        recall={k: recall_at_k(ranked, positives, k) for k in RECALL_KS},
        image_macs=counted.image_macs,
        alpha=counted.alpha,
        n_images=n_images,
        n_queries=len(texts),
    )


JSON_KEYS = ("levels", "ks", "r1", "r5", "r10", "image_macs", "alpha")  # the documented ``--json`` row
