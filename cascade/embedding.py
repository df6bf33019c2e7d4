"""Embedding images batch by batch, timed by step: decoding, preprocessing, the forward pass.

A stage's trace (``cascade.types.LevelTrace``) carries the three times of the images it embedded
for its query, so a slow first query says where its seconds went. Decoding is reading the pixels
(a gather from the gallery's pixel array, or decoding each file); preprocessing is the encoder's
resize, crop and normalisation into one batch; the forward pass is ``encode_pixels``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import torch

    from cascade.corpus import Corpus
    from cascade.encoders.base import ImageTower


@dataclass(frozen=True)
class EmbedTimes:
    """Wall time spent embedding images, by step (ms). With several batches the next batch is decoded and
    preprocessed in a second thread while this one runs forward, so the three may add up to more than the
    time that passed; with one batch (a query's few misses) they run in turn."""

    decode_ms: float = 0.0
    preprocess_ms: float = 0.0
    forward_ms: float = 0.0


class EmbedClock:
    """Adds up ``EmbedTimes`` from the threads that embed for one stage of one query (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ms = [0.0, 0.0, 0.0]

    def add(self, decode_s: float = 0.0, preprocess_s: float = 0.0, forward_s: float = 0.0) -> None:
        with self._lock:
            for i, seconds in enumerate((decode_s, preprocess_s, forward_s)):
                self._ms[i] += seconds * 1000.0

    def times(self) -> EmbedTimes:
        with self._lock:
            return EmbedTimes(*self._ms)


def encode_batches(
    level: ImageTower, corpus: Corpus, image_ids: Sequence[str], batch_size: int, clock: EmbedClock | None = None
) -> Iterator[tuple[list[str], np.ndarray]]:
    """Yield ``(ids, features)`` per batch, features ``(n, d)``; the next batch is prepared while this one runs
    forward. Each step's time is added to ``clock`` when one is given."""
    if not image_ids:
        return
    clock = clock if clock is not None else EmbedClock()
    batches = [list(image_ids[start : start + batch_size]) for start in range(0, len(image_ids), batch_size)]

    def prepare(batch: list[str]) -> torch.Tensor:
        started = time.perf_counter()
        decoded = corpus.decoded(level, batch)  # a pixel-array slice when the corpus has one, else decoded files
        between = time.perf_counter()
        pixels = corpus.preprocess(level, decoded)
        clock.add(decode_s=between - started, preprocess_s=time.perf_counter() - between)
        return pixels

    def forward(pixels: torch.Tensor) -> np.ndarray:
        started = time.perf_counter()
        features = level.encode_pixels(pixels)
        clock.add(forward_s=time.perf_counter() - started)
        return features

    if len(batches) == 1:  # a query's few misses: a thread to overlap with would cost more than it hides
        yield batches[0], forward(prepare(batches[0]))
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode") as pool:
        pending = pool.submit(prepare, batches[0])
        for i, batch in enumerate(batches):
            pixels = pending.result()
            if i + 1 < len(batches):
                pending = pool.submit(prepare, batches[i + 1])
            yield batch, forward(pixels)
