"""The preset cascade with level 1 on a FAISS index against the same cascade with exact level 1.

The shapes preset's cascade [shapes:small -> shapes:large] (its ks) on the
100,000-image lifetime gallery, level 1 ranked by ``faiss:HNSW32`` (the
library's default efSearch) and by exact search, evaluated on the same queries
(the gallery's first captions) with ``analysis.evaluate.evaluate``: R@1/5/10
of both (target: within 0.5 points), and level 1's recall@k_1 against exact,
the figure the recall gate measures (on its own 200 captions spread over the
gallery). Both searchers share one feature cache, so the gallery is embedded once.

    python -m bench.index_cascade [--quick]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from analysis import presets
from analysis.evaluate import RECALL_KS, CaptionEmbeddings, EvalResult, evaluate
from bench import section_main
from bench.lifetime import shapes_gallery
from cascade.cache import MemoryCache
from cascade.encoders import create_encoder
from cascade.index import IndexPlan
from cascade.search import CascadeSearcher

PRESET = presets.get("shapes")
INDEX = "faiss:HNSW32"
QUERIES, QUICK_QUERIES = 1_000, 200
TARGET_POINTS = 0.5
GATE = IndexPlan().min_recall  # the library's default threshold


@dataclass(frozen=True)
class IndexCascadeReport:
    """Both evaluations (same queries) and level 1's recall@k_1 with the index against exact.

    Attributes:
        build_s: seconds to build the index (embedding excluded: the cache already held level 1).
    """

    index: str
    with_index: EvalResult
    exact: EvalResult
    level1_recall: float
    recall_queries: int
    recall_source: str
    build_s: float

    @property
    def worst_gap(self) -> float:
        """The largest of |R@k with the index - R@k exact| over k = 1, 5, 10, in points."""
        pairs = [(self.with_index.recall[k], self.exact.recall[k]) for k in RECALL_KS]
        return max(abs(a - b) for a, b in pairs)


def run(quick: bool = False) -> IndexCascadeReport:
    """The preset cascade on the lifetime gallery (quick: a 500-image gallery, 200 captions)."""
    corpus, _ = shapes_gallery(quick, "lifetime")
    levels, cache = [create_encoder(name) for name in PRESET.levels], MemoryCache()
    exact = CascadeSearcher(levels, corpus, cache=cache)
    exact.build()  # embeds the gallery once; the index side reuses the rows
    # min_recall 0: a benchmark reports what the index does, the gate's verdict is in the table.
    approximate = CascadeSearcher(levels, corpus, cache=cache, index=IndexPlan(spec=INDEX, min_recall=0.0))
    started = time.perf_counter()
    approximate.build()
    build_s = time.perf_counter() - started
    limit = QUICK_QUERIES if quick else QUERIES
    captions = CaptionEmbeddings()  # one text encoding of the captions for both sides, as `cascade eval --index`
    with_index = evaluate(approximate, PRESET.ks, limit=limit, captions=captions)
    reference = evaluate(exact, PRESET.ks, limit=limit, captions=captions)
    measured = approximate.index_recall(PRESET.ks[0])
    return IndexCascadeReport(approximate.index.spec.name, with_index, reference, measured.recall,
                              measured.queries, measured.source, build_s)  # fmt: skip


def _recalls(result: EvalResult) -> str:
    return " / ".join(f"{result.recall[k]:.1f}" for k in RECALL_KS)


def markdown(report: IndexCascadeReport) -> str:
    r, e = report.with_index, report.exact
    names = " -> ".join(level.split("@")[0] for level in r.levels)
    k1 = r.ks[0]
    verdict = "passes" if report.level1_recall >= GATE else "fails"
    lines = [
        "| level 1 | cascade | ks | images | queries | R@1 / R@5 / R@10 | image GMACs | alpha |",
        "|---|---|---|---:|---:|---|---:|---:|",
        *[f"| `{name}` | {names} | {', '.join(map(str, x.ks))} | {x.n_images:,} | {x.n_queries:,} | {_recalls(x)} | "
          f"{x.image_macs / 1e9:,.2f} | {x.alpha:.3f} |" for name, x in ((report.index, r), ("exact", e))],
        "",
        f"Largest R@k gap: {report.worst_gap:.2f} points (target: within {TARGET_POINTS}). Level 1's recall@{k1} "
        f"with `{report.index}` against exact: {report.level1_recall:.3f} on {report.recall_queries} "
        f"{report.recall_source} queries ({verdict} the default gate, {GATE:.2f}); the index's build: "
        f"{report.build_s:.1f} s.",
    ]  # fmt: skip
    return "\n".join(lines)


def summary(report: IndexCascadeReport) -> list[tuple[str, str, str]]:
    r, e = report.with_index, report.exact
    return [(f"Preset cascade on the {r.n_images:,}-image gallery, level 1 on `{report.index}` vs exact "
             f"({r.n_queries:,} captions)", f"R@1/5/10 {_recalls(r)} vs {_recalls(e)} (largest gap "
             f"{report.worst_gap:.2f} points); level-1 recall@{r.ks[0]} {report.level1_recall:.3f}",
             f"within {TARGET_POINTS} points")]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    return section_main("index_cascade", __doc__, run, markdown, argv)


if __name__ == "__main__":
    sys.exit(main())
