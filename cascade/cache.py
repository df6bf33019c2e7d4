"""Image-feature caches: where a level keeps what it has already encoded.

The searcher talks to a cache through the two-method ``FeatureCache`` protocol,
so the in-memory cache here and the DuckDB store in ``analysis/store.py`` are
interchangeable (and a test can pass either). Keys are (encoder id, image id):
the encoder id includes the weights and the image id is a content hash, so a
row can never be served for another model or another picture.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np


class FeatureCache(Protocol):
    """Persistent or in-memory store of per-image features, keyed by encoder and image."""

    def get(self, encoder_id: str, image_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The cached features among ``image_ids`` (absent ids are simply missing from the dict)."""
        ...

    def put(self, encoder_id: str, features: Mapping[str, np.ndarray]) -> None:
        """Store features; an id already present keeps its first value."""
        ...


class MemoryCache:
    """A thread-safe dict-backed FeatureCache (tests, benchmarks, throwaway sessions)."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], np.ndarray] = {}
        self._lock = threading.Lock()

    def get(self, encoder_id: str, image_ids: Sequence[str]) -> dict[str, np.ndarray]:
        with self._lock:
            found = {}
            for image_id in image_ids:
                row = self._rows.get((encoder_id, image_id))
                if row is not None:
                    found[image_id] = row
            return found

    def put(self, encoder_id: str, features: Mapping[str, np.ndarray]) -> None:
        with self._lock:
            for image_id, row in features.items():
                self._rows.setdefault((encoder_id, image_id), np.asarray(row, dtype=np.float32))

    def count(self, encoder_id: str) -> int:
        """How many images are cached for ``encoder_id``."""
        with self._lock:
            return sum(1 for key in self._rows if key[0] == encoder_id)
