"""Lifetime cost, measured: replays of shapes captions through a cascade and through its largest encoder.

The preset's cascade [shapes:small -> shapes:large] (k = 15, 10) and
shapes:large alone start fresh on the preset's 100,000-image lifetime gallery
(whose first 5,000 images are the test gallery). Each builds (embeds the gallery
with its first level), then answers the same queries. Image MACs are what the
searches report (build + every cache miss); wall time is what they took, build
included. The two sides' builds alternate (twice each, medians), and their
queries are interleaved one by one, so the machine's noise hits both alike.

Two workloads (``analysis.replay.workload``):
- ``uniform``: 5,000 captions of the whole gallery, shuffled: alpha climbs
  with every new query, so the cascade ends up paying for both encoders: the
  honest worst case of the small-world assumption.
- ``zipf``: queries about a popular tenth of the gallery (the paper's regime).

    python -m bench.lifetime [--quick]
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from analysis import presets
from analysis.replay import workload
from bench import section_main
from cascade import world
from cascade.cache import MemoryCache
from cascade.corpus import Corpus
from cascade.encoders import create_encoder
from cascade.encoders.base import ImageTower
from cascade.paths import cache_dir
from cascade.search import CascadeSearcher

PRESET = presets.get("shapes")
SMALL, LARGE = PRESET.levels
CASCADE_KS, ALONE_KS = PRESET.ks, PRESET.ks[-1:]
QUICK_GALLERY_IMAGES = 500
UNIFORM_QUERIES, ZIPF_QUERIES, QUICK_QUERIES = 5_000, 2_000, 300


def shapes_gallery(quick: bool, which: str = "lifetime") -> tuple[Corpus, Path]:
    """A shapes gallery (``which``: ``lifetime``, 100,000 images, or ``test``, 5,000), or for a quick run a
    500-image one: (corpus, image root)."""
    if quick:
        json_path, image_root = world.materialise_small(cache_dir() / "bench", n_images=QUICK_GALLERY_IMAGES)
    else:
        json_path, image_root = world.materialise(which)
    return Corpus.from_karpathy(json_path, image_root), image_root


@dataclass(frozen=True)
class LifetimeRow:
    """One workload: measured image MACs and wall time, build included, of both sides.

    Attributes:
        alpha: share of the gallery the cascade's level 2 ever embedded.
        cascade_build_s, alone_build_s: median wall time of each side's build.
        cascade_queries_s, alone_queries_s: summed wall time of the queries.
    """

    workload: str
    n_images: int
    queries: int
    alpha: float
    cascade_image_macs: int
    alone_image_macs: int
    cascade_build_s: float
    alone_build_s: float
    cascade_queries_s: float
    alone_queries_s: float

    @property
    def macs_reduction(self) -> float:
        return self.alone_image_macs / self.cascade_image_macs

    @property
    def wall_reduction(self) -> float:
        return (self.alone_build_s + self.alone_queries_s) / (self.cascade_build_s + self.cascade_queries_s)


@dataclass(frozen=True)
class _Builds:
    small_rows: dict
    large_rows: dict
    small_macs: int
    large_macs: int
    small_s: float
    large_s: float


def _builds(small: ImageTower, large: ImageTower, corpus: Corpus, repeats: int) -> _Builds:
    """Build both first levels ``repeats`` times each, alternating, from empty caches; keep one set of rows."""
    times: dict[str, list[float]] = {small.id: [], large.id: []}
    rows, macs = {}, {}
    for _ in range(repeats):
        for level in (small, large):
            cache = MemoryCache()
            started = time.perf_counter()
            report = CascadeSearcher([level], corpus, cache=cache).build()
            times[level.id].append(time.perf_counter() - started)
            rows[level.id], macs[level.id] = cache.get(level.id, corpus.ids), report.image_macs
    return _Builds(rows[small.id], rows[large.id], macs[small.id], macs[large.id],
                   statistics.median(times[small.id]), statistics.median(times[large.id]))  # fmt: skip


def replay_both(corpus: Corpus, queries: Sequence[str], name: str, builds: _Builds) -> LifetimeRow:
    """Fresh cascade and fresh largest encoder (level 1 rows from the timed builds), queries interleaved."""
    small, large = create_encoder(SMALL), create_encoder(LARGE)
    cascade_cache, alone_cache = MemoryCache(), MemoryCache()
    cascade_cache.put(small.id, builds.small_rows)  # what the timed build embedded; level 2 starts empty
    alone_cache.put(large.id, builds.large_rows)
    cascade = CascadeSearcher([small, large], corpus, cache=cascade_cache)
    alone = CascadeSearcher([large], corpus, cache=alone_cache)
    cascade.build(), alone.build()  # installs the cached rows: embeds nothing
    cascade_macs, alone_macs, cascade_s, alone_s = builds.small_macs, builds.large_macs, 0.0, 0.0
    for query in queries:
        started = time.perf_counter()
        result = cascade.search(query, CASCADE_KS)
        middle = time.perf_counter()
        baseline = alone.search(query, ALONE_KS)
        cascade_s, alone_s = cascade_s + middle - started, alone_s + time.perf_counter() - middle
        cascade_macs += result.image_macs
        alone_macs += baseline.image_macs  # zero: a single level never misses after its build
    embedded = len(cascade_cache.get(large.id, corpus.ids))
    if cascade_macs != builds.small_macs + embedded * large.image_macs:  # metered misses = rows level 2 cached
        raise RuntimeError(f"metered {cascade_macs} MACs, but level 2 cached {embedded} images")
    return LifetimeRow(
        workload=name,
        n_images=len(corpus),
        queries=len(queries),
        alpha=embedded / len(corpus),
        cascade_image_macs=cascade_macs,
        alone_image_macs=alone_macs,
        cascade_build_s=builds.small_s,
        alone_build_s=builds.large_s,
        cascade_queries_s=cascade_s,
        alone_queries_s=alone_s,
    )


def run(quick: bool = False) -> tuple[LifetimeRow, ...]:
    """Both workloads on the shapes lifetime gallery (quick: a small gallery, fewer queries, one build each)."""
    corpus, _ = shapes_gallery(quick)
    builds = _builds(create_encoder(SMALL), create_encoder(LARGE), corpus, repeats=1 if quick else 2)
    uniform = workload(corpus, "uniform", QUICK_QUERIES if quick else UNIFORM_QUERIES, seed=0)
    zipf = workload(corpus, "zipf", QUICK_QUERIES if quick else ZIPF_QUERIES, seed=0)
    return tuple(replay_both(corpus, queries, name, builds) for name, queries in (("uniform", uniform), ("zipf", zipf)))


def markdown(rows: Sequence[LifetimeRow]) -> str:
    lines = [
        f"| workload | images | queries | alpha | cascade GMACs | {LARGE} alone GMACs | MACs saved (x) | "
        f"cascade wall (s) | {LARGE} alone wall (s) | wall saved (x) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r.workload} | {r.n_images:,} | {r.queries:,} | {r.alpha:.3f} | "
                     f"{r.cascade_image_macs / 1e9:,.2f} | {r.alone_image_macs / 1e9:,.2f} | {r.macs_reduction:.2f} | "
                     f"{r.cascade_build_s:.1f} + {r.cascade_queries_s:.1f} | {r.alone_build_s:.1f} + "
                     f"{r.alone_queries_s:.1f} | {r.wall_reduction:.2f} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    return section_main("lifetime", __doc__, run, markdown, argv)


if __name__ == "__main__":
    sys.exit(main())
