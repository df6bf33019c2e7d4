"""A real cross-modal set for ``bench.index``: the shapes family's captions against its 100,000-image gallery.

The gallery is the lifetime gallery embedded by ``shapes:small``'s image tower; the queries are
its captions, embedded by the same model's text tower (evenly spaced over the gallery, one per
image), and, beside them, the same images moved across that encoder's own gap by
``cascade.gap_queries`` (what ``--index auto`` measures on a gallery without captions). Both
kinds on one gallery show how far the synthetic model is from real text queries for one encoder.
"""

from __future__ import annotations

import numpy as np

from bench.lifetime import shapes_gallery
from cascade.embedding import encode_batches
from cascade.encoders import create_encoder
from cascade.gap_queries import across_gap, encoder_gap, generic_prompts

ENCODER = "shapes:small"
REAL_GALLERY = "shapes lifetime gallery"
CAPTIONS = "captions (real)"
GAP_SEED = 21


def real_set(
    quick: bool, n_queries: int, kind_across_gap: str
) -> tuple[np.ndarray, dict[str, np.ndarray], str, np.ndarray]:
    """(the gallery's ``(N, d)`` float32 rows, {kind: ``(m, d)`` queries}, a title naming them, the targets' rows).

    Quick: a 500-image gallery. Both kinds of queries describe the same target images.
    """
    corpus, _ = shapes_gallery(quick, "lifetime")
    level = create_encoder(ENCODER)
    matrix = np.vstack([rows for _, rows in encode_batches(level, corpus, corpus.ids, 256)]).astype(np.float32)
    described = [
        (row, captions[0]) for row, image_id in enumerate(corpus.ids) if (captions := corpus.captions.get(image_id))
    ]
    picked = [described[i] for i in np.linspace(0, len(described) - 1, min(n_queries, len(described))).astype(int)]
    targets = np.array([row for row, _ in picked])
    captions = np.asarray(level.encode_texts([text for _, text in picked]), dtype=np.float32)
    sample = matrix[np.linspace(0, len(matrix) - 1, min(len(matrix), 4096)).astype(int)]
    gap = encoder_gap(level.encode_texts(generic_prompts()), sample)
    queries = {CAPTIONS: captions, kind_across_gap: across_gap(matrix[targets], gap, seed=GAP_SEED)}
    title = (
        f"the shapes lifetime gallery embedded by `{ENCODER}` (d = {matrix.shape[1]}); its captions through "
        f"the text tower, and the same {len(targets)} images moved across the encoder's own gap"
    )
    return matrix, queries, title, targets
