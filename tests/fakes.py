"""Seeded fake encoders and a tiny on-disk gallery: engine tests without any model."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cascade.encoders.base import BiEncoder, CrossEncoder

IMAGE_SIZE = 8


def make_gallery(folder: Path, n_images: int, seed: int = 0) -> list[Path]:
    """Write ``n_images`` distinct random 8x8 PNGs into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n_images):
        pixels = rng.integers(0, 256, size=(IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
        path = folder / f"img_{i:04d}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def _text_vector(text: str, dim: int, tower_seed: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")
    vector = np.random.default_rng([seed, tower_seed]).normal(size=dim)
    return vector


class FakeBiEncoder(BiEncoder):
    """Image embedding = a fixed random projection of the pixels; text embedding = a seeded random vector.

    Counts its calls so tests can check what ran.
    """

    def __init__(self, name: str, seed: int, image_macs: int, dim: int = 16, text_tower: str = "fake-text") -> None:
        self.id = f"fake:{name}"
        self.name = name
        self.image_macs = image_macs
        self.image_size = IMAGE_SIZE
        self.dim = dim
        self.text_tower_id = text_tower
        self.text_macs = 1000
        self._tower_seed = sum(text_tower.encode())
        self._projection = np.random.default_rng(seed).normal(size=(3 * IMAGE_SIZE * IMAGE_SIZE, dim))
        self.images_encoded = 0
        self.texts_encoded = 0

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        array = np.asarray(image.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE)), dtype=np.float32) / 255.0
        return torch.from_numpy(array).permute(2, 0, 1).contiguous()

    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        self.images_encoded += len(pixels)
        flat = pixels.reshape(len(pixels), -1).numpy().astype(np.float64) - 0.5
        return _normalise(flat @ self._projection)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        self.texts_encoded += len(texts)
        return _normalise(np.stack([_text_vector(t, self.dim, self._tower_seed) for t in texts]))


SMALL_MACS, LARGE_MACS = 10, 1000  # per image: a cascade of the two saves 100x per image not handed to level 2


def small_and_large(large_seed: int = 3) -> list[FakeBiEncoder]:
    """A fresh two-level cascade of fakes: ``fake:small`` (10 MACs an image) then ``fake:large`` (1,000)."""
    return [
        FakeBiEncoder("small", seed=1, image_macs=SMALL_MACS),
        FakeBiEncoder("large", seed=large_seed, image_macs=LARGE_MACS),
    ]


class FakeCrossEncoder(CrossEncoder):
    """Scores a pair as the cosine of a text vector with a projection of the image, plus 1."""

    def __init__(self, seed: int = 7, image_macs: int = 500, pair_macs: int = 300, dim: int = 16) -> None:
        self.id = "fake:cross"
        self.name = "cross"
        self.image_macs = image_macs
        self.image_size = IMAGE_SIZE
        self.pair_macs = pair_macs
        self._inner = FakeBiEncoder("cross-inner", seed=seed, image_macs=image_macs, dim=dim, text_tower="cross")
        self.pairs_scored = 0

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self._inner.preprocess(image)

    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        return self._inner.encode_pixels(pixels)

    def score(self, text: str, image_features: np.ndarray, query_embedding: np.ndarray | None = None) -> np.ndarray:
        self.pairs_scored += len(image_features)
        return (image_features @ self._inner.encode_texts([text])[0] + 1.0).astype(np.float32)


def _normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def make_karpathy(root: Path, n_images: int, captions_per_image: int = 2, seed: int = 0) -> tuple[Path, Path]:
    """A Karpathy-split dataset of random images: ``(json_path, image_root)``, all in split "test"."""
    image_root = root / "images"
    paths = make_gallery(image_root / "sub", n_images, seed=seed)
    entries = [
        {
            "filename": path.name,
            "filepath": "sub",
            "split": "test",
            "sentences": [{"raw": f"picture number {i} caption {c}"} for c in range(captions_per_image)],
        }
        for i, path in enumerate(paths)
    ]
    json_path = root / "dataset_test.json"
    json_path.write_text(__import__("json").dumps({"images": entries}))
    return json_path, image_root


def run_in_threads(worker, n_threads: int) -> list[Exception]:
    """Run ``worker(thread_index)`` in ``n_threads`` threads at once; return the exceptions they raised."""
    errors: list[Exception] = []

    def guarded(index: int) -> None:
        try:
            worker(index)
        except Exception as err:  # a thread's exception would otherwise vanish
            errors.append(err)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def count_features(store, encoder_id: str) -> int:
    """Rows the store caches for ``encoder_id`` (tests only: the product never needs the count)."""
    return int(store.frame("SELECT count(*) AS n FROM features WHERE encoder_id = ?", [encoder_id])["n"][0])


def clustered(n: int, dim: int, centres: int, seed: int = 0) -> np.ndarray:
    """``(n, dim)`` float32 unit rows around random centres, as tight as an image's neighbours in CLIP (cosine
    about 0.75): a level-1 gallery for index and gap-query tests."""
    rng = np.random.default_rng(seed)
    middle = rng.standard_normal((centres, dim))
    middle /= np.linalg.norm(middle, axis=1, keepdims=True)
    rows = middle[rng.integers(0, centres, size=n)] + 0.6 * rng.standard_normal((n, dim)) / np.sqrt(dim)
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)
