"""Warm-query overhead: the cascade machinery against the bare search it wraps.

A *warm* query finds every image feature it needs in a cache, so what is left
is text encoding, the level-1 matmul over all N embeddings, top-k, and for the
later levels a gather of k cached rows and a small matmul. The bare reference is
text-encode + ``M @ q`` + top-k on the same matrix with the same text tower.
Both run interleaved in one process; we report medians and their ratio.

Text tower: the ViT-B-16 text transformer (random weights: the cost is the
architecture's). A cheaper text tower makes the matmul a larger share and the
relative overhead larger; we report that case too, with a tiny text tower.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from cascade.corpus import virtual_corpus
from cascade.encoders import create_encoder
from cascade.encoders.base import BiEncoder
from cascade.search import CascadeSearcher

DIM = 512
QUERIES = ("a red circle left of two blue squares", "a dog on a beach", "three striped stars", "a small green cube")


class TableEncoder(BiEncoder):
    """A level whose image features are a given table (already cached), with a real text tower."""

    def __init__(self, name: str, text_tower: BiEncoder, image_macs: int) -> None:
        self.id, self.name, self.image_macs, self.image_size = f"bench:{name}", name, image_macs, 224
        self.dim, self.text_tower_id, self.text_macs = DIM, text_tower.text_tower_id, text_tower.text_macs
        self._text = text_tower

    def preprocess(self, image):  # never called: every feature is cached
        raise RuntimeError("a warm benchmark must not encode images")

    def encode_pixels(self, pixels):
        raise RuntimeError("a warm benchmark must not encode images")

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self._text.encode_texts(texts)


@dataclass(frozen=True)
class QueryPathRow:
    n_images: int
    text_tower: str
    storage: str
    bare_ms: float
    cascade_ms: float
    peak_matrix_mb: float

    @property
    def overhead(self) -> float:
        return self.cascade_ms / self.bare_ms - 1.0


def _projected_text_tower(arch: str) -> BiEncoder:
    """An OpenCLIP text tower whose output is projected to DIM (so towers of any width fit the table)."""
    encoder = create_encoder(f"openclip:{arch}@random")
    if encoder.dim == DIM:
        return encoder
    projection = torch.nn.functional.normalize(torch.randn(encoder.dim, DIM, generator=torch.Generator().manual_seed(0)))

    class Projected(BiEncoder):
        id, name, image_macs, image_size, dim = encoder.id + "+proj", encoder.name, 0, 0, DIM
        text_tower_id, text_macs = encoder.text_tower_id + "+proj", encoder.text_macs
        preprocess = encode_pixels = None

        def encode_texts(self, texts):
            out = torch.from_numpy(encoder.encode_texts(texts)) @ projection
            return torch.nn.functional.normalize(out, dim=-1).numpy()

    return Projected()


def _median_ms(fn: Callable[[], object], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return times


def measure(n_images: int, arch: str = "ViT-B-16", storage: str = "float32", repeats: int = 30) -> QueryPathRow:
    """One row: warm cascade [level 1 over N, level 2 over k_1 = 100] -> 10 results, against bare top-10."""
    text = _projected_text_tower(arch)
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((n_images, DIM), dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    matrix = matrix.astype(storage)
    corpus = virtual_corpus(n_images)
    level1, level2 = TableEncoder("level1", text, 10), TableEncoder("level2", text, 1000)
    searcher = CascadeSearcher([level1, level2], corpus)
    searcher.use_level1_matrix(matrix)
    level2_rows = rng.standard_normal((n_images, DIM), dtype=np.float32)
    searcher.cache.put(level2.id, dict(zip(corpus.ids, level2_rows)))  # every level-2 feature cached: warm

    def bare() -> np.ndarray:
        q = text.encode_texts([QUERIES[0]])[0]
        scores = matrix @ q if matrix.dtype == np.float32 else _upcast_dot(matrix, q)
        top = np.argpartition(-scores, 10)[:10]
        return top[np.argsort(-scores[top])]

    def cascade() -> object:
        return searcher.search(QUERIES[0], [100, 10])

    for fn in (bare, cascade):  # warm-up: first calls fill caches and page in memory
        fn(), fn()
    bare_times, cascade_times = [], []
    for _ in range(repeats):  # interleaved, so machine noise hits both alike
        bare_times += _median_ms(bare, 1)
        cascade_times += _median_ms(cascade, 1)
    return QueryPathRow(
        n_images=n_images,
        text_tower=arch,
        storage=storage,
        bare_ms=statistics.median(bare_times),
        cascade_ms=statistics.median(cascade_times),
        peak_matrix_mb=matrix.nbytes / 2**20,
    )


def _upcast_dot(matrix: np.ndarray, q: np.ndarray) -> np.ndarray:
    out = np.empty(len(matrix), dtype=np.float32)
    for start in range(0, len(matrix), 1 << 16):
        out[start : start + (1 << 16)] = matrix[start : start + (1 << 16)].astype(np.float32) @ q
    return out


def main() -> None:
    for row in (measure(100_000), measure(100_000, arch="tiny-vit-s")):
        print(f"N={row.n_images:>9,} text={row.text_tower:10s} {row.storage}: bare {row.bare_ms:7.2f} ms  "
              f"cascade {row.cascade_ms:7.2f} ms  overhead {100 * row.overhead:+.1f}%")  # fmt: skip


if __name__ == "__main__":
    main()
