"""What the world yields: the held-out galleries (items drawn lazily) and seeded training batches."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from cascade.world.rendering import render
from cascade.world.scenes import Scene, attribute_labels, captions, cluster

WORLD_VERSION = 1
TEST_GALLERY_IMAGES = 5000
TEST_GALLERY_SEED = 20240
# A search system's whole collection, for lifetime replays: the test gallery grown
# twentyfold (its first 5,000 images *are* the test gallery). The alpha-small-world
# regime needs a gallery large against k_1 x the number of distinct queries.
LIFETIME_GALLERY_IMAGES = 100_000
GALLERY_SIZES: dict[str, int] = {"test": TEST_GALLERY_IMAGES, "lifetime": LIFETIME_GALLERY_IMAGES}
CLUSTER_SIZE = 5


@dataclass(frozen=True)
class GalleryItem:
    """One gallery image: its scene, its captions, the seed that draws it, and its cluster of near misses."""

    index: int
    cluster: int
    scene: Scene
    captions: tuple[str, ...]
    seed: str

    def image(self) -> np.ndarray:
        """``(64, 64, 3)`` uint8."""
        return render(self.scene, self.seed)


def gallery(n_images: int, seed: int = TEST_GALLERY_SEED, split: str = "test") -> list[GalleryItem]:
    """``n_images`` scenes in clusters of CLUSTER_SIZE, no caption repeated; images drawn lazily.

    The first ``m`` items of ``gallery(n)`` are the same as ``gallery(m)`` for
    ``m`` a multiple of CLUSTER_SIZE, so a subset keeps its near misses.
    """
    if n_images <= 0:
        raise ValueError(f"n_images must be positive, got {n_images}")
    rng = random.Random(f"gallery:{seed}")
    taken: set[str] = set()
    items: list[GalleryItem] = []
    while len(items) < n_images:
        cluster_id = items[-1].cluster + 1 if items else 0
        for scene in cluster(rng, CLUSTER_SIZE, split, taken)[: n_images - len(items)]:
            i = len(items)
            items.append(GalleryItem(i, cluster_id, scene, captions(scene), f"image:{seed}:{i}"))
    return items


@dataclass(frozen=True)
class TrainingBatch:
    """Images, one caption each (canonical or paraphrase at random), and the scenes' attribute labels.

    Attributes:
        images: ``(n, 64, 64, 3)`` uint8; members of one cluster are adjacent.
        captions: ``n`` strings.
        labels: ``(n, len(ATTRIBUTES))`` int64 class indices, -1 where an attribute is absent.
        clusters: ``(n,)`` int64, equal for members of one cluster of near misses.
    """

    images: np.ndarray
    captions: list[str]
    labels: np.ndarray
    clusters: np.ndarray


def training_batch(rng: random.Random, n_clusters: int, cluster_size: int = 4) -> TrainingBatch:
    """A batch of train-split scenes in ``n_clusters`` clusters of near misses (``n <= n_clusters * cluster_size``)."""
    images, texts, labels, clusters = [], [], [], []
    for cluster_id in range(n_clusters):
        for scene in cluster(rng, cluster_size, "train"):
            images.append(render(scene, rng.getrandbits(64)))
            texts.append(captions(scene)[rng.randrange(2)])
            labels.append(attribute_labels(scene))
            clusters.append(cluster_id)
    return TrainingBatch(np.stack(images), texts, np.array(labels, dtype=np.int64), np.array(clusters, dtype=np.int64))
