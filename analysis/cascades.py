"""The one composition root: opening a cascade on a gallery, for the command line and the page alike.

``Cascades`` holds what a cascade is wired from (the galleries, the feature cache, the query
log, the encoder factory, where level-1 indexes are kept) and decides, in one place, the things
two faces would otherwise decide differently: a gallery's dataset label, the ks fitted to a small
gallery, the level-1 index plan, which searches are logged and which evaluations are stored.
``cascade search`` and the Search tab, ``cascade eval`` and the Evaluate tab, ``cascade replay``
and the Cost tab's replay all run through it. ``assemble`` is the only place outside ``cascade/``
that constructs a ``CascadeSearcher`` (benchmarks aside).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from analysis.accounting import CostAccumulator
from analysis.evaluate import CaptionEmbeddings, EvalResult, evaluate
from analysis.galleries import Galleries, GalleryKind, GallerySource, ImportedGallery, dataset_label
from analysis.imported import ImportResult, Prepared, imported_folder, write
from analysis.presets import Preset
from analysis.progress import Progress, Step, Unit, counter
from analysis.replay import ReplayResult, replay
from analysis.shared import SharedObjects
from analysis.store import EvalRecord, Store, index_folder
from cascade.cache import FeatureCache, MemoryCache
from cascade.corpus import Corpus
from cascade.encoders import create_encoder
from cascade.encoders.base import ImageTower
from cascade.errors import ConfigError
from cascade.index import IndexPlan, IndexRecall, parse_index
from cascade.paths import cache_dir
from cascade.search import CascadeSearcher, QueryLog
from cascade.types import BuildReport, CascadeConfig, SearchResult

WORLD = GallerySource(GalleryKind.WORLD)  # the preset's own gallery
QUERIES = Step("queries", Unit.QUERIES)


def assemble(
    levels: Sequence[ImageTower], corpus: Corpus, cache: FeatureCache | None = None, index: IndexPlan | None = None
) -> CascadeSearcher:
    """A searcher over ``corpus`` (not built): the one construction site outside ``cascade/``.

    Searchers never log by themselves: ``Cascades.search`` and ``Cascades.replay`` record what they
    ran, evaluations and comparisons never do (their queries would fill the cost charts).
    """
    return CascadeSearcher(levels, corpus, cache=cache, index=index)


@dataclass(frozen=True)
class Choice:
    """One cascade: a gallery, encoder names cheapest first (a cross-encoder last), one k per level,
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
class Searched:
    """A search, as run (``result.config.ks``) on its gallery.

    Attributes:
        ks_asked: the ks asked for, when the gallery was smaller and they were cut to its size; empty
            when nothing was cut.
    """

    result: SearchResult
    corpus: Corpus
    ks_asked: tuple[int, ...] = ()


@dataclass(frozen=True)
class Evaluation:
    """An evaluation and where it was stored.

    Attributes:
        dataset: the dataset label it is stored under (``world:test``, ``flickr30k:test``, ...).
        config_key: the configuration it is stored under; an approximate level 1 names its index.
        index_recall: level 1's measured recall@k_1 against exact (approximate indexes only).
    """

    result: EvalResult
    dataset: str
    config_key: str
    index_recall: IndexRecall | None = None


class Cascades:
    """Opens cascades on galleries and runs them, logged and stored as one policy says.

    Args:
        galleries: where images come from (and which paths this face may read).
        cache: the feature cache every level shares (the store, or memory).
        store: where searches are logged and evaluations kept; None: nothing is (a measurement).
        create: encoder factory, ``name -> ImageTower`` (tests pass fakes).
        index_folder: where approximate level-1 indexes are saved (None: in memory only).
        min_index_recall: recall@k_1 against exact below which an approximate index is refused.
        capacity: built searchers kept at once.
    """

    def __init__(
        self,
        galleries: Galleries,
        cache: FeatureCache,
        store: Store | None = None,
        create: Callable[[str], ImageTower] = create_encoder,
        index_folder: Path | None = None,
        min_index_recall: float = 0.95,
        capacity: int = 8,
    ) -> None:
        self.galleries = galleries
        self.cache = cache
        self.store = store
        self._create = create
        self._index_folder = index_folder
        self._min_index_recall = min_index_recall
        self._searchers = SharedObjects(capacity)

    @classmethod
    def on_store(
        cls,
        store: Store,
        preset: Preset,
        world: Callable[[], Corpus] | None = None,
        world_root: Path | None = None,
        folders: Sequence[str | Path] = (),
        any_path: bool = False,
        **options,
    ) -> Cascades:
        """Cascades whose cache, log and evaluations are ``store``; level-1 indexes are kept beside its file.

        ``any_path``: the command line (any folder its user names); the page reads shared ``folders`` only.
        """
        root = world_root or cache_dir() / "shapes-world"
        imports = imported_folder(store.path)
        galleries = Galleries(preset, world, root, folders, any_path=any_path, known=store, imports=imports)
        return cls(galleries, store, store, index_folder=index_folder(store.path), **options)

    @classmethod
    def in_memory(cls, preset: Preset, imports: Path | None = None, **options) -> Cascades:
        """A measurement's cascades: a fresh cache in memory, nothing logged or stored, any path readable.

        ``imports``: a database's imports (``analysis.imported.imported_folder``), read as galleries, never written.
        """
        galleries = Galleries(preset, None, cache_dir() / "shapes-world", any_path=True, imports=imports)
        return cls(galleries, MemoryCache(), **options)

    @property
    def preset(self) -> Preset:
        return self.galleries.preset

    @property
    def log(self) -> QueryLog | None:
        return self.store

    # -- galleries -----------------------------------------------------------------------------

    def corpus(self, source: GallerySource, progress: Progress | None = None) -> Corpus:
        """The gallery of ``source``, loaded once and shared (raises CascadeError with one line)."""
        return self.galleries.corpus(source, progress)

    def label(self, source: GallerySource) -> str:
        """The dataset label evaluations on ``source`` are stored under (see ``galleries.dataset_label``)."""
        source = self.galleries.resolve(source)
        if source.kind is GalleryKind.IMPORTED and not self.galleries.imported(source).captioned:
            raise ConfigError(f"evaluation needs captions: the index imported for {source.path} has none")
        return dataset_label(source, self.preset)

    def fitted(self, choice: Choice, progress: Progress | None = None) -> Choice:
        """``choice`` with each k cut to its gallery's size when the gallery is smaller than k_1 (a few uploads).

        Both faces say when this happened (``Searched.ks_asked``).
        """
        choice.config()  # cheap checks before loading a gallery
        n_images = len(self.corpus(choice.gallery, progress))
        if not n_images or choice.ks[0] <= n_images:
            return choice
        return replace(choice, ks=tuple(min(k, n_images) for k in choice.ks))

    # -- opening -------------------------------------------------------------------------------

    def open(self, choice: Choice, progress: Progress | None = None) -> CascadeSearcher:
        """The shared, built searcher of ``choice`` (gallery + levels + index); ks are per search."""
        return self.build(choice, progress)[0]

    def build(self, choice: Choice, progress: Progress | None = None) -> tuple[CascadeSearcher, BuildReport]:
        """The shared, built searcher of ``choice`` and what its build did (embedded, reused): ``cascade index``."""
        config = choice.config()  # cheap checks before loading a gallery or a model
        corpus = self.corpus(choice.gallery, progress)
        config.check_corpus_size(len(corpus))
        return self._searchers.get(self._key(choice), lambda: self._built(choice, corpus, progress))

    def peek(self, choice: Choice) -> CascadeSearcher | None:
        """The built searcher of ``choice`` if this process has built it, else None (no building)."""
        built = self._searchers.peek(self._key(choice))
        return built[0] if isinstance(built, tuple) else None

    def _key(self, choice: Choice) -> tuple:
        return self.galleries.resolve(choice.gallery), choice.levels, choice.index

    def index_plan(self, spec: str) -> IndexPlan:
        return IndexPlan(spec=spec, folder=self._index_folder, min_recall=self._min_index_recall)

    def _built(self, choice: Choice, corpus: Corpus, progress: Progress | None) -> tuple[CascadeSearcher, BuildReport]:
        imported = self._imported(choice)
        if progress is not None:
            progress(Step("loading the encoders"), 0, 0)
        first = self._create(choice.levels[0])
        if imported is not None and first.id != imported.encoder_id:
            raise ConfigError(
                f"level 1 must be the encoder that made the imported rows, {imported.name}; got {choice.levels[0]}"
            )
        levels = [first, *(self._create(name) for name in choice.levels[1:])]
        searcher = assemble(levels, corpus, self.cache, self.index_plan(choice.index))
        if imported is not None:
            return searcher, _use_import(searcher, imported)
        return searcher, searcher.build(progress=counter(progress, Step("embedding", Unit.IMAGES)))

    def _imported(self, choice: Choice) -> ImportedGallery | None:
        """The import ``choice`` searches, checked against its levels and index before a model loads; else None."""
        if choice.gallery.kind is not GalleryKind.IMPORTED:
            return None
        imported = self.galleries.imported(choice.gallery)
        if len(choice.levels) > 1 and imported.missing:
            raise ConfigError(
                f"level 2 ({choice.levels[1]}) embeds images, but {imported.missing:,} imported row(s) have no file: "
                "import the index with --images ROOT so its rows have files, or search with level 1 alone"
            )
        return imported

    def import_embeddings(self, prepared: Prepared, progress: Progress | None = None) -> ImportResult:
        """Import an index checked by ``analysis.imported.prepare`` as level 1 of its encoder, beside the store.

        Its reachable files' ids are remembered in the store as a folder scan remembers them, so a later
        build on that folder finds every imported image cached (``Store.get`` serves the import).
        """
        if self.store is None:
            raise ConfigError("an import is kept beside a database: these cascades have none")
        return write(prepared, imported_folder(self.store.path), known=self.store, progress=progress)

    # -- running -------------------------------------------------------------------------------

    def search(self, choice: Choice, query: str, progress: Progress | None = None) -> Searched:
        """Run one query through ``choice`` (ks fitted to a small gallery) and log it."""
        if not isinstance(query, str) or not query.strip():
            raise ConfigError("the query is empty: type what you are looking for")
        fitted = self.fitted(choice, progress)
        searcher = self.open(fitted, progress)
        result = searcher.search(query, fitted.ks)
        self.record(searcher, result)
        return Searched(result, searcher.corpus, choice.ks if fitted.ks != choice.ks else ())

    def record(self, searcher: CascadeSearcher, result: SearchResult) -> None:
        if self.log is not None:
            self.log.record(result, corpus_id=searcher.corpus.fingerprint, corpus_size=len(searcher.corpus))

    def evaluate(
        self,
        choice: Choice,
        limit: int | None = None,
        progress: Progress | None = None,
        captions: CaptionEmbeddings | None = None,
        step: Step = QUERIES,
    ) -> Evaluation:
        """Recall and fresh-system cost of ``choice`` on its gallery's captions, stored under the gallery's label."""
        dataset = self.label(choice.gallery)  # captions needed: refuses a folder gallery with one line
        searcher = self.open(choice, progress)
        result = evaluate(searcher, choice.ks, progress=counter(progress, step), limit=limit, captions=captions)
        measured = searcher.index_recall(choice.ks[0])
        key = searcher.config(choice.ks).key
        if measured is not None:  # an approximate level 1 is another configuration: its key says which
            key += f"@{measured.spec}"
        if self.store is not None:
            self.store.save_evaluation(EvalRecord.of(result, key, dataset))
        return Evaluation(result, dataset, key, measured)

    def replay(
        self,
        choice: Choice,
        queries: Sequence[str],
        name: str,
        on_query: Callable[[int, SearchResult, int], None] | None = None,
        progress: Progress | None = None,
    ) -> ReplayResult:
        """``queries`` through ``choice`` from a fresh start (alpha, lifetime cost), each query logged."""
        fitted = self.fitted(choice, progress)
        searcher = self.open(fitted, progress)

        def logged(done: int, result: SearchResult, cumulative: int) -> None:
            self.record(searcher, result)
            if on_query is not None:
                on_query(done, result, cumulative)

        return replay(searcher, queries, fitted.ks, name, on_query=logged)


def compare(
    cascades: Cascades,
    comparisons: Sequence[tuple[Sequence[str], Sequence[int]]],
    source: GallerySource = WORLD,
    limit: int | None = None,
    progress: Callable[[int, Sequence[str]], Step | None] | None = None,
    bars: Progress | None = None,
) -> Iterator[Evaluation]:
    """Evaluate each ``(levels, ks)`` on ``source``, yielding each row when done.

    The captions' text embeddings are shared by every row; the evaluator's cost figures count a
    fresh system whatever the cache held before.

    Args:
        progress: called with (row index, its levels) before each row; returns the row's progress step.
        bars: draws each row's step.
    """
    captions = CaptionEmbeddings()
    for number, (levels, ks) in enumerate(comparisons):
        step = progress(number, levels) if progress is not None else None
        choice = Choice(source, tuple(levels), tuple(ks))
        yield cascades.evaluate(choice, limit, bars if step is not None else None, captions, step or Step("queries"))


def _use_import(searcher: CascadeSearcher, imported: ImportedGallery) -> BuildReport:
    """Install the import's mapped matrix as level 1 (no image embedded, no row read through the cache), and the
    plan's index over it: built from the mapped rows, kept under the import's version."""
    matrix = imported.matrix(searcher.corpus)
    if searcher.index.spec.dtype == "float16" and matrix.dtype != np.float16:
        matrix = matrix.astype(np.float16)  # exact:float16 asked of a float32 import: half the memory, not mapped
    searcher.install_level1(matrix, rows=imported.version.name)  # float16 when the index was: ranked as stored
    n_images = len(searcher.corpus)
    return BuildReport(encoder=imported.encoder_id, images=n_images, embedded=0, reused=n_images, image_macs=0)


def lifetime(searcher: CascadeSearcher, handed: Sequence[Sequence[Sequence[str]]]) -> CostAccumulator:
    """The cascade's own lifetime cost from a log's hand-offs (one entry per query, in order)."""
    macs = [level.image_macs for level in searcher.levels]
    return CostAccumulator(macs, len(searcher.corpus)).extend(handed)
