"""The What-if tab's model: the paper's cost model applied to real architectures, no weights needed.

MACs per image are counted from each architecture (``analysis.table1``), which
takes seconds per encoder, so a ``CostModel`` counts each (encoder, MAC mode)
once per process and every session reuses the figure.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from analysis import cost_model, hardware, table1
from cascade import units
from cascade.errors import ConfigError

CURVE_POINTS = 240


@dataclass(frozen=True)
class WhatIf:
    """The cost model's view of one cascade of a Table 1 family.

    Attributes:
        curves: ``queries`` (1 to Q, log-spaced), ``series`` (``cascade`` or ``LABEL alone``), ``image_macs``.
        lifetime_reduction: the last level alone over the cascade, lifetime (x-fold).
        break_even: ``LABEL alone`` -> first query count where the cascade has cost as much; None: never.
        early_latency_reduction: Eq. 1 against ``[first, last]``; None below 3 levels.
        early_query_image_gmacs: image GMACs of the first query (every cache empty).
        image_gmacs: encoder label -> GMACs per image in the chosen MAC mode.
        levels: the cascade's encoder labels, cheapest first; ks: what each level hands on.
    """

    curves: pd.DataFrame
    lifetime_reduction: float
    break_even: dict[str, int | None]
    early_latency_reduction: float | None
    early_query_image_gmacs: float
    image_gmacs: dict[str, float]
    levels: tuple[str, ...] = ()
    ks: tuple[int, ...] = ()
    n_images: int = 0
    alpha: float = 0.0


def real_units(model: WhatIf, profile: hardware.HardwareProfile) -> hardware.RealCosts:
    """The What-if cascade's build, first query and lifetime (and each encoder alone) on ``profile``."""
    macs = [units.macs_from_gmacs(model.image_gmacs[label]) for label in model.levels]
    costs = hardware.real_costs(profile, model.levels, macs, model.ks, model.n_images, model.alpha)
    alone = {
        label: profile.estimate(units.macs_from_gmacs(g) * model.n_images, label)
        for label, g in model.image_gmacs.items()
    }
    return replace(costs, baselines=alone)


class CostModel:
    """Table 1's encoders' MACs, counted once each, and the cost model over them.

    Args:
        image_gmacs: ``(EncoderSpec, macs_mode) -> GMACs per image``; tests pass fixed numbers.
    """

    def __init__(self, image_gmacs: table1.ImageGmacs = table1.count_image_gmacs) -> None:
        self._image_gmacs = image_gmacs
        self._memo: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()  # one count at a time: counting is CPU-bound and a race would count twice

    def gmacs(self, encoder: table1.EncoderSpec, macs_mode: str) -> float:
        """GMACs per image of ``encoder`` in ``macs_mode`` (``paper`` or ``full``)."""
        key = (encoder.name, macs_mode)
        with self._lock:
            if key not in self._memo:
                self._memo[key] = self._image_gmacs(encoder, macs_mode)
            return self._memo[key]

    def table1(self, macs_mode: str) -> table1.Table1:
        return table1.build_table1(macs_mode, image_gmacs=self.gmacs)

    def whatif(
        self,
        family: str,
        labels: Sequence[str],
        macs_mode: str,
        n_images: int,
        alpha: float,
        max_queries: int,
        ks: Sequence[int],
    ) -> WhatIf:
        """Model a cascade of ``labels`` (encoders of ``family``, in any order: run cheapest first).

        Args:
            ks: candidates each level hands on, ``(k_1, ..., k_{L-1})``; extra values are ignored.
        """
        encoders = _family(family).encoders
        chosen = [e for e in encoders if e.label in labels]
        if len(chosen) < 2:
            raise ConfigError("pick at least two encoders of the family to cascade")
        if n_images < 1 or max_queries < 1:
            raise ConfigError("the gallery size and the query count must be at least 1")
        gmacs = {e.label: self.gmacs(e, macs_mode) for e in encoders}
        chosen.sort(key=lambda e: gmacs[e.label])
        costs = cost_model.CascadeCosts(tuple(gmacs[e.label] for e in chosen), tuple(ks)[: len(chosen) - 1])
        queries = np.unique(np.geomspace(1, max_queries, CURVE_POINTS).round().astype(np.int64))  # a log x axis
        curves = [_curve("cascade", queries, cost_model.cost_vs_queries(costs, n_images, alpha, queries))]
        break_even = {}
        for e in encoders:
            name = f"{e.label} alone"
            curves.append(_curve(name, queries, np.full(len(queries), gmacs[e.label] * n_images)))
            break_even[name] = cost_model.break_even_queries(costs, gmacs[e.label], n_images, alpha)
        return WhatIf(
            curves=pd.concat(curves, ignore_index=True),
            lifetime_reduction=cost_model.lifetime_reduction(costs, alpha),
            break_even=break_even,
            early_latency_reduction=cost_model.early_latency_reduction(costs) if costs.depth >= 3 else None,
            early_query_image_gmacs=cost_model.early_query_image_gmacs(costs),
            image_gmacs=gmacs,
            levels=tuple(e.label for e in chosen),
            ks=costs.handoff_ks,
            n_images=n_images,
            alpha=alpha,
        )


def families() -> list[str]:
    return [family.title for family in table1.FAMILIES]


def family_labels(title: str) -> list[str]:
    """Encoder labels of a Table 1 family, cheapest first (``B/16``, ``L/14``, ``g/14``)."""
    return [encoder.label for encoder in _family(title).encoders]


def _family(title: str) -> table1.Family:
    for family in table1.FAMILIES:
        if family.title == title:
            return family
    raise ConfigError(f"unknown family {title!r}; families: {', '.join(families())}")


def table1_frame(table: table1.Table1) -> pd.DataFrame:
    """Table 1's cost columns as rows: family, cascade (paper labels), lifetime and early-latency reduction."""
    labels = {e.name: e.label for family in table1.FAMILIES for e in family.encoders}
    rows = [(s.family, f"[{labels[s.name]}]", s.lifetime_reduction, None) for s in table.singles]
    rows += [
        (c.family, "[" + ", ".join(labels[n] for n in c.levels) + "]", c.lifetime_reduction, c.early_latency_reduction)
        for c in table.cascades
    ]
    frame = pd.DataFrame(rows, columns=["family", "cascade", "lifetime reduction (x)", "early latency reduction (x)"])
    return frame.round(2)


def _curve(series: str, queries: np.ndarray, gmacs: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"queries": queries, "series": series, "image_macs": gmacs * 1e9})  # MACs: the plots' unit
