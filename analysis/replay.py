"""Replay a query workload through a cascade and measure what the paper assumes.

The lifetime saving of a bi-encoder cascade rests on the alpha-small-world
assumption: over its lifetime, a search system hands only a small share alpha
of its images to the expensive levels. A replay *measures* alpha and the
cumulative image cost instead of assuming them:

- ``zipf``: queries drawn Zipf-skewed from the captions of a popular tenth of
  the gallery (the regime the paper assumes: few images are ever retrieved);
- ``uniform``: every caption of the gallery once, in random order: alpha climbs
  towards 1 and the saving vanishes (the honest lesson of the assumption).

Cost is counted for a fresh system, build included on both sides: the cascade
pays N x C_1 once, then C_i for each image the first time level i needs it; the
baseline (the last level alone) pays N x C_L at build and nothing after.

The command replays on the preset's *lifetime* gallery by default (100,000
images for ``shapes``): alpha can never be below k_1 / N, and a real system's
collection is large against k_1 times its number of distinct queries.

    cascade replay --preset shapes --workload zipf --queries 2000 --json
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from analysis.accounting import CostAccumulator
from cascade.corpus import Corpus
from cascade.errors import ConfigError
from cascade.search import CascadeSearcher
from cascade.types import SearchResult

WORKLOADS = ("zipf", "uniform")
POPULAR_SHARE = 0.1
ZIPF_EXPONENT = 1.0


@dataclass(frozen=True)
class ReplayResult:
    """What a workload cost a cascade against its last level alone.

    Attributes:
        alpha: share of the gallery ever handed to the levels above the first.
        distinct_queries: how many different texts the workload held; with k_1 they bound alpha:
            alpha <= distinct_queries x k_1 / N, whatever the encoders.
        cascade_image_macs: build (N x C_1) + each image embedded once by each level >= 2 that needed it.
        baseline_image_macs: N x C_L (the last level alone embeds everything at build).
        curve_image_macs: cumulative cascade cost after 0..Q queries (index 0 = build).
        wall_s: wall time of the replay's searches.
        baselines: encoder id -> that level alone over the gallery (N x C_i), cheapest first.
    """

    workload: str
    queries: int
    distinct_queries: int
    alpha: float
    cascade_image_macs: int
    baseline_image_macs: int
    curve_image_macs: tuple[int, ...]
    wall_s: float
    baselines: dict[str, int] = field(default_factory=dict)

    @property
    def reduction(self) -> float:
        return self.baseline_image_macs / self.cascade_image_macs if self.cascade_image_macs else float("inf")

    def as_json(self) -> dict:
        return {
            "workload": self.workload,
            "queries": self.queries,
            "distinct_queries": self.distinct_queries,
            "alpha": round(self.alpha, 4),
            "cascade_image_macs": self.cascade_image_macs,
            "baseline_image_macs": self.baseline_image_macs,
            "reduction": round(self.reduction, 3),
            "baselines": dict(self.baselines),
            "break_even": self.break_even(),
        }

    def break_even(self) -> dict[str, int | None]:
        """Encoder id -> first query count (0 = at build) at which the cascade has cost as much as it alone; None:
        not within this replay."""
        return {
            name: next((q for q, spent in enumerate(self.curve_image_macs) if spent >= macs), None)
            for name, macs in self.baselines.items()
        }


def workload(corpus: Corpus, kind: str, n_queries: int | None = None, seed: int = 0) -> list[str]:
    """Query texts drawn from the corpus's captions.

    Args:
        kind: ``zipf`` (a popular tenth of the images, Zipf-ranked) or ``uniform`` (every caption,
            shuffled; cycled when ``n_queries`` exceeds their number).
        n_queries: how many queries; default every caption (uniform) or 2,000 (zipf).
        seed: the draw's seed.
    """
    if kind not in WORKLOADS:
        raise ConfigError(f"workload must be one of {', '.join(WORKLOADS)}, got {kind!r}")
    captioned = [image_id for image_id in corpus.ids if corpus.captions.get(image_id)]
    if not captioned:
        raise ConfigError("the gallery has no captions to draw queries from")
    if n_queries is not None and n_queries <= 0:
        raise ConfigError(f"the number of queries must be at least 1, got {n_queries}")
    rng = random.Random(seed)
    if kind == "uniform":
        texts = [caption for image_id in captioned for caption in corpus.captions[image_id]]
        rng.shuffle(texts)
        n_queries = n_queries or len(texts)
        return [texts[i % len(texts)] for i in range(n_queries)]
    popular = rng.sample(captioned, max(1, round(POPULAR_SHARE * len(captioned))))  # random order = popularity rank
    weights = [1.0 / (rank**ZIPF_EXPONENT) for rank in range(1, len(popular) + 1)]
    picks = rng.choices(popular, weights=weights, k=n_queries or 2000)
    return [rng.choice(corpus.captions[image_id]) for image_id in picks]


def replay(
    searcher: CascadeSearcher,
    queries: Sequence[str],
    ks: Sequence[int],
    workload_name: str = "custom",
    on_query: Callable[[int, SearchResult, int], None] | None = None,
) -> ReplayResult:
    """Run ``queries`` through the cascade, measuring alpha and cumulative image cost.

    Args:
        on_query: called after each query with (queries done, its result, cumulative cascade MACs).
    """
    levels, n_images = searcher.levels, len(searcher.corpus)
    counted = CostAccumulator([level.image_macs for level in levels], n_images)
    started = time.perf_counter()
    for done, query in enumerate(queries, start=1):
        result = searcher.search(query, ks)
        counted.add_result(result)
        if on_query is not None:
            on_query(done, result, counted.image_macs)
    return ReplayResult(
        workload=workload_name,
        queries=len(queries),
        distinct_queries=len(set(queries)),
        alpha=counted.alpha,
        cascade_image_macs=counted.image_macs,
        baseline_image_macs=n_images * levels[-1].image_macs,
        curve_image_macs=tuple(counted.curve),
        wall_s=time.perf_counter() - started,
        baselines=_baselines(searcher),
    )


def _baselines(searcher: CascadeSearcher) -> dict[str, int]:
    n_images = len(searcher.corpus)
    levels = sorted(searcher.levels, key=lambda level: level.image_macs)
    return {level.id: n_images * level.image_macs for level in levels}
