"""CrispSearch, measured: a bi-encoder's top k re-ranked by a cross-encoder, against the cross-encoder alone.

A cross-encoder scores a query jointly with each image, so on its own it pays
``pair_macs`` for every image of the gallery at every query. CrispSearch lets a
cheap bi-encoder rank the gallery (one text encoding and N dot products) and
hands only its top k to the cross-encoder. Both sides reuse cached image
features, so the comparison is of *query* cost, the part that recurs:

    cross alone:  query_macs + N x pair_macs
    cascade:      text_macs + N x dim (ranking) + query_macs + k x pair_macs

(``query_macs``: what the cross-encoder pays once per query, e.g. the ITC query embedding
of BLIP's original scoring, which ranks by ITM logit + ITC similarity.)

``compare`` measures both on a captioned gallery: MACs from the searcher's own
traces, wall time as medians of interleaved queries (so machine noise hits both
sides alike), and Recall@1/5/10 of both. ``compare_architectures`` gives the MAC
side for BLIP checkpoints from their architectures alone (no weights needed).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from analysis.accounting import CostAccumulator
from analysis.cascades import assemble
from analysis.evaluate import RECALL_KS, caption_queries, recall_at_k
from cascade.cache import FeatureCache, MemoryCache
from cascade.corpus import Corpus
from cascade.encoders.base import BiEncoder, CrossEncoder
from cascade.errors import ConfigError
from cascade.search import CascadeSearcher

TOP = max(RECALL_KS)  # results per query: enough for R@10


def cascade_query_macs(text_macs: int, dim: int, n_images: int, k: int, pair_macs: int, query_macs: int = 0) -> int:
    """MACs of one warm CrispSearch query: text encoding, ranking N embeddings of width ``dim``, k pairs."""
    return text_macs + n_images * dim + query_macs + k * pair_macs


def alone_query_macs(n_images: int, pair_macs: int, query_macs: int = 0) -> int:
    """MACs of one warm query of the cross-encoder alone: every image of the gallery is a pair."""
    return query_macs + n_images * pair_macs


@dataclass(frozen=True)
class CrispResult:
    """One CrispSearch comparison on a captioned gallery.

    Recalls are percent at (1, 5, 10). ``*_subset`` figures are measured on the
    ``n_queries`` queries both sides ran (the cross-encoder alone is slow: it may be
    a subset of the captions); ``cascade_recall_all`` covers ``n_queries_all``.

    Attributes:
        bi_encoder, cross_encoder: encoder ids.
        k: candidates the bi-encoder hands to the cross-encoder.
        cascade_query_macs, alone_query_macs: MACs per warm query (medians over the queries; the
            figures do not depend on the query).
        cascade_ms, alone_ms: median wall time per warm query, measured interleaved.
        bi_recall_subset: the bi-encoder alone (its own top 10), same queries.
        build_image_macs_cascade: N x bi-encoder MACs + each image handed to the cross-encoder once.
        build_image_macs_alone: N x the cross-encoder's image MACs.
    """

    bi_encoder: str
    cross_encoder: str
    n_images: int
    k: int
    n_queries: int
    n_queries_all: int
    cascade_query_macs: int
    alone_query_macs: int
    cascade_ms: float
    alone_ms: float
    cascade_recall_subset: tuple[float, ...]
    alone_recall_subset: tuple[float, ...]
    bi_recall_subset: tuple[float, ...]
    cascade_recall_all: tuple[float, ...]
    build_image_macs_cascade: int
    build_image_macs_alone: int

    @property
    def macs_speedup(self) -> float:
        return self.alone_query_macs / self.cascade_query_macs

    @property
    def wall_speedup(self) -> float:
        return self.alone_ms / self.cascade_ms


def spread(n_total: int, n_wanted: int | None) -> np.ndarray:
    """``n_wanted`` indices spread evenly over ``range(n_total)`` (all when None or larger)."""
    if n_wanted is None or n_wanted >= n_total:
        return np.arange(n_total)
    if n_wanted < 1:
        raise ConfigError(f"the number of queries must be at least 1, got {n_wanted}")
    return np.unique(np.linspace(0, n_total - 1, n_wanted).round().astype(np.int64))


def compare(
    bi: BiEncoder,
    cross: CrossEncoder,
    corpus: Corpus,
    k: int,
    n_queries: int | None = 200,
    n_queries_all: int | None = None,
    cache: FeatureCache | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> CrispResult:
    """Measure [bi top-k -> cross] against the cross-encoder over the whole gallery.

    The cross-encoder alone is run as the cascade with ``k_1 = N``: the bi-encoder
    then only orders the gallery (its cost is left out of the alone figures), and
    the cross-encoder scores every image with the same code and cache as the cascade.

    Args:
        bi, cross: the filtering bi-encoder and the re-ranking cross-encoder.
        corpus: a gallery with captions (every caption is a query for its own image).
        k: candidates handed to the cross-encoder, ``TOP <= k <= N``.
        n_queries: captions (spread over the gallery) on which both sides run, timed; None: all.
        n_queries_all: captions for the cascade's recall alone (cheap); None: all.
        cache: feature cache (default: a fresh one in memory).
        progress: called with (done, total) over both passes.
    """
    n_images = len(corpus)
    if not TOP <= k <= n_images:
        raise ConfigError(f"k must lie between {TOP} and the gallery size {n_images}, got {k}")
    texts, positives = caption_queries(corpus)
    cache = cache if cache is not None else MemoryCache()
    searcher = assemble([bi, cross], corpus, cache)
    searcher.build()
    cascade_ks, alone_ks = (k, TOP), (n_images, TOP)
    searcher.search(texts[0], alone_ks)  # warm: every image's cross features are now cached
    counted = CostAccumulator([bi.image_macs, cross.image_macs], n_images)  # the cascade's own queries
    subset, every = spread(len(texts), n_queries), spread(len(texts), n_queries_all)
    total = len(subset) + len(every)
    paired = _interleaved(searcher, [texts[i] for i in subset], cascade_ks, alone_ks, counted, progress, total)
    ranked_all = _cascade_only(searcher, [texts[i] for i in every], cascade_ks, counted, progress, total)
    truth, truth_all = positives[subset], positives[every]
    return CrispResult(
        bi_encoder=bi.id,
        cross_encoder=cross.id,
        n_images=n_images,
        k=k,
        n_queries=len(subset),
        n_queries_all=len(every),
        cascade_query_macs=int(np.median(paired.cascade_macs)),
        alone_query_macs=int(np.median(paired.alone_macs)),
        cascade_ms=statistics.median(paired.cascade_ms),
        alone_ms=statistics.median(paired.alone_ms),
        cascade_recall_subset=_recalls(paired.cascade_ranked, truth),
        alone_recall_subset=_recalls(paired.alone_ranked, truth),
        bi_recall_subset=_recalls(paired.bi_ranked, truth),
        cascade_recall_all=_recalls(ranked_all, truth_all),
        build_image_macs_cascade=counted.image_macs,
        build_image_macs_alone=n_images * cross.image_macs,
    )


def _cascade_only(
    searcher: CascadeSearcher,
    texts: Sequence[str],
    ks: tuple[int, int],
    counted: CostAccumulator,
    progress: Callable[[int, int], None] | None,
    total: int,
) -> np.ndarray:
    """``(len(texts), TOP)`` gallery positions the cascade returns for each text (recall on every caption)."""
    ranked = np.empty((len(texts), TOP), dtype=np.int64)
    for row, text in enumerate(texts):
        result = searcher.search(text, ks)
        counted.add_result(result)
        ranked[row] = _positions(searcher.corpus, result.ids)
        if progress is not None:
            progress(total - len(texts) + row + 1, total)
    return ranked


@dataclass
class _Paired:
    cascade_ranked: np.ndarray
    alone_ranked: np.ndarray
    bi_ranked: np.ndarray
    cascade_ms: list[float]
    alone_ms: list[float]
    cascade_macs: list[int]
    alone_macs: list[int]


def _interleaved(
    searcher: CascadeSearcher,
    texts: Sequence[str],
    cascade_ks: tuple[int, int],
    alone_ks: tuple[int, int],
    counted: CostAccumulator,
    progress: Callable[[int, int], None] | None,
    total: int,
) -> _Paired:
    """Each query through the cascade, then through the cross-encoder alone; rankings, times, MACs."""
    n = len(texts)
    paired = _Paired(*(np.empty((n, TOP), dtype=np.int64) for _ in range(3)), [], [], [], [])
    for row, text in enumerate(texts):
        cascade = searcher.search(text, cascade_ks)
        alone = searcher.search(text, alone_ks)
        ranking = cascade.levels[0]
        # The alone pass's level 1 only orders the gallery for the cross-encoder: neither its time nor its
        # MACs are the cross-encoder's. Both sides are timed by the searcher's own per-level clocks.
        paired.cascade_ms.append(cascade.latency_ms)
        paired.alone_ms.append(alone.levels[1].latency_ms)
        paired.cascade_macs.append(cascade.text_macs + ranking.candidates * searcher.levels[0].dim)
        paired.alone_macs.append(alone.levels[1].text_macs)
        counted.add_result(cascade)
        paired.cascade_ranked[row] = _positions(searcher.corpus, cascade.ids)
        paired.alone_ranked[row] = _positions(searcher.corpus, alone.ids)
        paired.bi_ranked[row] = _positions(searcher.corpus, ranking.ids[:TOP])
        if progress is not None:
            progress(row + 1, total)
    return paired


def _positions(corpus: Corpus, ids: Sequence[str]) -> list[int]:
    return [corpus.position(image_id) for image_id in ids[:TOP]]


def _recalls(ranked: np.ndarray, positives: np.ndarray) -> tuple[float, ...]:
    return tuple(recall_at_k(ranked, positives, k) for k in RECALL_KS)


# ---------------------------------------------------------------- BLIP, from the architectures

# Salesforce's ITM checkpoints (blip-itm-base-coco, blip-itm-large-coco) as data: a ViT-B/16 or
# ViT-L/16 vision tower at 384 px, and the same BERT-base text encoder whose cross-attention reads
# the vision tower's width. transformers' BlipConfig defaults are the base checkpoint's.
BLIP_ARCHITECTURES: dict[str, dict] = {
    "base": {"vision_config": {}, "text_config": {}},
    "large": {
        "vision_config": {
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "num_hidden_layers": 24,
            "num_attention_heads": 16,
        },
        "text_config": {"encoder_hidden_size": 1024},
    },
}


@dataclass(frozen=True)
class CrispMacs:
    """The MAC side of a CrispSearch comparison, from architectures (per warm query)."""

    bi_encoder: str
    cross_encoder: str
    n_images: int
    k: int
    cascade_query_macs: int
    alone_query_macs: int
    pair_macs: int

    @property
    def macs_speedup(self) -> float:
        return self.alone_query_macs / self.cascade_query_macs


def blip_config(variant: str):
    """A ``BlipConfig`` of the ``base`` or ``large`` ITM checkpoint's architecture (no weights)."""
    from transformers import BlipConfig

    if variant not in BLIP_ARCHITECTURES:
        raise ConfigError(f"unknown BLIP variant {variant!r}; known: {', '.join(BLIP_ARCHITECTURES)}")
    return BlipConfig(**BLIP_ARCHITECTURES[variant])


def compare_architectures(bi_variant: str, cross_variant: str, n_images: int, k: int, mode: str = "full") -> CrispMacs:
    """[BLIP-``bi_variant`` ITC top-k -> BLIP-``cross_variant`` ITM] against that ITM alone, in MACs per query."""
    from cascade.encoders.blip import count_blip_macs

    if not 1 <= k <= n_images:
        raise ConfigError(f"k must lie between 1 and the gallery size {n_images}, got {k}")
    bi_config = blip_config(bi_variant)
    bi, cross = count_blip_macs(bi_config, mode), count_blip_macs(blip_config(cross_variant), mode)
    # The default (original) ITM scoring adds the ITC similarity: vision_proj per pair, the query's ITC embedding once.
    pair_macs, query_macs = cross.pair_macs + cross.itc_pair_macs, cross.text_macs
    return CrispMacs(
        bi_encoder=f"blip:{bi_variant}",
        cross_encoder=f"blip:{cross_variant}+itm",
        n_images=n_images,
        k=k,
        cascade_query_macs=cascade_query_macs(
            bi.text_macs, bi_config.image_text_hidden_size, n_images, k, pair_macs, query_macs
        ),
        alone_query_macs=alone_query_macs(n_images, pair_macs, query_macs),
        pair_macs=pair_macs,
    )
