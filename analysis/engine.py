"""What the app does, without the app: galleries, shared searchers, the log, the cost model.

The Gradio page (``app.py``) is a thin layer over one ``Engine``; tests build an
Engine on a temporary database and a small gallery and drive it directly or
through the page. Everything here is shared by all sessions of a running app:

- cascades are opened by the one composition root, ``analysis.cascades.Cascades``
  (the command line's too): galleries and searchers are created once per
  (gallery, levels, index) and reused by every session (an LRU bounds them), so a
  second user of the same cascade pays nothing for the build and each level's
  cache serves everyone;
- every search is logged in the one ``Store``; the Cost tab's curve is the
  configuration's own lifetime cost, counted from its log (``analysis.accounting``);
- a session's own choices (its ``Choice``) are passed in, never kept here;
- the preset served can change while the app runs (``switch``, in ``analysis.switch``), and
  its ``gate`` holds the loading work back while a preparation makes the preset ready.

Galleries and what may be served: ``analysis.galleries``; objects made once and
shared: ``analysis.shared``.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import hardware, presets, table1
from analysis.cascades import Cascades, Choice, lifetime
from analysis.evaluate import EvalResult
from analysis.galleries import GalleryKind, GallerySource
from analysis.hardware import RealCosts
from analysis.presets import Preset
from analysis.progress import Counter, Progress, Step, Unit, counter
from analysis.replay import ReplayResult, workload
from analysis.side_by_side import SideBySide, eq1_k2, side_by_side
from analysis.store import Store
from analysis.sweep import K1Sweep, sweep_k1
from analysis.switch import PresetSwitch
from analysis.whatif import CostModel
from cascade.corpus import Corpus
from cascade.encoders import create_encoder, is_cross_encoder, known_names
from cascade.encoders.base import ImageTower
from cascade.errors import CascadeError, ConfigError
from cascade.search import CascadeSearcher
from cascade.types import SearchResult

__all__ = ["Choice", "CostView", "Engine", "GalleryKind", "GallerySource", "Progress", "SearchOutcome"]


@dataclass(frozen=True)
class SearchOutcome:
    """A logged search and what the cost card needs beside it.

    Attributes:
        queries_logged: queries in the log for this cascade and gallery, this one included.
        lifetime_image_macs: the cascade's cumulative image MACs in the log (build + every miss).
        ks_asked: the ks the session asked for, when the gallery was smaller and they were cut to
            its size (the search ran with ``result.config.ks``); empty when nothing was cut.
    """

    result: SearchResult
    corpus: Corpus
    queries_logged: int
    lifetime_image_macs: int
    ks_asked: tuple[int, ...] = ()


@dataclass(frozen=True)
class CostView:
    """The log of one cascade on one gallery, as frames for ``analysis.plots``.

    The curve and the per-query bars are the configuration's own lifetime cost, counted from the ids
    its logged queries handed on (``analysis.accounting``): the same whether or not an evaluation, a
    sweep or another configuration warmed the shared feature cache first. What the searches actually
    paid, in that shared cache, is ``paid``.

    Attributes:
        cumulative: ``query_index`` (0 = build), ``image_macs``, ``cumulative_image_macs``.
        per_level: ``query_index``, ``level``, ``encoder_id``, ``image_macs``, ``misses`` of the first queries
            (``misses``: images the level was handed for the first time).
        baselines: ``level``, ``encoder_id``, ``macs_per_image``, ``image_macs`` (= N x MACs per image),
            cheapest first: each level alone over the whole gallery.
        paid: ``query_index``, ``image_macs``, ``cumulative_image_macs`` as the searches paid them.
        alpha: the share of the gallery the logged queries handed above level 1.
    """

    config_key: str
    corpus_id: str
    corpus_size: int
    cumulative: pd.DataFrame
    per_level: pd.DataFrame
    baselines: pd.DataFrame
    paid: pd.DataFrame
    alpha: float


class ReplayStopped(CascadeError):
    """The session asked its replay to stop (closed the page or pressed Stop)."""


class Engine(PresetSwitch):
    """Everything the app needs, Gradio-free: one ``Cascades`` (the composition root) and the cost views.

    Args:
        store: the one database of this process (feature cache, query log, evaluations).
        preset: the default gallery and cascade (``shapes``: offline).
        world: loads the preset's built-in gallery (default: materialise it into the cache dir).
        world_root: the folder the built-in gallery lives in (served to the browser).
        folders: server folders users may search (and that are served); nothing else is.
        create: encoder factory, ``name -> ImageTower`` (tests pass fakes).
        is_cross: whether a name is a cross-encoder, asked without building it (the registry's answer).
        image_gmacs: ``(EncoderSpec, macs_mode) -> GMACs`` for the What-if tab's ``cost_model`` (tests pass numbers).
        names: encoder names to offer (default: the preset's, then every backend's known names).
        capacity: galleries and searchers kept in memory at once.
    """

    def __init__(
        self,
        store: Store,
        preset: Preset = presets.PRESETS["shapes"],
        world: Callable[[], Corpus] | None = None,
        world_root: Path | None = None,
        folders: Sequence[str | Path] = (),
        create: Callable[[str], ImageTower] = create_encoder,
        is_cross: Callable[[str], bool] = is_cross_encoder,
        image_gmacs: table1.ImageGmacs = table1.count_image_gmacs,
        names: Sequence[str] | None = None,
        capacity: int = 8,
    ) -> None:
        self.store = store
        super().__init__(functools.partial(Cascades.on_store, store, folders=folders, create=create, capacity=capacity))
        self._start(preset, world, world_root)
        self._is_cross = is_cross
        self.cost_model = CostModel(image_gmacs)
        self._given_names = None if names is None else tuple(names)
        self._names: dict[str, tuple[str, ...]] = {}  # preset name -> the names offered with it

    # -- galleries -----------------------------------------------------------------------------

    def allowed_paths(self) -> list[str]:
        """The only folders the app may serve files from: the built-in world and the shared folders."""
        return self.galleries.allowed_paths()

    @property
    def world_root(self) -> Path:
        return self.galleries.world_root

    @property
    def folders(self) -> tuple[Path, ...]:
        return self.galleries.folders

    def default_choice(self) -> Choice:
        return Choice(GallerySource(GalleryKind.WORLD), self.preset.levels, self.preset.ks)

    def encoder_names(self) -> tuple[list[str], list[str]]:
        """``(bi-encoders, cross-encoders)`` to offer: the preset's first, then the backends' (unique, in order)."""
        preset = self.preset  # the names follow the preset served now (``switch``)
        names = self._given_names if self._given_names is not None else self._names.get(preset.name)
        if names is None:
            preset_names = [*preset.levels, *(name for levels, _ in preset.comparisons for name in levels)]
            names = tuple(dict.fromkeys([*preset_names, *filter(None, [preset.reranker]), *known_names()]))
            self._names[preset.name] = names
        cross = {name for name in names if self._is_cross(name)}
        return [name for name in names if name not in cross], [name for name in names if name in cross]

    def corpus(self, source: GallerySource, progress: Progress | None = None) -> Corpus:
        """The gallery of ``source``, loaded once and shared (raises CascadeError with one line)."""
        return self.cascades.corpus(source, progress)

    # -- searching -----------------------------------------------------------------------------

    def fitted(self, choice: Choice) -> Choice:
        """``choice`` with each k cut to its gallery's size when the gallery is loaded and smaller (a few uploads)."""
        if self.galleries.loaded(choice.gallery) is None:
            return choice
        return self._cascades.fitted(choice)  # loads nothing: open while the gate holds loading back

    def searcher(self, choice: Choice, progress: Progress | None = None) -> CascadeSearcher:
        """The shared, built searcher of ``choice`` (gallery + levels); ks are per search."""
        return self.cascades.open(choice, progress)

    def search(self, choice: Choice, query: str, progress: Progress | None = None) -> SearchOutcome:
        """Run and log one query through the session's cascade."""
        searched = self.cascades.search(choice, query, progress)
        queries, macs = self.store.lifetime(searched.result.config.key, searched.corpus.fingerprint)
        return SearchOutcome(searched.result, searched.corpus, queries, macs, searched.ks_asked)

    # -- the log -------------------------------------------------------------------------------

    def _built(self, choice: Choice) -> tuple[Choice, CascadeSearcher | None]:
        choice = self.fitted(choice)
        return choice, self._cascades.peek(choice)  # builds nothing: the log's views are open while the gate is shut

    def cost_view(self, choice: Choice, first_queries: int = 50) -> CostView | None:
        """The logged cost of ``choice``; None until its cascade has been built (searched) in this process."""
        choice, searcher = self._built(choice)
        if searcher is None:
            return None
        key, corpus_id = searcher.config(choice.ks).key, searcher.corpus.fingerprint
        counted = lifetime(searcher, self.store.handed_log(key, corpus_id))
        curve = np.asarray(counted.curve, dtype=np.int64)  # index 0: the build
        cumulative = pd.DataFrame(
            {"query_index": range(len(curve)), "image_macs": np.diff(curve, prepend=0), "cumulative_image_macs": curve}
        )
        return CostView(
            key,
            corpus_id,
            len(searcher.corpus),
            cumulative,
            _per_level(searcher, counted.per_query[:first_queries]),
            _baselines(searcher),
            self.store.cumulative_cost(key, corpus_id),
            counted.alpha,
        )

    def reset_log(self, choice: Choice) -> int:
        """Delete this cascade's log on this gallery (never features, evaluations or other configs)."""
        choice, searcher = self._built(choice)
        if searcher is None:
            return 0
        return self.store.clear_log(searcher.config(choice.ks).key, searcher.corpus.fingerprint)

    def replay(
        self,
        choice: Choice,
        kind: str,
        n_queries: int,
        seed: int,
        on_query: Callable[[int, SearchResult, int], None] | None = None,
        stop: threading.Event | None = None,
        progress: Progress | None = None,
        queries: Sequence[str] | None = None,
    ) -> ReplayResult:
        """Replay ``n_queries`` of the gallery's captions (``zipf``/``uniform``) through the cascade, logging each.

        Args:
            queries: replay these instead (a query log read by ``analysis.query_logs``, checked whole before);
                ``kind`` then only names the workload (``file:NAME``).

        Raises:
            ReplayStopped: ``stop`` was set (the queries replayed so far stay logged).
        """
        corpus = self.corpus(choice.gallery, progress)
        queries = list(queries) if queries is not None else workload(corpus, kind, n_queries, seed)

        def each(done: int, result: SearchResult, cumulative: int) -> None:
            if on_query is not None:
                on_query(done, result, cumulative)
            if stop is not None and stop.is_set():
                raise ReplayStopped(f"replay stopped after {done} of {len(queries)} queries")

        return self.cascades.replay(choice, queries, kind, on_query=each, progress=progress)

    def eq1_choice(self, gallery: GallerySource, levels: Sequence[str], k1: int, k_last: int, target: float) -> Choice:
        """The 3-level ``levels`` with the k_2 reaching an Eq. 1 early-query reduction of ``target`` (rounded up)."""
        if len(levels) != 3:
            raise ConfigError(f"k_2 from Eq. 1 needs a 3-level cascade, got {len(levels)} levels")
        searcher = self.searcher(Choice(gallery, tuple(levels), (k1, k_last, k_last)))
        k2 = eq1_k2([level.image_macs for level in searcher.levels], k1, k_last, target)
        return Choice(gallery, tuple(levels), (k1, k2, k_last))

    def side_by_side(
        self,
        choices: Sequence[Choice],
        kind: str,
        n_queries: int,
        seed: int,
        queries: Sequence[str] | None = None,
        on_query: Callable[[int, int, SearchResult, int], None] | None = None,
        progress: Progress | None = None,
    ) -> SideBySide:
        """The same queries through each choice (one gallery), each counted from a fresh start; not logged
        (a comparison, like an evaluation: the log and its measured alpha stay the sessions' own)."""
        if len(choices) < 2:
            raise ConfigError("pick two or more configurations to compare side by side")
        if len({choice.gallery.normalised() for choice in choices}) != 1:
            raise ConfigError("side by side compares configurations on one gallery")
        searchers = [self.searcher(choice, progress) for choice in choices]
        queries = list(queries) if queries is not None else workload(searchers[0].corpus, kind, n_queries, seed)
        contenders = [
            (f"{' > '.join(c.levels)} (k {','.join(map(str, c.ks))})", s, c.ks)
            for c, s in zip(choices, searchers, strict=True)
        ]
        return side_by_side(contenders, queries, kind, on_query)

    def measured_alpha(self, choice: Choice) -> float:
        """Share of the gallery this cascade's logged queries (these ks) handed above level 1 (0 for one level).

        From the query log, not the feature cache: evaluations, other ks and ``index`` embed images too.
        """
        choice, searcher = self._built(choice)
        if searcher is None or len(searcher.levels) < 2:
            return 0.0
        key = searcher.config(choice.ks).key
        return self.store.handed_share(key, searcher.corpus.fingerprint, len(searcher.corpus))

    def real_costs(
        self,
        choice: Choice,
        profile: str,
        price_per_hour: float | None = None,
        power_w: float | None = None,
        efficiency: float | None = None,
    ) -> RealCosts | None:
        """The built cascade's build, first query and lifetime (at the log's measured alpha) on ``profile``.

        ``profile``: an accelerator of ``analysis.hardware`` or ``hardware.MEASURED`` (each encoder timed on this
        machine once, cached). None until the cascade is built.
        """
        choice, searcher = self._built(choice)
        if searcher is None:
            return None
        if profile == hardware.MEASURED:
            measured = [hardware.measure_throughput(level) for level in searcher.levels]
            chosen = hardware.measured_profile(measured, price_per_hour or 0.0, power_w or 0.0)
        else:
            chosen = hardware.accelerator_profile(profile, efficiency, price_per_hour, power_w)
        macs = [level.image_macs for level in searcher.levels]
        alpha = self.measured_alpha(choice)
        return hardware.real_costs(chosen, searcher.level_ids, macs, choice.ks, len(searcher.corpus), alpha)

    # -- evaluation ----------------------------------------------------------------------------

    def comparisons(self) -> list[Choice]:
        """The preset's configurations worth comparing, on its built-in gallery."""
        return [Choice(GallerySource(GalleryKind.WORLD), levels, ks) for levels, ks in self.preset.comparisons]

    def dataset_name(self, source: GallerySource) -> str:
        """The label evaluations on ``source`` are stored under (the command line's too)."""
        return self.cascades.label(source)

    def evaluate(
        self, choices: Sequence[Choice], dataset: GallerySource, limit: int | None, progress: Progress | None = None
    ) -> list[EvalResult]:
        """Recall@1/5/10 and fresh-system cost of each choice on ``dataset``, each stored as it finishes."""
        if not choices:
            raise ConfigError("pick at least one configuration to evaluate")
        results = []
        for number, choice in enumerate(choices, start=1):
            step = Step(f"queries of configuration {number}/{len(choices)}", Unit.QUERIES)
            evaluation = self.cascades.evaluate(replace(choice, gallery=dataset), limit, progress, step=step)
            results.append(evaluation.result)
        return results

    def sweep_k1(
        self,
        first: str,
        last: str,
        dataset: GallerySource,
        k1s: Sequence[int],
        limit: int | None,
        progress: Progress | None = None,
    ) -> K1Sweep:
        """``analysis.sweep.sweep_k1`` of ``[first, last]`` on ``dataset``; the shared cache serves every row."""
        self.dataset_name(dataset)  # captions needed: refuses a folder gallery with one line
        searcher = self.searcher(Choice(dataset, (first, last), (len(self.corpus(dataset)), 1)))

        def rows(name: str) -> Counter | None:
            return counter(progress, Step(f"queries of {name}", Unit.QUERIES))

        return sweep_k1(*searcher.levels, searcher.corpus, k1s, 10, cache=searcher.cache, limit=limit, progress=rows)

    def evaluations(self, dataset: GallerySource) -> pd.DataFrame:
        return self.store.evaluations(self.dataset_name(dataset))


def _baselines(searcher: CascadeSearcher) -> pd.DataFrame:
    """Each level alone over the whole gallery, cheapest first."""
    macs = [level.image_macs for level in searcher.levels]
    frame = pd.DataFrame({"level": range(1, len(macs) + 1), "encoder_id": searcher.level_ids, "macs_per_image": macs})
    frame["image_macs"] = frame["macs_per_image"] * len(searcher.corpus)
    return frame.sort_values("macs_per_image", kind="stable").reset_index(drop=True)


def _per_level(searcher: CascadeSearcher, per_query: Sequence[Sequence[int]]) -> pd.DataFrame:
    """Each of the first queries' new image MACs per level, and how many images that was."""
    rows = [
        {
            "query_index": number,
            "level": level,
            "encoder_id": searcher.level_ids[level - 1],
            "image_macs": macs,
            "misses": macs // searcher.levels[level - 1].image_macs if searcher.levels[level - 1].image_macs else 0,
        }
        for number, new in enumerate(per_query, start=1)
        for level, macs in enumerate(new, start=1)
    ]
    columns = ["query_index", "level", "encoder_id", "image_macs", "misses"]
    return pd.DataFrame(rows, columns=columns)
