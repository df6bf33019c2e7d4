"""A cascade by brute force, for tests: each level ranks its candidates with numpy, nothing from cascade.search.

The expectations of the sweep, side-by-side and replay tests are computed here, independently of the searcher,
the evaluator and the replay they check: every image is embedded up front, scores are float64 dot products,
and ranks come from a stable ``argsort`` (ties: corpus order, as the searcher promises).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cascade.corpus import Corpus
from cascade.encoders.base import CrossEncoder


def image_features(level, corpus: Corpus) -> np.ndarray:
    """``(N, d)`` float64 features of every image of ``corpus`` by ``level``, in corpus order."""
    return np.asarray(level.encode_images([corpus.load(image_id) for image_id in corpus.ids]), dtype=np.float64)


def cascade_kept(levels: Sequence, corpus: Corpus, ks: Sequence[int], texts: Sequence[str]) -> list[list[np.ndarray]]:
    """For each text, the corpus positions each level kept, best first: ``[query][level] -> (k_level,)``."""
    features = [image_features(level, corpus) for level in levels]
    kept_all = []
    for text in texts:
        candidates, kept = np.arange(len(corpus)), []
        for level, feats, k in zip(levels, features, ks):
            if isinstance(level, CrossEncoder):
                scores = np.asarray(level.score(text, feats[candidates].astype(np.float32)), dtype=np.float64)
            else:
                scores = feats[candidates] @ np.asarray(level.encode_texts([text])[0], dtype=np.float64)
            candidates = candidates[np.argsort(-scores, kind="stable")[:k]]
            kept.append(candidates)
        kept_all.append(kept)
    return kept_all


def recalls(top: Sequence[np.ndarray], positives: Sequence[int]) -> tuple[float, float, float]:
    """Percent of queries whose positive is in the first 1, 5 and 10 of its ranking."""
    return tuple(100.0 * np.mean([p in row[:k] for row, p in zip(top, positives)]) for k in (1, 5, 10))


def lifetime(kept: list[list[np.ndarray]], macs_per_image: Sequence[int], n_images: int) -> tuple[list[int], float]:
    """(cumulative image MACs after 0..Q queries, alpha) of a fresh cascade handed these rankings.

    Build: level 1 embeds all ``n_images``. Query: level i >= 2 embeds each image of level i-1's kept list it has
    never embedded. Alpha: the share of the gallery level 2 ever embedded.
    """
    handed = [set() for _ in macs_per_image]
    curve = [n_images * macs_per_image[0]]
    for per_level in kept:
        spent = 0
        for i in range(1, len(macs_per_image)):
            new = set(per_level[i - 1].tolist()) - handed[i]
            handed[i] |= new
            spent += len(new) * macs_per_image[i]
        curve.append(curve[-1] + spent)
    alpha = len(handed[1]) / n_images if len(macs_per_image) > 1 else 0.0
    return curve, alpha
