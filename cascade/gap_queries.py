"""Text-like queries for level-1 measurements: image directions moved across a modality gap.

CLIP puts its text and image embeddings in two separate narrow cones (Liang et al., "Mind the
Gap: Understanding the Modality Gap in Multi-modal Contrastive Representation Learning",
NeurIPS 2022): a caption's cosine to its own image is about 0.3, while an image's nearest
images lie above 0.8. A query drawn from the gallery's own distribution is therefore the easy
case for an index built on image vectors; a text query sits far outside the cone the index
was built on, and graph indexes especially lose recall on it.

``across_gap`` makes such queries from target images ``x`` (unit rows)::

    q = normalise(x + shift * g + noise * n)

- ``g``: one fixed unit gap direction for all queries (the second cone's offset). For
  synthetic galleries a seeded random direction (``gap_direction``); for a real encoder, its
  own gap (``encoder_gap``): the mean text embedding of generic prompts ("a photo of a dog")
  minus the mean image embedding, as Liang et al. measure it.
- ``n``: per-query Gaussian noise, orthogonal to its target, ``|n|`` about 1: what a caption
  does not say about its image.
- ``SHIFT = 2.0`` and ``NOISE = 2.5``: the target's share of the query is then
  ``1 / sqrt(1 + 2.0^2 + 2.5^2) = 0.298``, CLIP's text-to-image cosine. The gap carries 0.60
  of the unit query (Liang et al. measure about 0.8 between the two cones' centres for CLIP),
  the noise 0.75. Per query the cosine varies with ``x . g`` and ``|n|``: 0.25 to 0.35 for 90%
  of queries in 512 dimensions. The gap term shifts every image's score by the same
  ``shift * (g . y)`` for every query, so it does not move the target within its cluster;
  the noise does, so exact search ranks the target first for most queries, not all
  (``rank_of_targets``; on ``bench.index``'s 1M clustered gallery, d = 512: first for 84%,
  90% within the top 2).

The noise is isotropic (the simplest model); a real caption's residual is not (it lies in
the text cone and follows meaning). So where a cluster holds fewer images than k, the rest of a
query's exact top k is chosen by its noise, spread over many clusters, and hard for any index
to find. Measured against real captions on one gallery (``bench.index_real``: the shapes
captions against the 100,000-image lifetime gallery, ``shapes:small``'s towers), these
queries are the harder of the two for IVF (recall@50 0.78 against 0.91 at 16 of 1,024 lists)
and about as hard for HNSW (0.95 against 0.995 at efSearch 64): a conservative model (that
small encoder's captions sit at cosine 0.7 to their images, a smaller gap than CLIP's). In a
one-off trial on that gallery a gap-dominated setting (shift 3.0, noise 0.8, the same cosine)
was harder still for IVF (0.60 at 16 lists) and easier for HNSW, so the documented one was kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SHIFT = 2.0  # the gap, in units of the target's (unit) length, before normalising
NOISE = 2.5  # the noise's expected length, in the same units
# Generic prompts for an encoder's own gap: what its text cone looks like without any one image's content.
PROMPTS = ("a photo of a {}.", "a picture of a {}.", "an image of a {}.")
SUBJECTS = ("dog", "cat", "person", "car", "house", "tree", "bird", "flower", "street", "room", "beach", "cup")


def expected_cosine(shift: float = SHIFT, noise: float = NOISE) -> float:
    """The cosine of a query to its target when ``g`` and ``n`` are orthogonal to it (high dimension)."""
    return float(1.0 / np.sqrt(1.0 + shift**2 + noise**2))


def gap_direction(dim: int, seed: int = 0) -> np.ndarray:
    """A seeded random unit ``(dim,)`` direction: the gap of a synthetic gallery."""
    direction = np.random.default_rng(seed).standard_normal(dim)
    return (direction / np.linalg.norm(direction)).astype(np.float32)


def encoder_gap(text_rows: np.ndarray, image_rows: np.ndarray) -> np.ndarray:
    """The unit ``(d,)`` direction from the image cone's centre to the text cone's.

    Args:
        text_rows: ``(m, d)`` text embeddings of generic prompts (``generic_prompts``).
        image_rows: ``(n, d)`` image embeddings of the gallery (any sample of it).

    Raises:
        ValueError: the two centres coincide (an encoder with no gap has no direction to move along).
    """
    gap = _unit_rows(text_rows).mean(axis=0) - _unit_rows(image_rows).mean(axis=0)
    length = float(np.linalg.norm(gap))
    if length < 1e-6:
        raise ValueError("the text and image embeddings share one centre: there is no gap to move queries across")
    return (gap / length).astype(np.float32)


def generic_prompts() -> list[str]:
    """The prompts ``encoder_gap``'s text centre is measured on (36 of them)."""
    return [prompt.format(subject) for prompt in PROMPTS for subject in SUBJECTS]


def across_gap(
    targets: np.ndarray, gap: np.ndarray, seed: int = 0, shift: float = SHIFT, noise: float = NOISE
) -> np.ndarray:
    """``(m, d)`` float32 unit queries, one per target row, moved across the gap (see the module's formula).

    Args:
        targets: ``(m, d)`` image embeddings the queries describe (normalised here).
        gap: ``(d,)`` unit gap direction, the same for every query.
    """
    x = _unit_rows(targets)
    rng = np.random.default_rng(seed)
    n = rng.standard_normal(x.shape) / np.sqrt(x.shape[1])
    n -= (n * x).sum(axis=1, keepdims=True) * x  # orthogonal to its target: the caption's unsaid part
    return _unit_rows(x + shift * np.asarray(gap, dtype=np.float64) + noise * n).astype(np.float32)


def rank_of_targets(matrix: np.ndarray, queries: np.ndarray, targets: Sequence[int]) -> np.ndarray:
    """``(m,)`` 1-based rank of each query's target under exact inner-product search over ``matrix`` ``(N, d)``.

    Scores within 1e-6 of the target's (float32 rounding) count as ties, which go to the target.
    """
    queries = np.asarray(queries, dtype=np.float32)
    ranks = np.ones(len(queries), dtype=np.int64)
    target_scores = np.einsum("md,md->m", np.asarray(matrix[np.asarray(targets)], dtype=np.float32), queries)
    for start in range(0, len(matrix), 1 << 15):
        scores = np.asarray(matrix[start : start + (1 << 15)], dtype=np.float32) @ queries.T  # (b, m)
        ranks += (scores > target_scores + 1e-6).sum(axis=0)
    return ranks


def _unit_rows(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float64)
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def sample_queries(corpus, level, matrix: np.ndarray, wanted: int) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Queries to measure recall on: up to ``wanted`` of the corpus's captions encoded by ``level`` (a BiEncoder),
    else evenly spaced gallery rows with their own positions (left out of both top-k lists)."""
    captions = [text for image_id in corpus.ids for text in corpus.captions.get(image_id, [])]
    if captions:
        picked = [captions[i] for i in np.linspace(0, len(captions) - 1, min(wanted, len(captions))).astype(int)]
        return level.encode_texts(picked), None, "captions"
    own = np.unique(np.linspace(0, len(corpus) - 1, min(wanted, len(corpus))).astype(int))
    return np.asarray(matrix[own], dtype=np.float32), own, "gallery"


def text_like_queries(corpus, level, matrix: np.ndarray, wanted: int, seed: int = 0) -> tuple[np.ndarray, str]:
    """``auto``'s queries: up to ``wanted`` captions encoded by ``level`` (a BiEncoder) when the corpus has them,
    else that many evenly spaced gallery rows moved across ``level``'s own gap (source ``"gap"``).

    A moved row's own image stays a right answer, as a caption's image is.
    """
    queries, _, source = sample_queries(corpus, level, matrix, wanted)
    if source == "captions":
        return queries, source
    sample = np.asarray(matrix[np.linspace(0, len(matrix) - 1, min(len(matrix), 4096)).astype(int)])
    gap = encoder_gap(level.encode_texts(generic_prompts()), sample)
    return across_gap(queries, gap, seed=seed), "gap"
