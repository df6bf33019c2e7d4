"""Algorithm 1 of "Bi-Encoder Cascades for Efficient Image Search", any depth.

Level 1 embeds the whole corpus once (``build``). A query ranks all N images
with level 1, keeps the top k_1, and each later level re-scores the k it is
handed with its own encoder, embedding an image only the first time any query
needs it (a cache miss) and keeping it for every later query. A last level may
be a cross-encoder (CrispSearch): it scores the query jointly with each
candidate, paying ``pair_macs`` per candidate on the text side.

This module coordinates only: encoders, the feature cache and the query log are
handed in, so tests pass fakes and the app passes the DuckDB store.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from functools import partial
from typing import Protocol

import numpy as np

from cascade.cache import FeatureCache, MemoryCache
from cascade.corpus import Corpus, ProgressFn
from cascade.embedding import EmbedClock, encode_batches
from cascade.encoders.base import BiEncoder, CrossEncoder, ImageTower
from cascade.errors import ConfigError
from cascade.gap_queries import sample_queries
from cascade.index import (
    FaissIndex,
    IndexPlan,
    IndexRecall,
    check_recall,
    load_or_build,
    recall_of,
)
from cascade.index_auto import AutoLevel1
from cascade.index_spec import AUTO
from cascade.level1 import Level1Ranking, exact_ranking, faiss_ranking, stack_rows
from cascade.ranking import dot, top_k
from cascade.types import BuildReport, CascadeConfig, LevelTrace, SearchResult, level_trace, validate_ks
from cascade.types import check_query as _check_query


class QueryLog(Protocol):
    """Where finished searches are recorded (the DuckDB store implements it)."""

    def record(self, result: SearchResult, corpus_id: str, corpus_size: int) -> None:
        """Store one finished search (atomically: all of it or nothing)."""
        ...


class CascadeSearcher:
    """Runs cascaded searches over one corpus.

    Args:
        levels: the encoders, cheapest first. Level 1 must be a BiEncoder; a
            CrossEncoder may only be the last level.
        corpus: the images.
        cache: persistent feature cache shared by all levels (default: in memory).
        log: optional query log; every search is recorded exactly once.
        batch_size: images per forward pass when embedding.
        index: how level 1 ranks the gallery (default: exact float32 matmul, the reference);
            an approximate index is built at ``build`` and served only above its recall gate.

    Thread safety: ``search`` may be called from several threads at once. A
    level's misses are claimed image by image before they are encoded, so two
    queries never embed (or pay for) the same image twice, and queries missing
    different images encode them at the same time.
    """

    def __init__(
        self,
        levels: Sequence[ImageTower],
        corpus: Corpus,
        cache: FeatureCache | None = None,
        log: QueryLog | None = None,
        batch_size: int = 32,
        index: IndexPlan | None = None,
    ) -> None:
        _check_levels(levels)
        if len(corpus) == 0:
            raise ConfigError("the image collection is empty")
        self.levels = list(levels)
        self.corpus = corpus
        self.cache: FeatureCache = cache if cache is not None else MemoryCache()
        self.log = log
        self.batch_size = batch_size
        self._matrix: np.ndarray | None = None  # (N, d) level-1 embeddings, corpus order
        self.index = index if index is not None else IndexPlan()
        self._faiss: FaissIndex | None = None
        self._auto: AutoLevel1 | None = None  # ``auto``: its pick per k_1, made on first use
        self._level1: Level1Ranking | None = None  # chosen once the matrix (and any index) is installed
        self._recall_lock = threading.Lock()
        self._build_lock = threading.Lock()
        self._level_memory: list[dict[str, np.ndarray]] = [{} for _ in self.levels]
        self._level_locks = [threading.Lock() for _ in self.levels]  # guard memory and in-flight claims only
        self._in_flight: list[dict[str, threading.Event]] = [{} for _ in self.levels]  # image id -> its encode

    @property
    def level1_matrix(self) -> np.ndarray | None:
        """Level 1's ``(N, d)`` rows in corpus order as ranked (an import's mapped file), once built; else None."""
        return self._matrix

    @property
    def level1_index(self) -> FaissIndex | None:
        """The FAISS index level 1 searches (built or loaded), when the plan names one; else None."""
        return self._faiss

    @property
    def level_ids(self) -> tuple[str, ...]:
        return tuple(level.id for level in self.levels)

    def config(self, ks: Sequence[int]) -> CascadeConfig:
        return CascadeConfig(levels=self.level_ids, ks=tuple(ks))

    # -- build ---------------------------------------------------------------------------------

    def build(self, progress: ProgressFn | None = None) -> BuildReport:
        """Embed every corpus image with level 1 (reusing cached rows), batch by batch.

        Each batch is written to the cache as soon as it is encoded, so a killed
        build resumes where it stopped. Idempotent: a second call costs nothing.
        """
        with self._build_lock:
            first = self.levels[0]
            cached = self.cache.get(first.id, self.corpus.ids)
            todo = [image_id for image_id in self.corpus.ids if image_id not in cached]
            if progress is not None:
                progress(len(cached), len(self.corpus))
            for batch_ids, features in encode_batches(first, self.corpus, todo, self.batch_size):
                fresh = dict(zip(batch_ids, features))
                self.cache.put(first.id, fresh)
                cached.update(fresh)
                if progress is not None:
                    progress(len(cached), len(self.corpus))
            self._install(cached)
            return BuildReport(
                encoder=first.id,
                images=len(self.corpus),
                embedded=len(todo),
                reused=len(self.corpus) - len(todo),
                image_macs=len(todo) * first.image_macs,
            )

    def _install(self, cached: Mapping[str, np.ndarray]) -> None:
        """Stack level 1's rows in corpus order in the plan's dtype; load or build its FAISS index."""
        self.install_level1(stack_rows(cached, self.corpus.ids, self.index.spec.dtype))

    def install_level1(self, matrix: np.ndarray, rows: str = "") -> None:
        """Install level 1's ``(N, d)`` rows in corpus order, then the plan's index over them (loaded or built).

        Args:
            rows: what names these rows beyond the gallery and the encoder (an import's version): an index or
                an ``auto`` pick saved for other rows of the same images is then never reused for these.
        """
        self.use_level1_matrix(matrix)
        gallery = self.corpus.fingerprint + (f"@{rows}" if rows else "")
        if self.index.spec.kind == AUTO:
            self._auto = AutoLevel1(self.index, matrix, self.corpus, self.levels[0], gallery=gallery)
        elif self.index.spec.approximate:
            self._faiss = load_or_build(self.index, matrix, (self.levels[0].id, gallery, self.index.spec.factory))
            self._level1 = faiss_ranking(self._faiss, matrix)

    def use_level1_matrix(self, matrix: np.ndarray) -> None:
        """Install precomputed level-1 embeddings ``(N, d)`` in corpus order (benchmarks, float16 ok).

        Level 1 then ranks them exactly, float32 or float16 by their dtype.

        Raises:
            ConfigError: a row count other than the corpus's, or a dtype other than float32 or float16.
        """
        if matrix.shape[0] != len(self.corpus):
            raise ConfigError(f"matrix has {matrix.shape[0]} rows for {len(self.corpus)} images")
        self._level1 = exact_ranking(matrix)
        self._matrix = matrix

    def index_recall(self, k: int) -> IndexRecall | None:
        """Level 1's recall@k with the approximate index against exact (measured once, kept with the index).

        None for exact search. Queries: the gallery's captions (encoded by level 1) when it
        has them, else gallery embeddings, each query's own image left out.
        """
        if not self.index.spec.approximate:
            return None
        if self._matrix is None:
            self.build()
        if self._auto is not None:
            return self._auto.recall(k)
        with self._recall_lock:
            queries = partial(sample_queries, self.corpus, self.levels[0], self._matrix, self.index.sample_queries)
            return recall_of(self._faiss, self.index, self._matrix, k, queries)

    # -- search --------------------------------------------------------------------------------

    def search(
        self, query: str, ks: Sequence[int], text_embeddings: Mapping[str, np.ndarray] | None = None
    ) -> SearchResult:
        """Run one query through every level.

        Args:
            query: free text; must contain something other than whitespace.
            ks: one k per level, ``N >= k_1 >= ... >= k_L >= 1``; the last is the number of results.
            text_embeddings: the query's embeddings by text tower id, if the caller already has
                them (an evaluator encodes all its queries in batches). They are billed as if
                computed here: once per query and tower.

        Returns:
            A SearchResult with one LevelTrace per level.

        Raises:
            ConfigError: empty query or invalid ks.
        """
        rows = {tower: np.asarray(embedding)[None] for tower, embedding in (text_embeddings or {}).items()}
        return next(self._searches([query], ks, rows))

    def search_many(
        self, queries: Sequence[str], ks: Sequence[int], text_embeddings: Mapping[str, np.ndarray] | None = None
    ) -> Iterator[SearchResult]:
        """``search`` of each query in turn, level 1 ranked for a block of queries at once.

        The results (and the log) are those of ``search`` query by query. Exact float32 scores
        a block with one ``(B, d) @ (d, N)`` product instead of B; the other strategies rank
        query by query (``cascade.level1``). Level 1's latency is its block's (text encoding
        and ranking) shared evenly.

        Args:
            text_embeddings: ``(len(queries), d)`` rows by text tower id, if the caller has them;
                level 1's tower is encoded block by block when absent.

        Yields:
            One SearchResult per query, in order.
        """
        return self._searches(queries, ks, text_embeddings)

    def _searches(
        self, queries: Sequence[str], ks: Sequence[int], text_embeddings: Mapping[str, np.ndarray] | None
    ) -> Iterator[SearchResult]:
        """What ``search`` and ``search_many`` run (a caller may replace either on an instance, not this)."""
        for query in queries:
            _check_query(query)
        validate_ks(tuple(ks), n_levels=len(self.levels), n_images=len(self.corpus))
        ranking = self._level1_ready(ks[0])
        first, given = self.levels[0], dict(text_embeddings or {})
        block = ranking.block_size(_BLOCK_QUERIES, _BLOCK_SCORES)
        for start in range(0, len(queries), block):
            texts = list(queries[start : start + block])
            rows = given[first.text_tower_id][start : start + block] if first.text_tower_id in given else None
            rows, traces = self._rank_block(ranking, texts, rows, ks[0])
            for offset, (query, trace) in enumerate(zip(texts, traces)):
                embeddings = {tower: values[start + offset] for tower, values in given.items()}
                embeddings[first.text_tower_id] = rows[offset]
                yield self._finish(query, ks, trace, embeddings, {first.text_tower_id})

    def _level1_ready(self, k: int) -> Level1Ranking:
        """Level 1's strategy, built on first use; an approximate index only past its recall gate."""
        if self._level1 is None:
            self.build()
        if self._auto is not None:
            return self._auto.ranking(k)
        if self.index.spec.approximate:
            check_recall(self.index_recall(k), self.index.min_recall)
        return self._level1

    def _rank_block(
        self, ranking: Level1Ranking, texts: list[str], rows: np.ndarray | None, k: int
    ) -> tuple[np.ndarray, list[LevelTrace]]:
        """Level 1 for a block of queries -> their ``(B, d)`` embeddings and one trace each.

        Args:
            rows: the block's ``(B, d)`` level-1 text embeddings when the caller has them, else None.
        """
        first = self.levels[0]
        started = time.perf_counter()
        rows = first.encode_texts(texts) if rows is None else np.asarray(rows)
        ranked = ranking.rank(rows, k)
        latency_ms = (time.perf_counter() - started) * 1000.0 / len(texts)  # the block's cost, shared evenly
        traces = [
            level_trace(first, k, self.corpus.ids, at, scores, [], first.text_macs, latency_ms) for at, scores in ranked
        ]
        return rows, traces

    def _finish(
        self, query: str, ks: Sequence[int], first: LevelTrace, embeddings: dict[str, np.ndarray], billed: set[str]
    ) -> SearchResult:
        """Run levels 2.. from level 1's trace, then log the search once."""
        traces = [first]
        for level_index in range(1, len(self.levels)):
            candidates = list(traces[-1].ids)
            traces.append(self._rerank(level_index, query, candidates, ks[level_index], embeddings, billed))
        result = SearchResult(query=query, config=self.config(ks), levels=tuple(traces))
        if self.log is not None:
            self.log.record(result, corpus_id=self.corpus.fingerprint, corpus_size=len(self.corpus))
        return result

    def _rerank(
        self,
        level_index: int,
        query: str,
        candidates: Sequence[str],
        k: int,
        text_embeddings: dict[str, np.ndarray],
        billed: set[str],
    ) -> LevelTrace:
        """Level ``level_index`` (1 or more: after level 1) re-scores the ``candidates`` it is handed."""
        level = self.levels[level_index]
        started = time.perf_counter()
        text_macs = 0
        if isinstance(level, BiEncoder):
            tower = level.text_tower_id
            if tower not in text_embeddings:  # a shared text tower runs once per query
                text_embeddings[tower] = level.encode_texts([query])[0]
            if tower not in billed:
                billed.add(tower)
                text_macs = level.text_macs
        clock = EmbedClock()
        features, missed = self._features(level_index, level, candidates, clock)
        if isinstance(level, CrossEncoder):
            given = text_embeddings.get(level.query_tower_id) if level.query_tower_id else None
            scores = np.asarray(level.score(query, features, query_embedding=given), dtype=np.float32)
            text_macs = level.query_macs + level.pair_macs * len(candidates)
        else:
            scores = dot(features, text_embeddings[tower])
        order = top_k(scores, k)
        latency_ms = (time.perf_counter() - started) * 1000.0
        return level_trace(level, k, candidates, order, scores[order], missed, text_macs, latency_ms, clock.times())

    def _features(
        self, level_index: int, level: ImageTower, candidates: list[str], clock: EmbedClock | None = None
    ) -> tuple[np.ndarray, list[str]]:
        """Features of ``candidates`` for level ``level_index`` (stacked in order) and the ids encoded now.

        The level's lock guards only its bookkeeping: an absent image is claimed (an Event in
        ``_in_flight``) and then read from the cache or encoded without the lock, so queries
        missing other images run at the same time. A query that needs an image another query
        has claimed waits for that claim alone and counts the image as a hit; if the claiming
        query fails, the image is claimed again by whoever still needs it.
        """
        memory, in_flight, lock = (
            self._level_memory[level_index],
            self._in_flight[level_index],
            self._level_locks[level_index],
        )
        missed: list[str] = []
        clock = clock if clock is not None else EmbedClock()  # where this level's embedding time is added up
        while True:
            with lock:
                claim = [i for i in dict.fromkeys(candidates) if i not in memory and i not in in_flight]
                mine = threading.Event()
                in_flight.update(dict.fromkeys(claim, mine))
                others = {id(e): e for i in candidates if i not in memory and (e := in_flight[i]) is not mine}
            try:
                missed += self._fill(level_index, level, claim, clock)
            finally:
                with lock:
                    for image_id in claim:
                        del in_flight[image_id]
                mine.set()
            for event in others.values():
                event.wait()
            with lock:
                if all(image_id in memory for image_id in candidates):
                    return np.stack([memory[image_id] for image_id in candidates]), missed

    def _fill(self, level_index: int, level: ImageTower, claim: list[str], clock: EmbedClock) -> list[str]:
        """Put ``claim`` (ids this thread has claimed) into level ``level_index``'s memory; return those encoded."""
        if not claim:
            return []
        memory, lock = self._level_memory[level_index], self._level_locks[level_index]
        found = self.cache.get(level.id, claim)
        with lock:
            memory.update(found)
        missed = [image_id for image_id in claim if image_id not in found]
        for batch_ids, features in encode_batches(level, self.corpus, missed, self.batch_size, clock):
            fresh = dict(zip(batch_ids, features))
            self.cache.put(level.id, fresh)
            with lock:
                memory.update(fresh)
        return missed


def _check_levels(levels: Sequence[ImageTower]) -> None:
    if not levels:
        raise ConfigError("a cascade needs at least one level")
    if not isinstance(levels[0], BiEncoder):
        raise ConfigError(f"level 1 must be a bi-encoder (it embeds the whole collection), got {levels[0].id}")
    for level in levels[:-1]:
        if isinstance(level, CrossEncoder):
            raise ConfigError(f"a cross-encoder can only be the last stage, got {level.id} before the end")


_BLOCK_QUERIES = 256  # queries ranked per level-1 matmul in search_many
_BLOCK_SCORES = 1 << 23  # at most this many (query, image) scores at once: 32 MiB of float32
