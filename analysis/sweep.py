"""The k_1 knob, swept: Recall@1/5/10 and lifetime image cost of a two-level cascade against k_1.

This is the paper's trade-off: a larger k_1 hands level 2 more candidates (better recall,
up to the last level alone) and embeds more images above level 1 (dearer lifetime).
Each row is an ordinary ``analysis.evaluate.evaluate`` of ``[first, last]`` with ks
``(k_1, k_last)``; the reference row is the last level alone. One cache serves every row:
the evaluator's costs count a fresh system, whatever the cache held.

    cascade compare --preset shapes --sweep-k1 5,10,15,20,50,100 --json
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

from analysis.cascades import assemble
from analysis.evaluate import RECALL_KS, CaptionEmbeddings, EvalResult, evaluate
from cascade.cache import FeatureCache, MemoryCache
from cascade.corpus import Corpus
from cascade.encoders.base import ImageTower
from cascade.errors import ConfigError

WITHIN_POINTS = 1.0  # "as good as the last level alone": every R@k within one percentage point


@dataclass(frozen=True)
class K1Sweep:
    """Rows of a k_1 sweep and the reference they are judged against.

    Attributes:
        rows: one evaluation of ``[first, last]`` per k_1, in increasing k_1.
        reference: the last level alone (ks ``(k_last,)``).
        smallest_k1: the smallest k_1 whose R@1, R@5 and R@10 are all within ``WITHIN_POINTS`` of the
            reference's; None if none is.
    """

    rows: tuple[EvalResult, ...]
    reference: EvalResult
    smallest_k1: int | None

    def frame(self) -> pd.DataFrame:
        """Columns k1, r1, r5, r10 (percent), image_macs, alpha; the reference as k1 = NaN, series ``last alone``."""
        rows = [_row("cascade", r.ks[0], r) for r in self.rows]
        rows.append(_row("last level alone", None, self.reference))
        return pd.DataFrame(rows)

    def as_json(self) -> dict:
        return {
            "rows": [r.as_json() for r in self.rows],
            "reference": self.reference.as_json(),
            "smallest_k1_within_1_point": self.smallest_k1,
        }


def sweep_k1(
    first: ImageTower,
    last: ImageTower,
    corpus: Corpus,
    k1s: Sequence[int],
    k_last: int = 10,
    cache: FeatureCache | None = None,
    limit: int | None = None,
    progress: Callable[[str], Callable[[int, int], None] | None] | None = None,
) -> K1Sweep:
    """Evaluate ``[first, last]`` at each k_1 of ``k1s`` and ``last`` alone, on ``corpus``'s captions.

    Args:
        k_last: results kept by the last level (at least 10, for R@10).
        progress: called with a row's name before it runs; may return a ``(done, total)`` callback.
    """
    k1s = sorted(set(int(k) for k in k1s))
    if not k1s:
        raise ConfigError("the sweep needs at least one k_1")
    if k1s[0] < k_last or k1s[-1] > len(corpus):
        raise ConfigError(
            f"each k_1 must lie between k_last = {k_last} and the gallery's {len(corpus):,} images, got {k1s}"
        )
    cache = cache if cache is not None else MemoryCache()
    captions = CaptionEmbeddings()  # both text towers encode the captions once for every row

    def run(levels: list[ImageTower], ks: tuple[int, ...], name: str) -> EvalResult:
        searcher = assemble(levels, corpus, cache)
        return evaluate(searcher, ks, progress=progress(name) if progress else None, limit=limit, captions=captions)

    reference = run([last], (k_last,), f"{last.id} alone")
    rows = tuple(run([first, last], (k1, k_last), f"k_1 = {k1}") for k1 in k1s)
    return K1Sweep(rows, reference, smallest_within(rows, reference))


def smallest_within(rows: Sequence[EvalResult], reference: EvalResult, points: float = WITHIN_POINTS) -> int | None:
    """The smallest k_1 of ``rows`` whose every R@k is at least the reference's minus ``points``."""
    for row in sorted(rows, key=lambda r: r.ks[0]):
        if all(row.recall[k] >= reference.recall[k] - points for k in RECALL_KS):
            return row.ks[0]
    return None


def _row(series: str, k1: int | None, result: EvalResult) -> dict:
    recalls = {f"r{k}": value for k, value in result.recall.items()}
    return {"series": series, "k1": k1, **recalls, "image_macs": result.image_macs, "alpha": result.alpha}
