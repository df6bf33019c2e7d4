"""The paper's cost model of bi-encoder cascades under the alpha-small-world assumption.

Pure functions of per-image encoder costs; no torch, no I/O. Notation (paper, Section 3):
an L-level cascade has image encoders with costs ``C_1 < ... < C_L`` (GMACs per
image) and hands the top ``k_i`` images of level ``i`` on to level ``i + 1``.
Over a corpus of ``N`` images, the alpha-small-world scenario says at most
``alpha * N`` distinct images ever reach level 2 over the system's lifetime.

- lifetime image cost: ``C_1 * N + alpha * N * (C_2 + ... + C_L)``; the uncascaded
  last level costs ``C_L * N``; the reduction is ``C_L / (C_1 + alpha * (C_2 + ... + C_L))``.
- early query (empty caches): ``k_1 * C_2 + k_2 * C_3 + ... + k_{L-1} * C_L``; a deep
  cascade against ``[C_1, C_L]`` with the same ``k_1`` lowers it by
  ``k_1 * C_L / (k_1 * C_2 + k_2 * C_3 + ...)`` (Eq. 1).

Cumulative cost over queries (for plots and break-even points) needs a model of
cache misses, which the paper does not give. The one used here, kept simple:

    The alpha-small world is a *pool* of ``P = alpha * N`` images. Each query hands
    level ``i + 1`` a fresh uniform draw of ``k_i`` images from the pool. After ``q``
    queries level ``i + 1`` has therefore embedded, in expectation,
    ``P * (1 - (1 - k_i / P) ** q)`` distinct images (each query embeds its misses).

This starts at ``k_i`` misses for the first query (the early-query cost) and tends
to ``P`` (the lifetime bound) as ``q`` grows. Real query streams repeat popular
images more often, so they converge faster: the model is a pessimistic middle ground.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CascadeCosts:
    """A cascade as the cost model sees it.

    Attributes:
        image_gmacs: GMACs to encode one image at each level, cheapest first: ``(C_1, ..., C_L)``.
            One entry is an uncascaded single encoder.
        ks: ``(k_1, ..., k_L)`` as in ``CascadeConfig``, or ``(k_1, ..., k_{L-1})`` as the paper
            writes them: the last k (the number of results) costs no image encoding. Empty: the
            lifetime figures only (they do not depend on k); early-query and miss-model functions raise.
    """

    image_gmacs: tuple[float, ...]
    ks: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_gmacs", tuple(float(c) for c in self.image_gmacs))
        if any(isinstance(k, bool) or not isinstance(k, numbers.Integral) for k in self.ks):
            raise ValueError(f"k values must be whole numbers, got {list(self.ks)}")
        object.__setattr__(self, "ks", tuple(int(k) for k in self.ks))
        if not self.image_gmacs:
            raise ValueError("a cascade needs at least one level")
        if any(not math.isfinite(c) or c <= 0 for c in self.image_gmacs):
            raise ValueError(f"image GMACs must be positive numbers, got {list(self.image_gmacs)}")
        if len(self.ks) not in (0, self.depth - 1, self.depth):
            n_levels = self.depth
            raise ValueError(f"{n_levels} level(s) need {n_levels - 1} or {n_levels} k values, got {list(self.ks)}")
        if any(k < 1 for k in self.ks):
            raise ValueError(f"k values must be at least 1, got {list(self.ks)}")
        if any(after > before for before, after in zip(self.ks, self.ks[1:])):
            raise ValueError(f"k must not grow from level to level, got {list(self.ks)}")

    @property
    def depth(self) -> int:
        return len(self.image_gmacs)

    @property
    def handoff_ks(self) -> tuple[int, ...]:
        """``(k_1, ..., k_{L-1})``: how many candidates level ``i`` hands to level ``i + 1``."""
        if len(self.ks) < self.depth - 1:
            raise ValueError(f"this needs the k values of the {self.depth}-level cascade, none were given")
        return self.ks[: self.depth - 1]


@dataclass(frozen=True)
class CascadeSummary:
    """The figures of one Table 1 row.

    Attributes:
        lifetime_reduction: reference cost / the cascade's lifetime cost per corpus image (x-fold).
        early_latency_reduction: Eq. 1 against ``[C_1, C_L]`` with the same k_1; None below 3 levels.
        lifetime_gmacs_per_image: ``C_1 + alpha * (C_2 + ... + C_L)``, GMACs per corpus image.
        early_query_image_gmacs: image GMACs of a query that finds every cache empty.
    """

    lifetime_reduction: float
    early_latency_reduction: float | None
    lifetime_gmacs_per_image: float
    early_query_image_gmacs: float


def _check_alpha(alpha: float) -> None:
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")


def lifetime_gmacs_per_image(cascade: CascadeCosts, alpha: float) -> float:
    """``C_1 + alpha * (C_2 + ... + C_L)``: lifetime image GMACs per corpus image (upper bound)."""
    _check_alpha(alpha)
    first, *rest = cascade.image_gmacs
    return first + alpha * sum(rest)


def lifetime_image_gmacs(cascade: CascadeCosts, n_images: int, alpha: float) -> float:
    """``C_1 * N + alpha * N * (C_2 + ... + C_L)``: lifetime image GMACs over ``n_images``."""
    return n_images * lifetime_gmacs_per_image(cascade, alpha)


def lifetime_reduction(cascade: CascadeCosts, alpha: float, reference_gmacs: float | None = None) -> float:
    """How many times cheaper over its lifetime the cascade is than one encoder over every image.

    Args:
        reference_gmacs: GMACs per image of the uncascaded encoder; default the last level ``C_L``.
            A single encoder against its family's largest passes that largest one here.
    """
    reference = cascade.image_gmacs[-1] if reference_gmacs is None else reference_gmacs
    return reference / lifetime_gmacs_per_image(cascade, alpha)


def early_query_image_gmacs(cascade: CascadeCosts) -> float:
    """``k_1 * C_2 + ... + k_{L-1} * C_L``: image GMACs of a query that finds every cache empty."""
    return sum(k * c for k, c in zip(cascade.handoff_ks, cascade.image_gmacs[1:], strict=True))


def early_latency_reduction(cascade: CascadeCosts) -> float:
    """Eq. 1: early-query image cost of ``[C_1, C_L]`` (same k_1) over that of this cascade.

    1.0 for a 2-level cascade; raises for a single encoder, which has no early-query cost.
    """
    if cascade.depth < 2:
        raise ValueError("a single encoder has no early-query image cost to reduce")
    two_level = cascade.handoff_ks[0] * cascade.image_gmacs[-1]
    return two_level / early_query_image_gmacs(cascade)


def k2_for_early_latency_reduction(image_gmacs: Sequence[float], k1: int, target: float) -> float:
    """The k_2 at which the 3-level cascade ``image_gmacs`` reaches an Eq. 1 reduction of ``target``.

    Solves ``k1 * C_3 / (k1 * C_2 + k2 * C_3) = target``: ``k2 = k1 * (1 / target - C_2 / C_3)``.
    Not rounded: k_2 must be a whole number, and rounding it up keeps quality (the paper's
    k_2 = 14 for k_1 = 50 is a 2x target on ConvNeXt [B, L, XXL], 13.7, rounded up).
    """
    if len(image_gmacs) != 3:
        raise ValueError(f"k_2 is defined for a 3-level cascade, got {len(image_gmacs)} levels")
    if target <= 0:
        raise ValueError(f"the target reduction must be positive, got {target}")
    _, middle, last = image_gmacs
    k2 = k1 * (1.0 / target - middle / last)
    if k2 <= 0:
        raise ValueError(f"a {target}x reduction is out of reach: the middle level alone allows < {last / middle:.2f}x")
    return k2


def summarize(cascade: CascadeCosts, alpha: float, reference_gmacs: float | None = None) -> CascadeSummary:
    """All Table 1 figures of one cascade (or single encoder, with ``reference_gmacs``)."""
    deep = cascade.depth >= 3
    return CascadeSummary(
        lifetime_reduction=lifetime_reduction(cascade, alpha, reference_gmacs),
        early_latency_reduction=early_latency_reduction(cascade) if deep else None,
        lifetime_gmacs_per_image=lifetime_gmacs_per_image(cascade, alpha),
        early_query_image_gmacs=early_query_image_gmacs(cascade),
    )


# ---------------------------------------------------------------- cost over queries (miss model)


def expected_embedded(k: int, pool_size: float, queries: np.ndarray | Sequence[int]) -> np.ndarray:
    """Expected distinct images a level has embedded after each query count (see module docstring).

    Args:
        k: candidates handed to the level per query.
        pool_size: ``alpha * N``, the images that ever reach level 2.
        queries: ``(m,)`` query counts >= 0.

    Returns:
        ``(m,)`` float64 image counts, ``min(k, P)`` after one query, tending to ``P``.
    """
    q = np.asarray(queries, dtype=np.float64)
    if np.any(q < 0):
        raise ValueError("query counts must be >= 0")
    if pool_size <= 0:
        return np.zeros_like(q)
    stay_new = max(0.0, 1.0 - k / pool_size)  # chance one pool image is not among one query's k
    return pool_size * (1.0 - stay_new**q)


def cost_vs_queries(
    cascade: CascadeCosts, n_images: int, alpha: float, queries: np.ndarray | Sequence[int]
) -> np.ndarray:
    """Cumulative image GMACs after each query count: build (``C_1 * N``) plus expected misses.

    A single encoder (one level) is flat at ``C_1 * N``: it embeds everything at build time.

    Args:
        queries: ``(m,)`` query counts >= 0.

    Returns:
        ``(m,)`` float64 GMACs, non-decreasing in the query count, bounded by
        ``lifetime_image_gmacs(cascade, n_images, alpha)``.
    """
    _check_alpha(alpha)
    if n_images < 1:
        raise ValueError(f"the corpus needs at least one image, got {n_images}")
    pool_size = alpha * n_images
    total = np.full(np.shape(queries), cascade.image_gmacs[0] * n_images, dtype=np.float64)
    for k, gmacs in zip(cascade.handoff_ks, cascade.image_gmacs[1:], strict=True):
        total += gmacs * expected_embedded(k, pool_size, queries)
    return total


def break_even_queries(cascade: CascadeCosts, single_gmacs: float, n_images: int, alpha: float) -> int | None:
    """The first query count at which the cascade has cost at least as much as a single encoder.

    The single encoder embeds all ``n_images`` at build time (``single_gmacs * N``, flat); the
    cascade starts at ``C_1 * N`` and grows with its misses (see ``cost_vs_queries``).

    Returns:
        0 if the cascade costs as much already at build time (e.g. against its own first level);
        None if it never does (its lifetime bound stays below, e.g. against its last level);
        else the smallest such query count.
    """
    single_total = single_gmacs * n_images

    def cascade_total(q: int) -> float:
        return float(cost_vs_queries(cascade, n_images, alpha, [q])[0])

    if cascade_total(0) >= single_total:
        return 0
    if lifetime_image_gmacs(cascade, n_images, alpha) <= single_total:
        return None
    high = 1
    while cascade_total(high) < single_total:  # the bound lies above, so this ends (at most ~60 doublings)
        high *= 2
    low = high // 2  # cascade_total(low) < single_total
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if cascade_total(middle) < single_total else (low, middle)
    return high
