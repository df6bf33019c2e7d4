"""Cascades side by side: the same queries through several configurations on one gallery, each from a fresh start.

The paper's deep cascade trades a slightly dearer lifetime for cheaper first
queries (Eq. 1: ``k_1 C_L / (k_1 C_2 + k_2 C_3)``, 1.75x and 1.97x in Table 1).
Here both show as *measured* curves: each configuration replays the same query
list (``analysis.replay.replay``: its cost counted from zero, build included, so a
shared feature cache only saves wall time), beside the cost model's prediction
for the same ks at the alpha each configuration measured.

"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis import cost_model
from analysis.replay import ReplayResult, replay
from cascade import units
from cascade.errors import ConfigError
from cascade.search import CascadeSearcher
from cascade.types import SearchResult


@dataclass(frozen=True)
class Contender:
    """One configuration's replay and the cost model's view of it.

    Attributes:
        label: the configuration as a legend names it.
        macs_per_image: each level's image MACs, cheapest first.
        model_curve_image_macs: the cost model's cumulative MACs after 0..Q queries at the measured alpha.
        model_early_reduction: Eq. 1 against ``[first, last]`` with the same k_1; None below 3 levels.
    """

    label: str
    level_ids: tuple[str, ...]
    macs_per_image: tuple[int, ...]
    ks: tuple[int, ...]
    result: ReplayResult
    model_curve_image_macs: tuple[float, ...]
    model_early_reduction: float | None

    @property
    def per_query_image_macs(self) -> np.ndarray:
        """``(Q,)`` image MACs each query paid (its misses above level 1)."""
        return np.diff(np.asarray(self.result.curve_image_macs, dtype=np.int64))

    @property
    def first_query_image_macs(self) -> int:
        return int(self.per_query_image_macs[0]) if self.result.queries else 0


@dataclass(frozen=True)
class SideBySide:
    """Several configurations over the same queries on one gallery of ``n_images``.

    Attributes:
        baselines: encoder id -> that encoder alone over the gallery (N x C), cheapest first.
    """

    contenders: tuple[Contender, ...]
    baselines: dict[str, int]
    n_images: int
    queries: int

    def curves(self) -> pd.DataFrame:
        """``config``, ``kind`` (measured/model), ``query_index`` (0 = build), ``cumulative_image_macs``."""
        parts = []
        for c in self.contenders:
            q = np.arange(len(c.result.curve_image_macs))
            parts.append(
                pd.DataFrame(
                    {
                        "config": c.label,
                        "kind": "measured",
                        "query_index": q,
                        "cumulative_image_macs": np.asarray(c.result.curve_image_macs, float),
                    }
                )
            )
            parts.append(
                pd.DataFrame(
                    {
                        "config": c.label,
                        "kind": "model",
                        "query_index": q,
                        "cumulative_image_macs": np.asarray(c.model_curve_image_macs),
                    }
                )
            )
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()

    def per_query(self, first: int = 30) -> pd.DataFrame:
        """``config``, ``query_index`` (from 1), ``image_macs`` of the first ``first`` queries."""
        parts = [
            pd.DataFrame({"config": c.label, "query_index": np.arange(1, len(macs) + 1), "image_macs": macs})
            for c in self.contenders
            for macs in [c.per_query_image_macs[:first]]
        ]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()

    def baselines_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"encoder_id": list(self.baselines), "image_macs": list(self.baselines.values())})

    def table(self) -> pd.DataFrame:
        """One row per configuration: first-query and lifetime MACs, alpha, and the deep-vs-[first, last] ratios.

        ``measured early reduction``: first-query MACs of the two-level contender with the same first and last
        encoders and k_1, over this one's (Eq. 1 measured); ``lifetime vs it``: this one's lifetime over that one's.
        """
        rows = []
        for c in self.contenders:
            twin = self._two_level_twin(c)
            rows.append(
                {
                    "configuration": c.label,
                    "first query image MACs": c.first_query_image_macs,
                    "lifetime image MACs": c.result.cascade_image_macs,
                    "alpha": round(c.result.alpha, 4),
                    "Eq. 1 model (x)": c.model_early_reduction,
                    "measured early reduction (x)": twin.first_query_image_macs / c.first_query_image_macs
                    if twin and c.first_query_image_macs
                    else None,
                    "lifetime vs [first, last] (x)": c.result.cascade_image_macs / twin.result.cascade_image_macs
                    if twin
                    else None,
                }
            )
        return pd.DataFrame(rows)

    def _two_level_twin(self, deep: Contender) -> Contender | None:
        if len(deep.level_ids) < 3:
            return None
        for c in self.contenders:
            same_ends = c.level_ids == (deep.level_ids[0], deep.level_ids[-1])
            if same_ends and c.ks[0] == deep.ks[0]:
                return c
        return None


def eq1_k2(macs_per_image: Sequence[float], k1: int, k_last: int, target: float) -> int:
    """The whole k_2 of a 3-level cascade reaching an Eq. 1 reduction of ``target`` (rounded up, at least ``k_last``).

    Rounding up keeps quality (more candidates for the last level); ``k_last`` is the floor because k must not grow.
    """
    exact = cost_model.k2_for_early_latency_reduction([units.gmacs(m) for m in macs_per_image], k1, target)
    return max(int(k_last), math.ceil(exact - 1e-9))


def side_by_side(
    contenders: Sequence[tuple[str, CascadeSearcher, Sequence[int]]],
    queries: Sequence[str],
    workload_name: str = "custom",
    on_query: Callable[[int, int, SearchResult, int], None] | None = None,
) -> SideBySide:
    """Replay ``queries`` through each ``(label, built searcher, ks)`` in turn, all on the same gallery.

    Args:
        on_query: called after each query with (contender index, queries done, result, cumulative MACs).
    """
    if len(contenders) < 1 or not queries:
        raise ConfigError("pick at least one configuration and one query")
    corpora = {searcher.corpus.fingerprint for _, searcher, _ in contenders}
    if len(corpora) != 1:
        raise ConfigError("side by side needs every configuration on the same gallery")
    done, baselines = [], {}
    for index, (label, searcher, ks) in enumerate(contenders):
        report = None if on_query is None else (lambda n, r, m, index=index: on_query(index, n, r, m))
        result = replay(searcher, queries, tuple(ks), workload_name, on_query=report)
        done.append(_contender(label, searcher, tuple(ks), result))
        baselines.update(result.baselines)
    n_images = len(contenders[0][1].corpus)
    return SideBySide(tuple(done), dict(sorted(baselines.items(), key=lambda kv: kv[1])), n_images, len(queries))


def _contender(label: str, searcher: CascadeSearcher, ks: tuple[int, ...], result: ReplayResult) -> Contender:
    macs = tuple(int(level.image_macs) for level in searcher.levels)
    costs = cost_model.CascadeCosts(tuple(units.gmacs(m) for m in macs), ks)
    n_images = len(searcher.corpus)
    model = cost_model.cost_vs_queries(costs, n_images, result.alpha, np.arange(result.queries + 1))
    early = cost_model.early_latency_reduction(costs) if costs.depth >= 3 else None
    curve = tuple(float(units.macs_from_gmacs(g)) for g in model)
    return Contender(label, tuple(searcher.level_ids), macs, ks, result, curve, early)
