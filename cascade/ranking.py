"""Ranking scores: the stable top k, and exact top k over float16 storage at the speed of its bytes."""

from __future__ import annotations

import numpy as np

_NORM_ROWS = 1 << 16  # rows upcast at a time when measuring a float16 matrix


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best scores, best first; ties keep the candidates' incoming order.

    That holds at the cut too: of the candidates tied with the k-th best score, the
    earliest are kept (``argpartition`` alone would pick among them arbitrarily).
    """
    if k < len(scores):
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]  # the k-th best value
        above = np.flatnonzero(scores > kth)
        tied = np.flatnonzero(scores == kth)[: k - len(above)]
        part = np.concatenate([above, tied])
    else:
        part = np.arange(len(scores))
    order = np.lexsort((part, -scores[part]))  # primary: score desc; secondary: incoming rank
    return part[order]


def max_row_norm(matrix: np.ndarray) -> float:
    """Largest L2 norm of a row of ``matrix`` ``(n, d)`` (any float dtype), in slices."""
    import torch  # here, not at the top: importing the engine (and ``cascade --help``) stays torch-free

    rows = torch.from_numpy(matrix)
    return max(
        float(torch.linalg.vector_norm(rows[s : s + _NORM_ROWS].float(), dim=1).max())
        for s in range(0, len(matrix), _NORM_ROWS)
    )


def half_top_k(matrix: np.ndarray, query: np.ndarray, k: int, max_norm: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact top k over a float16 ``(n, d)`` matrix at the speed of its bytes -> (positions, float32 scores).

    numpy has no float16 BLAS; torch's float16 GEMV reads half the bytes of float32 and
    accumulates in float32, but rounds its outputs (and the query) to float16. So it only
    filters: every score it returns is within ``eps`` of the exact one, hence every true
    top-k row (and every row tied at the cut) scores at least the rough k-th minus ``2 eps``.
    Those few rows are re-scored exactly and ranked like ``top_k`` (ties: corpus order).

    Args:
        max_norm: the largest row norm (``max_row_norm``): it bounds the rounding.
    """
    import torch

    rows = torch.from_numpy(matrix)
    n = len(matrix)
    if k >= n:
        candidates = np.arange(n)
    else:
        rough = torch.mv(rows, torch.from_numpy(np.asarray(query, dtype=np.float16))).float().numpy()
        kth = np.partition(rough, n - k)[n - k]
        eps = 2.0**-11 * 3.0 * float(np.linalg.norm(query)) * max_norm  # query rounding + output rounding, with room
        candidates = np.flatnonzero(rough >= kth - 2.0 * eps)
    # float64 products summed row by row: identical rows score identically (a BLAS GEMV's result
    # depends on a row's position in its block), so ties keep corpus order like ``top_k``.
    exact = (rows[torch.from_numpy(candidates)].double().numpy() * np.asarray(query, dtype=np.float64)).sum(axis=1)
    order = top_k(exact, k)
    return candidates[order], exact[order].astype(np.float32)


def dot(features: np.ndarray, query_embedding: np.ndarray) -> np.ndarray:
    """``(n, d)`` float32 features against a ``(d,)`` query -> ``(n,)`` scores.

    Float32 only: float16 storage ranks with ``half_top_k`` (numpy has no float16 BLAS).
    """
    return features @ query_embedding


def dot_block(features: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """``(n, d)`` float32 features against ``(B, d)`` queries -> ``(B, n)`` float32 scores."""
    return np.asarray(queries, dtype=np.float32) @ features.T
