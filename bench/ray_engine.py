"""The level-1 build on Ray Data against the local build, on the same shapes gallery.

``cascade index --engine ray``'s path (``cascade.ray_build.ray_embed``: a local
Ray with 2 encoder actors, Parquet shards) against ``--engine local``
(``CascadeSearcher.build``) with shapes:small on the first images of the
shapes test gallery. The local build runs twice, each from an empty cache:
as the CLI runs it (from the world's pixel array) and decoding the PNG files,
as Ray's actors do. Ray's time is split into start-up (``ray.init``), the
pipeline (actors created, files read, decoded, embedded, shards written) and
shut-down; with start-up is what one ``cascade index --engine ray`` pays. The
embeddings must be equal (max absolute difference). On 2 cores Ray cannot be
faster: the figures are its overhead.

    python -m bench.ray_engine [--quick]
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from bench import section_main
from bench.lifetime import shapes_gallery
from cascade.cache import MemoryCache
from cascade.corpus import Corpus
from cascade.encoders import create_encoder
from cascade.ray_build import _start_ray, ray_embed
from cascade.search import CascadeSearcher

ENCODER, WORKERS = "shapes:small", 2
IMAGES = 5_000  # quick: the 500-image gallery


@dataclass(frozen=True)
class RayReport:
    """Seconds of each build of the same ``n_images`` and how far Ray's embeddings are from the local ones."""

    n_images: int
    workers: int
    local_s: float  # from the pixel array, as `cascade index` runs on the world
    local_files_s: float  # decoding the PNG files, as Ray's actors do
    startup_s: float
    pipeline_s: float
    shutdown_s: float
    max_abs_diff: float

    @property
    def ray_s(self) -> float:
        """What one ``cascade index --engine ray`` pays: start-up, pipeline, shut-down."""
        return self.startup_s + self.pipeline_s + self.shutdown_s

    def per_s(self, seconds: float) -> float:
        return self.n_images / seconds


def _local(corpus: Corpus) -> tuple[float, dict[str, np.ndarray]]:
    cache = MemoryCache()
    started = time.perf_counter()
    CascadeSearcher([create_encoder(ENCODER)], corpus, cache=cache).build()
    return time.perf_counter() - started, cache.get(create_encoder(ENCODER).id, corpus.ids)


def _ray(corpus: Corpus, shard_dir: Path) -> tuple[float, float, float, dict[str, np.ndarray]]:
    """(start-up s, pipeline s, shut-down s, embeddings): ray_embed on a Ray started here, timed apart."""
    started = time.perf_counter()
    ray, _ = _start_ray(None, WORKERS)  # what ray_embed would start itself: timed on its own
    ready = time.perf_counter()
    try:
        rows = {}
        for shard in ray_embed(partial(create_encoder, ENCODER), corpus, corpus.ids, shard_dir, workers=WORKERS):
            rows.update(shard.features())
        done = time.perf_counter()
    finally:
        ray.shutdown()
    return ready - started, done - ready, time.perf_counter() - done, rows


def run(quick: bool = False) -> RayReport:
    """Both builds of the first ``IMAGES`` test-gallery images (quick: the 500-image gallery)."""
    corpus, _ = shapes_gallery(quick, "test")
    if not quick:
        ids = corpus.ids[:IMAGES]
        corpus = Corpus(ids, {i: corpus.paths[i] for i in ids}, pixel_rows={i: corpus.pixel_rows[i] for i in ids
                                                                            if i in corpus.pixel_rows})  # fmt: skip
    files = dataclasses.replace(corpus, pixel_rows={})
    local_s, local = _local(corpus)
    local_files_s, _ = _local(files)
    with tempfile.TemporaryDirectory() as folder:
        startup_s, pipeline_s, shutdown_s, remote = _ray(corpus, Path(folder) / "shards")
    diff = max(float(np.max(np.abs(remote[i] - local[i]))) for i in corpus.ids)
    if set(remote) != set(local):
        raise RuntimeError(f"Ray embedded {len(remote)} images, the local build {len(local)}")
    return RayReport(len(corpus), WORKERS, local_s, local_files_s, startup_s, pipeline_s, shutdown_s, diff)


def markdown(r: RayReport) -> str:
    rows = [("local, pixel array (`--engine local`)", r.local_s), ("local, decoding the files", r.local_files_s),
            ("Ray, pipeline only", r.pipeline_s),
            ("Ray, with start-up and shut-down (`--engine ray`)", r.ray_s)]  # fmt: skip
    lines = ["| build | seconds | images/s | time / local (pixel array) |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {s:.1f} | {r.per_s(s):,.0f} | {s / r.local_s:.1f}x |" for name, s in rows]
    lines += ["", f"{r.n_images:,} images, {ENCODER}, {r.workers} Ray actors; Ray start-up {r.startup_s:.1f} s, "
              f"shut-down {r.shutdown_s:.1f} s. Largest absolute difference between the two builds' embeddings: "
              f"{r.max_abs_diff:.3g}."]  # fmt: skip
    return "\n".join(lines)


def summary(r: RayReport) -> list[tuple[str, str, str]]:
    times = (f"{r.ray_s / r.local_s:.1f}x the local build's time with start-up, {r.pipeline_s / r.local_s:.1f}x "
             f"without ({r.pipeline_s / r.local_files_s:.1f}x the local build decoding files)")  # fmt: skip
    return [(f"Ray build ({r.workers} local actors) vs local build, {r.n_images:,} shapes images",
             f"{times}; max abs diff {r.max_abs_diff:.3g}", "embeddings equal")]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    return section_main("ray_engine", __doc__, run, markdown, argv)


if __name__ == "__main__":
    sys.exit(main())
