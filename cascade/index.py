"""Level 1's index over the whole gallery: ``exact`` (the reference) or ``faiss:FACTORY``.

Exact search is one matmul over the ``(N, d)`` level-1 matrix (float32, or
float16 storage at half the memory: ``exact:float16``). At millions of images
that is the whole query's cost, so level 1 may instead rank with a FAISS index
built from the same L2-normalised embeddings, inner-product metric, any
``faiss.index_factory`` string: ``faiss:HNSW32``, ``faiss:IVF4096,PQ64``. Search
parameters follow an ``@``: ``faiss:HNSW32@efSearch=256``, ``faiss:IVF1024,Flat@nprobe=64``.
A ``+rerank=R`` suffix asks the index for R x k candidates and re-scores them exactly from the
matrix level 1 already holds (``faiss:IVF4096,PQ128x4fs@nprobe=64+rerank=40``): compressed codes
choose the shortlist, exact scores the order, and no second copy of the rows is kept (FAISS's
``RFlat`` would keep its own float32 copy: 20 GB at 10M rows). The syntax: ``cascade.index_spec``.

An approximate index is only served after its recall@k_1 against exact search
has been measured on a sample of queries (``measure_recall``); the later levels
re-score level 1's candidates exactly, so what it can lose is candidates.

FAISS is imported only here, inside the functions that need it: the app runs
exact search without it. Where an index file lives is the caller's choice
(``save_faiss`` / ``load_faiss`` take a path); ``index_file`` names it by its key.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cascade.errors import CascadeError, ConfigError
from cascade.index_spec import IndexSpec, parse_index
from cascade.ranking import top_k

_ROWS_PER_ADD = 1 << 16  # rows converted to float32 at a time (a float16 matrix never exists in float32 whole)
FORMAT_VERSION = 1


class IndexFileError(CascadeError):
    """A saved index file is corrupt, or belongs to another encoder, gallery or factory."""


class IndexRecallTooLow(CascadeError):
    """An approximate index loses more of level 1's top k than the threshold allows."""


class EngineMissing(CascadeError):
    """An optional engine (FAISS, Ray) that was asked for is not installed."""


def _faiss():
    try:
        import faiss
    except ImportError:
        raise EngineMissing("FAISS is not installed: pip install faiss-cpu==1.15.1 (or use --index exact)") from None
    return faiss


def _faiss_message(err: Exception) -> str:
    """FAISS's C++ errors carry a file/line preamble; the last clause is the reason."""
    text = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
    return text.split(": ", 1)[-1] if text.startswith("Error in") else text


@dataclass
class FaissIndex:
    """A FAISS index over level 1's embeddings, searched one query at a time.

    Attributes:
        index: the ``faiss.Index`` (inner product); ids are corpus positions.
        spec: what it was built from.
        key: (encoder id, corpus fingerprint, factory) it belongs to.
        build_s: seconds spent training and adding (0 when loaded from a file).
    """

    index: object
    spec: IndexSpec
    key: tuple[str, str, str]
    build_s: float = 0.0
    recalls: dict[str, dict] = field(default_factory=dict)  # "k=K" -> {"recall", "queries", "source"}

    def __post_init__(self) -> None:
        if self.spec.params:
            try:
                _faiss().ParameterSpace().set_index_parameters(self.index, self.spec.params)
            except RuntimeError as err:
                raise ConfigError(f"FAISS search parameters {self.spec.params!r}: {_faiss_message(err)}") from None

    @property
    def n_images(self) -> int:
        return int(self.index.ntotal)

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(d,)`` query -> (corpus positions, scores), best first; at most k (fewer only if the index finds fewer)."""
        return self.search_many(query[None, :], k)

    def search_many(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(m, d)`` queries -> ``(m, <=k)`` positions and scores (rows padded with -1 are cut to the shortest)."""
        faiss = _faiss()
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        params = None
        inner = faiss.downcast_index(self.index)
        if isinstance(inner, faiss.IndexHNSW):  # HNSW visits at most efSearch nodes: a k above it needs ef >= k
            params = faiss.SearchParametersHNSW(efSearch=max(int(inner.hnsw.efSearch), k))
        scores, labels = self.index.search(queries, min(k, self.n_images), params=params)
        if queries.shape[0] == 1:
            valid = labels[0] >= 0
            return labels[0][valid], scores[0][valid]
        return labels, scores


def index_file(folder: str | os.PathLike, key: tuple[str, str, str]) -> Path:
    """Where the index of ``key`` = (encoder id, corpus fingerprint, factory) lives in ``folder``."""
    digest = hashlib.blake2b("\n".join(key).encode(), digest_size=8).hexdigest()
    return Path(folder) / f"level1-{digest}.faiss"


def build_faiss(
    spec: IndexSpec, matrix: np.ndarray, key: tuple[str, str, str], seed: int = 0, build: str = ""
) -> FaissIndex:
    """Train (when the factory needs it) and fill a FAISS index with ``matrix`` ``(N, d)`` in corpus order.

    Raises:
        ConfigError: the factory string or ``build`` (parameters set before adding, e.g. ``efConstruction=200``:
            a caller that saves the index keys it by them) does not parse, or does not fit this d or N.
    """
    faiss = _faiss()
    started = time.perf_counter()
    n, d = matrix.shape
    try:
        index = faiss.index_factory(d, spec.factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as err:
        raise ConfigError(f"FAISS cannot build {spec.factory!r} for d = {d}: {_faiss_message(err)}") from None
    try:
        if build:
            faiss.ParameterSpace().set_index_parameters(index, build)
        if not index.is_trained:
            rows = np.random.default_rng(seed).choice(n, size=min(n, 200_000), replace=False)
            index.train(np.ascontiguousarray(matrix[np.sort(rows)], dtype=np.float32))
        for start in range(0, n, _ROWS_PER_ADD):
            index.add(np.ascontiguousarray(matrix[start : start + _ROWS_PER_ADD], dtype=np.float32))
    except RuntimeError as err:
        raise ConfigError(f"FAISS cannot build {spec.factory!r} on {n:,} images: {_faiss_message(err)}") from None
    return FaissIndex(index, spec, key, build_s=time.perf_counter() - started)


def save_faiss(built: FaissIndex, path: str | os.PathLike) -> None:
    """Write the index and its sidecar (``.json``: key, recalls) atomically: a killed write leaves the old files."""
    faiss = _faiss()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    faiss.write_index(built.index, str(temporary))
    os.replace(temporary, path)
    _write_sidecar(built, path)


def _write_sidecar(built: FaissIndex, path: Path) -> None:
    encoder, corpus, factory = built.key
    sidecar = {
        "format": FORMAT_VERSION,
        "encoder": encoder,
        "corpus": corpus,
        "factory": factory,
        "n_images": built.n_images,
        "build_s": built.build_s,
        "recalls": built.recalls,
    }
    temporary = path.with_name(path.name + ".json.tmp")
    temporary.write_text(json.dumps(sidecar, indent=1))
    os.replace(temporary, path.with_suffix(".json"))


def load_faiss(spec: IndexSpec, path: str | os.PathLike, key: tuple[str, str, str], n_images: int) -> FaissIndex | None:
    """The index saved at ``path`` for ``key``, memory-mapped where FAISS allows; None when there is none.

    Raises:
        IndexFileError: the file is corrupt, or was built for another encoder, gallery or factory.
    """
    faiss = _faiss()
    path = Path(path)
    sidecar_path = path.with_suffix(".json")
    if not path.is_file() or not sidecar_path.is_file():
        return None
    try:
        sidecar = json.loads(sidecar_path.read_text())
        found = (sidecar["encoder"], sidecar["corpus"], sidecar["factory"])
    except (OSError, ValueError, KeyError, TypeError):
        raise IndexFileError(f"index sidecar {sidecar_path} is corrupt; delete it and {path.name} to rebuild") from None
    if found != tuple(key):
        raise IndexFileError(
            f"index file {path} belongs to another corpus or encoder (built for {found[1]} with "
            f"{found[0]}, {found[2]}); delete it to rebuild"
        )
    try:
        index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
    except RuntimeError:
        try:  # not every index type maps; read those into memory
            index = faiss.read_index(str(path))
        except RuntimeError as err:
            reason = _faiss_message(err)
            raise IndexFileError(f"index file {path} is corrupt ({reason}); delete it to rebuild") from None
    if index.ntotal != n_images:
        raise IndexFileError(f"index file {path} holds {index.ntotal:,} images, the gallery {n_images:,}; delete it")
    return FaissIndex(index, spec, tuple(key), recalls=dict(sidecar.get("recalls") or {}))


@dataclass(frozen=True)
class IndexRecall:
    """Level 1's recall@k with an index against exact search on the same embeddings.

    Attributes:
        recall: mean over queries of |index top k ∩ exact top k| / k, in [0, 1].
        source: ``"captions"`` (the gallery's captions as text queries) or ``"gallery"``
            (gallery embeddings as queries, each one's own image left out of both lists).
    """

    spec: str
    k: int
    recall: float
    queries: int
    source: str


def exact_top_k(matrix: np.ndarray, queries: np.ndarray, k: int, block_rows: int = 1 << 15) -> np.ndarray:
    """``(m, k)`` positions of each query's k best inner products over ``matrix`` ``(N, d)``, by blocks of rows."""
    best_scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_ids = np.zeros((len(queries), 0), dtype=np.int64)
    queries = np.asarray(queries, dtype=np.float32)
    for start in range(0, len(matrix), block_rows):
        scores = (np.asarray(matrix[start : start + block_rows], dtype=np.float32) @ queries.T).T  # (m, b)
        ids = np.broadcast_to(np.arange(start, start + scores.shape[1]), scores.shape)
        scores, ids = np.hstack([best_scores, scores]), np.hstack([best_ids, ids])
        keep = np.argpartition(-scores, min(k, scores.shape[1]) - 1, axis=1)[:, :k]
        best_scores, best_ids = np.take_along_axis(scores, keep, 1), np.take_along_axis(ids, keep, 1)
    return best_ids


def measure_recall(
    built: FaissIndex, matrix: np.ndarray, queries: np.ndarray, k: int, source: str, own: np.ndarray | None = None
) -> IndexRecall:
    """Recall@k of ``built`` against exact search over ``matrix`` for ``queries`` ``(m, d)``.

    Args:
        own: for gallery-embedding queries, each query's own corpus position, left out of both top-k lists.
    """
    extra = 0 if own is None else 1
    truth = exact_top_k(matrix, queries, k + extra)
    if built.spec.shortlist:  # the shortlist re-ranked, as level 1 serves it
        found = [reranked(built, matrix, query, k + extra)[0] for query in np.asarray(queries, dtype=np.float32)]
    else:
        found, _ = built.search_many(queries, k + extra)
    shares = []
    for i in range(len(queries)):
        left_out = {int(own[i])} if own is not None else set()
        want = [j for j in truth[i].tolist() if j not in left_out][:k]
        got = {j for j in found[i].tolist() if j >= 0 and j not in left_out}
        shares.append(len(got.intersection(want)) / len(want))
    return IndexRecall(built.spec.name, k, float(np.mean(shares)), len(queries), source)


def reranked(built: FaissIndex, matrix: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``built``'s ``spec.shortlist`` x k candidates for ``query`` ``(d,)``, re-scored exactly from ``matrix``'s rows:
    (the k best positions, their float32 scores), best first; ties keep corpus order, as exact search breaks them."""
    positions = np.sort(built.search(query, k * max(1, built.spec.shortlist))[0])
    scores = np.asarray(matrix[positions], dtype=np.float32) @ query
    order = top_k(scores, k)
    return positions[order], scores[order]


def check_recall(measured: IndexRecall, min_recall: float) -> None:
    """Refuse to serve an index whose measured recall is below ``min_recall``.

    Raises:
        IndexRecallTooLow: one line with what was measured.
    """
    if measured.recall < min_recall:
        raise IndexRecallTooLow(
            f"{measured.spec}: level-1 recall@{measured.k} against exact is {measured.recall:.3f} on "
            f"{measured.queries} {measured.source} queries, below the required {min_recall:.2f} "
            "(raise efSearch/nprobe, choose another factory, or lower --min-index-recall)"
        )


@dataclass(frozen=True)
class IndexPlan:
    """What a searcher's level 1 ranks with, and where and how strictly an approximate index is kept.

    Attributes:
        spec: the index (default: exact float32, the reference).
        folder: where FAISS index files are saved (the caller's choice, e.g. beside its database);
            None keeps a built index in memory only.
        min_recall: recall@k_1 against exact below which an approximate index is refused.
        sample_queries: how many queries the recall is measured on.
    """

    spec: IndexSpec = IndexSpec()
    folder: Path | None = None
    min_recall: float = 0.95
    sample_queries: int = 200

    def __post_init__(self) -> None:
        if isinstance(self.spec, str):
            object.__setattr__(self, "spec", parse_index(self.spec))
        if not 0.0 <= self.min_recall <= 1.0:
            raise ConfigError(f"the minimum index recall must be between 0 and 1, got {self.min_recall}")


def load_or_build(plan: IndexPlan, matrix: np.ndarray, key: tuple[str, str, str]) -> FaissIndex:
    """The index of ``key`` from ``plan.folder`` when saved there, else built from ``matrix`` (and saved)."""
    path = index_file(plan.folder, key) if plan.folder is not None else None
    found = load_faiss(plan.spec, path, key, len(matrix)) if path is not None else None
    if found is not None:
        return found
    built = build_faiss(plan.spec, matrix, key)
    if path is not None:
        save_faiss(built, path)
    return built


def recall_of(
    built: FaissIndex,
    plan: IndexPlan,
    matrix: np.ndarray,
    k: int,
    queries: Callable[[], tuple[np.ndarray, np.ndarray | None, str]],
) -> IndexRecall:
    """``built``'s recall@k, measured once per (k, sample size, search parameters) and kept in its sidecar.

    Args:
        queries: ``() -> (queries (m, d), own positions or None, source)``, called only to measure.
    """
    memo = f"k={k},queries={plan.sample_queries},params={built.spec.params}"
    memo += f",rerank={built.spec.shortlist}" if built.spec.shortlist else ""  # sidecars written before keep theirs
    if memo in built.recalls:
        return IndexRecall(**built.recalls[memo])
    rows, own, source = queries()
    measured = measure_recall(built, matrix, rows, k, source, own)
    built.recalls[memo] = dict(measured.__dict__)
    if plan.folder is not None:
        _write_sidecar(built, index_file(plan.folder, built.key))
    return measured
