"""What the app does, without the app: galleries, shared searchers, the log, the cost model.

The Gradio page (``app.py``) is a thin layer over one ``Engine``; tests build an
Engine on a temporary database and a small gallery and drive it directly or
through the page. Everything here is shared by all sessions of a running app:

- galleries and searchers are created once per (gallery, levels) and reused by
  every session (an LRU bounds them), so a second user of the same cascade
  pays nothing for the build and each level's cache serves everyone;
- every search is logged in the one ``Store``; the cost charts are SQL over it;
- a session's own choices (its ``Choice``) are passed in, never kept here.

Galleries and what may be served: ``analysis.galleries``; objects made once and
shared: ``analysis.shared``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from analysis import hardware, presets, table1
from analysis.evaluate import EvalResult, evaluate
from analysis.galleries import Galleries, GallerySource, Progress
from analysis.hardware import RealCosts
from analysis.presets import Preset
from analysis.replay import ReplayResult, replay, workload
from analysis.shared import SharedObjects
from analysis.side_by_side import SideBySide, eq1_k2, side_by_side
from analysis.store import EvalRecord, Store, index_folder
from analysis.sweep import K1Sweep, sweep_k1
from analysis.whatif import CostModel
from cascade.corpus import Corpus
from cascade.encoders import create_encoder, is_cross_encoder, known_names
from cascade.encoders.base import ImageTower
from cascade.errors import CascadeError, ConfigError
from cascade.index import IndexPlan, parse_index
from cascade.paths import cache_dir
from cascade.search import CascadeSearcher
from cascade.types import CascadeConfig, SearchResult


@dataclass(frozen=True)
class Choice:
    """One session's cascade: a gallery, encoder names cheapest first (a cross-encoder last), one k per level,
    and what level 1 ranks with (``exact``, ``exact:float16`` or ``faiss:FACTORY``; see ``cascade.index``)."""

    gallery: GallerySource
    levels: tuple[str, ...]
    ks: tuple[int, ...]
    index: str = "exact"

    def config(self) -> CascadeConfig:
        """The validated configuration (names, not weight ids); raises ConfigError with one line."""
        parse_index(self.index)
        return CascadeConfig(levels=self.levels, ks=self.ks)

    @property
    def key(self) -> tuple:
        """What a built searcher is shared by: the gallery, the levels and level 1's index (ks are per search)."""
        return self.gallery.normalised(), self.levels, self.index


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

    Attributes:
        cumulative: ``query_index`` (0 = build), ``image_macs``, ``cumulative_image_macs``.
        per_level: ``query_index``, ``level``, ``encoder_id``, ``image_macs``, ``misses`` of the first queries.
        baselines: ``level``, ``encoder_id``, ``macs_per_image``, ``image_macs`` (= N x MACs per image),
            cheapest first: each level alone over the whole gallery.
    """

    config_key: str
    corpus_id: str
    corpus_size: int
    cumulative: pd.DataFrame
    per_level: pd.DataFrame
    baselines: pd.DataFrame


class ReplayStopped(CascadeError):
    """The session asked its replay to stop (closed the page or pressed Stop)."""


class Engine:
    """Everything the app needs, Gradio-free.

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
        self.preset = preset
        world = world or (lambda: presets.gallery(preset.name))
        self.galleries = Galleries(world, world_root or cache_dir() / "shapes-world", folders, capacity)
        self._create = create
        self._is_cross = is_cross
        self.cost_model = CostModel(image_gmacs)
        self._names = None if names is None else tuple(names)
        self._searchers = SharedObjects(capacity)

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
        return Choice(GallerySource("world"), self.preset.levels, self.preset.ks)

    def encoder_names(self) -> tuple[list[str], list[str]]:
        """``(bi-encoders, cross-encoders)`` to offer: the preset's first, then the backends' (unique, in order)."""
        if self._names is None:
            preset_names = [*self.preset.levels, *(name for levels, _ in self.preset.comparisons for name in levels)]
            self._names = tuple(dict.fromkeys([*preset_names, *filter(None, [self.preset.reranker]), *known_names()]))
        cross = {name for name in self._names if self._is_cross(name)}
        return [name for name in self._names if name not in cross], [name for name in self._names if name in cross]

    def corpus(self, source: GallerySource, progress: Progress | None = None) -> Corpus:
        """The gallery of ``source``, loaded once and shared (raises CascadeError with one line)."""
        return self.galleries.corpus(source, progress)

    # -- searching -----------------------------------------------------------------------------

    def validate(self, choice: Choice) -> None:
        """Cheap checks of names and ks; raises ConfigError (a gallery smaller than the ks is cut: ``fitted``)."""
        choice.config()

    def fitted(self, choice: Choice) -> Choice:
        """``choice`` with each k cut to its gallery's size when the gallery is loaded and smaller (a few uploads)."""
        corpus = self.galleries.loaded(choice.gallery)
        if corpus is None or not len(corpus) or choice.ks[0] <= len(corpus):
            return choice
        return replace(choice, ks=tuple(min(k, len(corpus)) for k in choice.ks))

    def searcher(self, choice: Choice, progress: Progress | None = None) -> CascadeSearcher:
        """The shared, built searcher of ``choice`` (gallery + levels); ks are per search."""
        config = choice.config()  # cheap checks before loading a gallery or a model
        if progress is not None:
            progress("loading the gallery", 0, 0)  # total 0: no count yet (the built-in world renders first)
        corpus = self.corpus(choice.gallery, progress)
        config.check_corpus_size(len(corpus))

        def make() -> CascadeSearcher:
            if progress is not None:
                progress("loading the encoders", 0, 0)
            # No log on the shared searcher: searches and replays log explicitly, evaluations do not.
            plan = IndexPlan(spec=choice.index, folder=index_folder(self.store.path))
            searcher = CascadeSearcher([self._create(name) for name in choice.levels], corpus, cache=self.store,
                                       index=plan)  # fmt: skip
            embed = None if progress is None else (lambda done, total: progress("embedding", done, total))
            searcher.build(progress=embed)
            return searcher

        return self._searchers.get(choice.key, make)

    def search(self, choice: Choice, query: str, progress: Progress | None = None) -> SearchOutcome:
        """Run and log one query through the session's cascade."""
        if not isinstance(query, str) or not query.strip():
            raise ConfigError("the query is empty: type what you are looking for")
        choice.config()  # cheap checks before loading a gallery
        self.corpus(choice.gallery, progress)
        asked, choice = choice.ks, self.fitted(choice)
        searcher = self.searcher(choice, progress)
        result = searcher.search(query, choice.ks)
        self._record(searcher, result)
        queries, macs = self.store.lifetime(result.config.key, searcher.corpus.fingerprint)
        return SearchOutcome(result, searcher.corpus, queries, macs, asked if asked != choice.ks else ())

    def _record(self, searcher: CascadeSearcher, result: SearchResult) -> None:
        self.store.record(result, corpus_id=searcher.corpus.fingerprint, corpus_size=len(searcher.corpus))

    # -- the log -------------------------------------------------------------------------------

    def _built(self, choice: Choice) -> CascadeSearcher | None:
        searcher = self._searchers.peek(choice.key)
        return searcher if isinstance(searcher, CascadeSearcher) else None

    def cost_view(self, choice: Choice, first_queries: int = 50) -> CostView | None:
        """The logged cost of ``choice``; None until its cascade has been built (searched) in this process."""
        choice = self.fitted(choice)
        searcher = self._built(choice)
        if searcher is None:
            return None
        key, corpus_id = searcher.config(choice.ks).key, searcher.corpus.fingerprint
        per_level = self.store.first_queries_levels(key, corpus_id, first_queries)
        baselines = pd.DataFrame(
            {
                "level": range(1, len(searcher.levels) + 1),
                "encoder_id": searcher.level_ids,
                "macs_per_image": [level.image_macs for level in searcher.levels],
            }
        )
        baselines["image_macs"] = baselines["macs_per_image"] * len(searcher.corpus)
        baselines = baselines.sort_values("macs_per_image", kind="stable").reset_index(drop=True)
        cumulative = self.store.cumulative_cost(key, corpus_id)
        return CostView(key, corpus_id, len(searcher.corpus), cumulative, per_level, baselines)

    def reset_log(self, choice: Choice) -> int:
        """Delete this cascade's log on this gallery (never features, evaluations or other configs)."""
        choice = self.fitted(choice)
        searcher = self._built(choice)
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
        self.corpus(choice.gallery, progress)
        choice = self.fitted(choice)
        searcher = self.searcher(choice, progress)
        queries = list(queries) if queries is not None else workload(searcher.corpus, kind, n_queries, seed)

        def record(done: int, result: SearchResult, cumulative: int) -> None:
            self._record(searcher, result)
            if on_query is not None:
                on_query(done, result, cumulative)
            if stop is not None and stop.is_set():
                raise ReplayStopped(f"replay stopped after {done} of {len(queries)} queries")

        return replay(searcher, queries, choice.ks, kind, on_query=record)

    def eq1_choice(self, gallery: GallerySource, levels: Sequence[str], k1: int, k_last: int, target: float) -> Choice:
        """The 3-level ``levels`` with the k_2 reaching an Eq. 1 early-query reduction of ``target`` (rounded up)."""
        if len(levels) != 3:
            raise ConfigError(f"k_2 from Eq. 1 needs a 3-level cascade, got {len(levels)} levels")
        searcher = self.searcher(Choice(gallery, tuple(levels), (k1, k_last, k_last)))
        k2 = eq1_k2([level.image_macs for level in searcher.levels], k1, k_last, target)
        return Choice(gallery, tuple(levels), (k1, k2, k_last))

    def side_by_side(self, choices: Sequence[Choice], kind: str, n_queries: int, seed: int,
                     queries: Sequence[str] | None = None,
                     on_query: Callable[[int, int, SearchResult, int], None] | None = None,
                     progress: Progress | None = None) -> SideBySide:  # fmt: skip
        """The same queries through each choice (one gallery), each counted from a fresh start; not logged
        (a comparison, like an evaluation: the log and its measured alpha stay the sessions' own)."""
        if len(choices) < 2:
            raise ConfigError("pick two or more configurations to compare side by side")
        if len({choice.gallery.normalised() for choice in choices}) != 1:
            raise ConfigError("side by side compares configurations on one gallery")
        searchers = [self.searcher(choice, progress) for choice in choices]
        queries = list(queries) if queries is not None else workload(searchers[0].corpus, kind, n_queries, seed)
        contenders = [(f"{' > '.join(c.levels)} (k {','.join(map(str, c.ks))})", s, c.ks)
                      for c, s in zip(choices, searchers, strict=True)]  # fmt: skip
        return side_by_side(contenders, queries, kind, on_query)

    def measured_alpha(self, choice: Choice) -> float:
        """Share of the gallery this cascade's logged queries (these ks) handed above level 1 (0 for one level).

        From the query log, not the feature cache: evaluations, other ks and ``index`` embed images too.
        """
        choice = self.fitted(choice)
        searcher = self._built(choice)
        if searcher is None or len(searcher.levels) < 2:
            return 0.0
        key = searcher.config(choice.ks).key
        return self.store.handed_share(key, searcher.corpus.fingerprint, len(searcher.corpus))

    def real_costs(self, choice: Choice, profile: str, price_per_hour: float | None = None,
                   power_w: float | None = None, efficiency: float | None = None) -> RealCosts | None:  # fmt: skip
        """The built cascade's build, first query and lifetime (at the log's measured alpha) on ``profile``.

        ``profile``: an accelerator of ``analysis.hardware`` or ``hardware.MEASURED`` (each encoder timed on this
        machine once, cached). None until the cascade is built.
        """
        choice = self.fitted(choice)
        searcher = self._built(choice)
        if searcher is None:
            return None
        if profile == hardware.MEASURED:
            measured = [hardware.measure_throughput(level) for level in searcher.levels]
            chosen = hardware.measured_profile(measured, price_per_hour or 0.0, power_w or 0.0)
        else:
            chosen = hardware.accelerator_profile(profile, efficiency, price_per_hour, power_w)
        macs = [level.image_macs for level in searcher.levels]
        return hardware.real_costs(chosen, searcher.level_ids, macs, choice.ks, len(searcher.corpus),
                                   self.measured_alpha(choice))  # fmt: skip

    # -- evaluation ----------------------------------------------------------------------------

    def comparisons(self) -> list[Choice]:
        """The preset's configurations worth comparing, on its built-in gallery."""
        return [Choice(GallerySource("world"), levels, ks) for levels, ks in self.preset.comparisons]

    def dataset_name(self, source: GallerySource) -> str:
        if source.kind == "world":
            return f"{self.preset.name}:test"
        if source.kind == "karpathy":
            return f"{Path(source.path).name}:test"
        if source.kind == "dataset":
            return f"{source.path}:test"
        raise ConfigError("evaluation needs captions: the built-in gallery, a hub dataset or a Karpathy dataset")

    def evaluate(
        self, choices: Sequence[Choice], dataset: GallerySource, limit: int | None, progress: Progress | None = None
    ) -> list[EvalResult]:
        """Recall@1/5/10 and fresh-system cost of each choice on ``dataset``, each stored as it finishes."""
        if not choices:
            raise ConfigError("pick at least one configuration to evaluate")
        name, results = self.dataset_name(dataset), []
        for number, choice in enumerate(choices, start=1):
            searcher = self.searcher(replace(choice, gallery=dataset), progress)
            what = f"queries of configuration {number}/{len(choices)}"
            queries = None if progress is None else (lambda done, total, what=what: progress(what, done, total))
            result = evaluate(searcher, choice.ks, progress=queries, limit=limit)
            self.store.save_evaluation(EvalRecord.of(result, searcher.config(choice.ks).key, name))
            results.append(result)
        return results

    def sweep_k1(self, first: str, last: str, dataset: GallerySource, k1s: Sequence[int], limit: int | None,
                 progress: Progress | None = None) -> K1Sweep:  # fmt: skip
        """``analysis.sweep.sweep_k1`` of ``[first, last]`` on ``dataset``; the shared cache serves every row."""
        self.dataset_name(dataset)  # captions needed: refuses a folder gallery with one line
        searcher = self.searcher(Choice(dataset, (first, last), (len(self.corpus(dataset)), 1)))
        rows = (
            None if progress is None else (lambda name: lambda done, total: progress(f"queries of {name}", done, total))
        )
        return sweep_k1(*searcher.levels, searcher.corpus, k1s, 10, cache=searcher.cache, limit=limit,
                        progress=rows)  # fmt: skip

    def evaluations(self, dataset: GallerySource) -> pd.DataFrame:
        return self.store.evaluations(self.dataset_name(dataset))
