"""How level 1 ranks the whole gallery: one strategy per kind of index, chosen once per searcher.

Every strategy ranks a block of query embeddings ``(B, d)`` and returns, per query, the
corpus positions of its k best images and their scores, best first. ``search`` is a block
of one; ``search_many`` hands blocks of ``block_size`` queries (within the searcher's budget).

- ``ExactFloat32``: one ``(B, d) @ (d, N)`` product per block, then the stable ``top_k``.
- ``ExactFloat16``: float16 storage at half the memory, ranked exactly by ``half_top_k``.
- ``FaissRanking``: an approximate FAISS index (``cascade.index``).
- ``Reranked``: an approximate index's shortlist, re-scored exactly from the matrix level 1 holds
  (``auto``'s IVF-PQ candidates: FAISS's ``RFlat`` would keep a float32 copy of its own).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from cascade.errors import ConfigError
from cascade.index import FaissIndex, reranked
from cascade.ranking import dot_block, half_top_k, max_row_norm, top_k

Ranked = tuple[np.ndarray, np.ndarray]  # (corpus positions (k,), float32 scores (k,)), best first

# Strategies that rank query by query take blocks of one, so each query's text is also encoded alone,
# as ``search`` encodes it (a batched forward pass rounds differently). Batching the text tower is
# worth that only where one matmul ranks the whole block: exact float32.


class Level1Ranking(Protocol):
    """Level 1's ranking of all N images for a block of queries."""

    def block_size(self, max_queries: int, max_scores: int) -> int:
        """How many queries ``rank`` takes at once, holding at most ``max_scores`` (query, image) scores."""
        ...

    def rank(self, queries: np.ndarray, k: int) -> list[Ranked]:
        """``(B, d)`` query embeddings -> B (positions, scores), each at most k long, best first."""
        ...


class ExactFloat32:
    """Exact inner products over a float32 ``(N, d)`` matrix: the reference ranking."""

    def __init__(self, matrix: np.ndarray) -> None:
        self.matrix = matrix

    def block_size(self, max_queries: int, max_scores: int) -> int:
        return max(1, min(max_queries, max_scores // len(self.matrix)))

    def rank(self, queries: np.ndarray, k: int) -> list[Ranked]:
        scores = dot_block(self.matrix, queries)  # (B, N); for B = 1 numpy runs the same GEMV as ``dot``
        orders = [top_k(row, k) for row in scores]
        return [(order, row[order]) for order, row in zip(orders, scores)]


class ExactFloat16:
    """Exact ranking of a float16 ``(N, d)`` matrix, query by query (``half_top_k`` filters one GEMV)."""

    def __init__(self, matrix: np.ndarray) -> None:
        self.matrix = matrix
        self.max_norm = max_row_norm(matrix)  # bounds the float16 rounding half_top_k allows for

    def block_size(self, max_queries: int, max_scores: int) -> int:
        return 1  # see the note above Level1Ranking

    def rank(self, queries: np.ndarray, k: int) -> list[Ranked]:
        return [half_top_k(self.matrix, query, k, self.max_norm) for query in queries]


class FaissRanking:
    """An approximate FAISS index, searched query by query.

    Not as one batch: FAISS's flat indexes switch to a BLAS product above 20 queries,
    which rounds differently, and a query's ranking must not depend on its neighbours.
    """

    def __init__(self, index: FaissIndex) -> None:
        self.index = index

    def block_size(self, max_queries: int, max_scores: int) -> int:
        return 1  # see the note above Level1Ranking

    def rank(self, queries: np.ndarray, k: int) -> list[Ranked]:
        return [self.index.search(query, k) for query in np.asarray(queries, dtype=np.float32)]


class Reranked:
    """An approximate index asked for ``index.spec.shortlist`` x k candidates per query, re-scored exactly from
    ``matrix``.

    The re-rank reads ``shortlist * k`` rows of the ``(N, d)`` matrix (float32 or float16) the searcher
    already holds; the k best of them by exact inner product are kept, best first.
    """

    def __init__(self, index: FaissIndex, matrix: np.ndarray) -> None:
        if index.spec.shortlist < 1:
            raise ConfigError(f"a re-ranked shortlist must hold at least k candidates, got {index.spec.shortlist} x k")
        self.index = index
        self.matrix = matrix

    @property
    def shortlist(self) -> int:
        return self.index.spec.shortlist

    def block_size(self, max_queries: int, max_scores: int) -> int:
        return 1  # see the note above Level1Ranking

    def rank(self, queries: np.ndarray, k: int) -> list[Ranked]:
        return [reranked(self.index, self.matrix, query, k) for query in np.asarray(queries, dtype=np.float32)]


def faiss_ranking(index: FaissIndex, matrix: np.ndarray) -> FaissRanking | Reranked:
    """The strategy of an approximate index: its shortlist re-ranked from ``matrix`` when its spec names one
    (``+rerank=R``), else its own ranking."""
    return Reranked(index, matrix) if index.spec.shortlist else FaissRanking(index)


def stack_rows(rows: Mapping[str, np.ndarray], ids: Sequence[str], dtype: str) -> np.ndarray:
    """``(len(ids), d)`` rows in ``ids`` order in ``dtype``; float16 is filled row by row (no float32 copy)."""
    if dtype == "float32":
        return np.stack([rows[image_id] for image_id in ids]).astype(np.float32, copy=False)
    matrix = np.empty((len(ids), len(rows[ids[0]])), dtype=dtype)
    for row, image_id in enumerate(ids):
        matrix[row] = rows[image_id]
    return matrix


def exact_ranking(matrix: np.ndarray) -> ExactFloat32 | ExactFloat16:
    """The exact strategy for ``matrix``'s storage dtype.

    Raises:
        ConfigError: a dtype other than float32 or float16.
    """
    if matrix.dtype == np.float32:
        return ExactFloat32(matrix)
    if matrix.dtype == np.float16:
        return ExactFloat16(matrix)
    raise ConfigError(f"level 1's matrix must be float32 or float16, got {matrix.dtype}")
