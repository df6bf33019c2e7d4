"""The encoder contract every backend meets.

A cascade level is an *image tower* plus a way to score a query against the
tower's cached image features:

- ``BiEncoder``: features are L2-normalised embeddings ``(d,)``; a query is a
  text embedding, and the score is a dot product. Levels whose
  ``text_tower_id`` is equal share the text encoder, which then runs once per
  query (Algorithm 1 assumes one text encoder for all levels).
- ``CrossEncoder``: features are whatever the image side of the model caches
  (BLIP: the vision tower's token states ``(T, d)``); a query is scored jointly
  with each candidate, which costs ``pair_macs`` per (query, image) pair.

Images go through ``preprocess`` (PIL -> tensor, the model's own transform) and
then ``encode_pixels`` in batches, so a loader can decode and preprocess in
parallel with the forward pass.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported where a tensor is made: the command line parses and fails fast without it
    import torch
    from PIL import Image


class ImageTower(ABC):
    """Common part of every level: turns images into cacheable features.

    Attributes:
        id: stable id including the weights (e.g. ``openclip:ViT-B-16@laion2b_s34b_b88k``);
            caches are keyed by it, so two different weights never share rows.
        name: short display name (e.g. ``ViT-B-16``).
        image_macs: MACs to encode one image at the native resolution (``full`` mode).
        image_size: native input resolution in pixels.
    """

    id: str
    name: str
    image_macs: int
    image_size: int

    @abstractmethod
    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """One RGB PIL image -> ``(3, image_size, image_size)`` float tensor."""

    @abstractmethod
    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        """``(n, 3, H, W)`` preprocessed batch -> ``(n, ...)`` float32 features."""

    def encode_images(self, images: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
        """PIL images -> ``(n, ...)`` float32 features, in batches."""
        import torch

        outputs = []
        for start in range(0, len(images), batch_size):
            batch = torch.stack([self.preprocess(image) for image in images[start : start + batch_size]])
            outputs.append(self.encode_pixels(batch))
        if not outputs:
            raise ValueError("encode_images needs at least one image")
        return np.concatenate(outputs, axis=0)


class BiEncoder(ImageTower):
    """A level that embeds images and texts separately.

    Attributes:
        dim: embedding width d.
        text_tower_id: equal for levels that share one text encoder.
        text_macs: MACs to encode one query.
    """

    dim: int
    text_tower_id: str
    text_macs: int

    @abstractmethod
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> ``(m, dim)`` float32, L2-normalised."""


class CrossEncoder(ImageTower):
    """A re-ranking stage that scores (query, image) pairs jointly.

    Attributes:
        pair_macs: MACs to score one (query, image) pair given cached image features.
        query_macs: MACs paid once per query whatever the number of pairs (e.g. BLIP's original
            scoring embeds the query for its ITC similarity); 0 for most cross-encoders.
    """

    pair_macs: int
    query_macs: int = 0
    # The bi-encoder text tower whose embedding *is* this cross-encoder's query side, or None when it
    # encodes the query itself. When a level before it embedded the query with that tower, the
    # searcher hands it the embedding: the query is encoded once per tower, as the MAC bill assumes.
    query_tower_id: str | None = None

    @abstractmethod
    def score(self, text: str, image_features: np.ndarray, query_embedding: np.ndarray | None = None) -> np.ndarray:
        """One query against ``(n, ...)`` cached image features -> ``(n,)`` float32 scores.

        ``query_embedding``: ``(d,)``, the query through ``query_tower_id``, when the caller has it.
        """


def l2_normalise(x: torch.Tensor) -> np.ndarray:
    """``(n, d)`` tensor -> float32 numpy array with unit rows."""
    import torch

    return torch.nn.functional.normalize(x.float(), dim=-1).cpu().numpy().astype(np.float32, copy=False)
