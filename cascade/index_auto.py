"""``--index auto``: the cheapest level-1 index that passes the recall gate, measured on the gallery's own queries.

For the cascade's k_1, every candidate of a short list (``default_candidates``) that fits the
memory budget is built once per FAISS factory and searched at each of its settings on the
same sample of queries. A candidate passes when its recall@k_1 against exact is at least the
plan's ``min_recall``; of those, the fastest (median query latency, measured here) is picked.
Exact search over the matrix as stored (float32, or an import's float16, never copied) is the
reference: it is timed too, and is the pick when it is fastest or when nothing passes (the
fallback), so ``auto`` never serves an index below the gate. Without ``memory_gb`` the budget is
half the machine's memory.

The queries are the gallery's captions encoded by level 1 when it has them; otherwise gallery
rows moved across the encoder's own modality gap (``cascade.gap_queries``), so the candidates
are judged on text-like queries, not on the image cone their index was built on.

The pick, its measured recall and every candidate's row are stored beside the FAISS files
(``auto_file``), keyed by the gallery, the encoder, k_1, the gate, the budget and the
candidate list: any change measures again. A record that does not parse, or that names
another key, is refused (``IndexFileError``), like a FAISS file's sidecar.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cascade.gap_queries import text_like_queries
from cascade.index import (
    FaissIndex,
    IndexFileError,
    IndexPlan,
    IndexRecall,
    build_faiss,
    exact_top_k,
    index_file,
    load_faiss,
    load_or_build,
    save_faiss,
)
from cascade.index_sizing import Candidate, default_candidates, estimate_bytes, memory_budget
from cascade.level1 import ExactFloat16, Level1Ranking, exact_ranking, faiss_ranking

FORMAT_VERSION = 1
TIMED_QUERIES = 50  # queries timed per candidate (its recall is measured on the whole sample)
Sizing = Callable[[int, int, int], Sequence[Candidate]]  # (n, d, k) -> the candidates


@dataclass(frozen=True)
class CandidateRow:
    """One candidate as measured: recall@k against exact, median single-query latency, estimated memory."""

    name: str
    recall: float
    query_ms: float
    memory_bytes: int


@dataclass(frozen=True)
class AutoRecall(IndexRecall):
    """``auto``'s pick (``spec``) and its recall@k; exact (the matrix as stored) with recall 1.0 when it fell back.

    Attributes:
        gate: the recall@k a candidate needed.
        fallback: no candidate passed (or none fit the budget): level 1 is exact.
        rows: every candidate measured, the exact reference first.
    """

    gate: float = 0.0
    fallback: bool = False
    rows: tuple[CandidateRow, ...] = ()

    @property
    def line(self) -> str:
        """One line: what was picked and its measured recall, or that nothing passed and level 1 is exact."""
        measured = f"on {self.queries} {self.source} queries"
        tried = [row for row in self.rows if row.name != "exact"]
        if self.fallback:
            best = max(tried, key=lambda row: row.recall, default=None)
            beside = f"; best {best.name} at {best.recall:.3f}" if best is not None else "; none fit the memory budget"
            return (
                f"level 1 auto: no candidate reached recall@{self.k} {self.gate:.2f} against exact {measured}"
                f"{beside}: falling back to exact"
            )
        passed = sum(row.recall >= self.gate for row in tried)
        return (
            f"level 1 auto: {self.spec}, recall@{self.k} against exact {self.recall:.3f} {measured} "
            f"(gate {self.gate:.2f}: {passed} of {len(tried)} candidates passed; the fastest picked, exact included)"
        )


def auto_file(folder: str | os.PathLike, key: dict) -> Path:
    """Where the pick of ``key`` (see ``_record_key``) is kept in ``folder``."""
    digest = hashlib.blake2b(json.dumps(key, sort_keys=True).encode(), digest_size=8).hexdigest()
    return Path(folder) / f"level1-auto-{digest}.json"


def _record_key(gallery: tuple[str, str], n_images: int, k: int, plan: IndexPlan, names: Sequence[str]) -> dict:
    return {
        "encoder": gallery[0],
        "corpus": gallery[1],
        "n_images": n_images,
        "k": k,
        "gate": plan.min_recall,
        "budget": plan.spec.params,
        "sample_queries": plan.sample_queries,
        "candidates": list(names),
    }


def save_pick(path: Path, key: dict, picked: AutoRecall) -> None:
    """Write the record atomically (a killed write leaves the old one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = dataclasses.asdict(picked)
    record = {"format": FORMAT_VERSION, "key": key, "pick": fields}
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(record, indent=1))
    os.replace(temporary, path)


def load_pick(path: Path, key: dict) -> AutoRecall | None:
    """The pick stored at ``path`` for ``key``; None when there is none.

    Raises:
        IndexFileError: the record is corrupt, or was made for another gallery, encoder, k or candidate list.
    """
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        found, fields = record["key"], dict(record["pick"])
        fields["rows"] = tuple(CandidateRow(**row) for row in fields["rows"])
        picked = AutoRecall(**fields)
        ok = record["format"] == FORMAT_VERSION and isinstance(picked.recall, float) and isinstance(found, dict)
    except (OSError, ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise IndexFileError(f"index record {path} is corrupt; delete it to measure the candidates again")
    if found != key:
        raise IndexFileError(
            f"index record {path} belongs to another gallery or candidate list (made for {found.get('corpus')} "
            f"with {found.get('encoder')} at k = {found.get('k')}); delete it to measure again"
        )
    if picked.spec not in ("exact", *key["candidates"]):
        raise IndexFileError(f"index record {path} is corrupt (it picks {picked.spec!r}); delete it to measure again")
    return picked


def pick(
    matrix: np.ndarray,
    gallery: tuple[str, str],
    k: int,
    queries: np.ndarray,
    source: str,
    plan: IndexPlan,
    candidates: Sequence[Candidate],
) -> AutoRecall:
    """Measure ``candidates`` on ``queries`` ``(m, d)`` against exact over ``matrix`` ``(N, d)``; pick the fastest.

    Args:
        gallery: (encoder id, corpus fingerprint): the key of any FAISS file loaded or saved in ``plan.folder``.
    """
    n, d = matrix.shape
    budget = memory_budget(plan.spec.params)
    truth = exact_top_k(matrix, queries, k)
    rows = [_measure("exact", exact_ranking(matrix), queries, truth, k, matrix.nbytes)]
    built: dict[str, FaissIndex] = {}
    for candidate in candidates:
        memory = estimate_bytes(candidate, n, d, matrix.nbytes)
        if memory > budget:
            continue
        ranking = _ranking(candidate, matrix, gallery, plan, built)
        rows.append(_measure(candidate.name, ranking, queries, truth, k, memory))
        _drop_builds(built, rows, candidates, candidate, plan.min_recall)
    passing = [row for row in rows[1:] if row.recall >= plan.min_recall]
    best = min(passing + rows[:1], key=lambda row: row.query_ms)  # exact is the reference, and always passes
    if not passing:
        best = rows[0]
    picked = AutoRecall(best.name, k, best.recall, len(queries), source, plan.min_recall, not passing, tuple(rows))
    if best.name != "exact" and plan.folder is not None:
        _keep(candidates, best.name, built, plan.folder)
    return picked


def _drop_builds(
    built: dict, rows: list[CandidateRow], candidates: Sequence[Candidate], now: Candidate, gate: float
) -> None:
    """Free the FAISS builds that can no longer be picked: all but the current one and the fastest passing one."""
    factory = {c.name: c.spec.factory for c in candidates}
    passing = [row for row in rows[1:] if row.recall >= gate]
    keep = {now.spec.factory, factory[min(passing, key=lambda row: row.query_ms).name] if passing else None}
    for name in [name for name in built if name not in keep]:
        del built[name]


def _measure(
    name: str, ranking: Level1Ranking, queries: np.ndarray, truth: np.ndarray, k: int, memory: int
) -> CandidateRow:
    """Recall@k of ``ranking`` against ``truth`` ``(m, k)``, and its median latency on the first queries, alone."""
    shares, times = [], []
    for i, query in enumerate(np.asarray(queries, dtype=np.float32)):
        started = time.perf_counter()
        ((found, _),) = ranking.rank(query[None, :], k)
        if i < TIMED_QUERIES:
            times.append((time.perf_counter() - started) * 1000.0)
        shares.append(len(set(found.tolist()) & set(truth[i].tolist())) / len(truth[i]))
    return CandidateRow(name, float(np.mean(shares)), statistics.median(times), int(memory))


def _ranking(
    candidate: Candidate, matrix: np.ndarray, gallery: tuple[str, str], plan: IndexPlan, built: dict
) -> Level1Ranking:
    """The candidate's strategy; one FAISS build per factory (loaded from ``plan.folder`` when saved there)."""
    spec = candidate.spec
    if not spec.approximate:
        return ExactFloat16(matrix.astype(np.float16, copy=False)) if spec.dtype == "float16" else exact_ranking(matrix)
    if spec.factory not in built:
        key = (*gallery, spec.factory)
        found = load_faiss(spec, index_file(plan.folder, key), key, len(matrix)) if plan.folder is not None else None
        built[spec.factory] = found if found is not None else build_faiss(spec, matrix, key)
    index = dataclasses.replace(built[spec.factory], spec=spec)  # sets this candidate's search parameters
    return faiss_ranking(index, matrix)


def _keep(candidates: Sequence[Candidate], name: str, built: dict, folder: Path) -> None:
    """Save the picked FAISS build (only that one) where ``ranking_of`` will load it."""
    (candidate,) = [c for c in candidates if c.name == name]
    if candidate.spec.approximate:
        index = built[candidate.spec.factory]
        if index.build_s > 0:  # built now, not loaded
            save_faiss(index, index_file(folder, index.key))


def ranking_of(
    picked: AutoRecall, candidates: Sequence[Candidate], matrix: np.ndarray, plan: IndexPlan, gallery: tuple[str, str]
) -> Level1Ranking:
    """The strategy a pick names, its FAISS index loaded from ``plan.folder`` (rebuilt if that file is gone)."""
    if picked.fallback or picked.spec == "exact":
        return exact_ranking(matrix)
    (candidate,) = [c for c in candidates if c.name == picked.spec]
    spec = candidate.spec
    if not spec.approximate:
        return ExactFloat16(matrix.astype(np.float16, copy=False))
    index = load_or_build(IndexPlan(spec, plan.folder), matrix, (*gallery, spec.factory))
    index = dataclasses.replace(index, spec=spec)
    return faiss_ranking(index, matrix)


class AutoLevel1:
    """A searcher's ``auto`` level 1: per k_1, the stored pick, else one measured now (and stored).

    Args:
        plan: the searcher's plan (its ``auto`` spec, gate, folder and sample size).
        matrix: ``(N, d)`` level-1 rows in corpus order.
        corpus, level: the gallery and its level-1 encoder (the queries: captions, else across its gap).
        candidates: ``(n, d, k) -> candidates``; default ``default_candidates``.
        gallery: what names the rows (default: the corpus's fingerprint); part of a stored pick's key.
    """

    def __init__(
        self, plan: IndexPlan, matrix: np.ndarray, corpus, level, candidates: Sizing | None = None, gallery: str = ""
    ) -> None:
        self.plan, self.matrix, self.corpus, self.level = plan, matrix, corpus, level
        self.gallery = (level.id, gallery or corpus.fingerprint)
        self.candidates = candidates
        self._picked: dict[int, tuple[AutoRecall, Level1Ranking]] = {}
        self._lock = threading.Lock()

    def recall(self, k: int) -> AutoRecall:
        """The pick at k_1 = ``k`` and its measured recall@k (``.line`` says both)."""
        return self._resolve(k)[0]

    def ranking(self, k: int) -> Level1Ranking:
        """The picked strategy at k_1 = ``k``."""
        return self._resolve(k)[1]

    def _resolve(self, k: int) -> tuple[AutoRecall, Level1Ranking]:
        with self._lock:
            if k not in self._picked:
                candidates = (self.candidates or default_candidates)(*self.matrix.shape, k)
                key = _record_key(self.gallery, len(self.matrix), k, self.plan, [c.name for c in candidates])
                path = auto_file(self.plan.folder, key) if self.plan.folder is not None else None
                picked = load_pick(path, key) if path is not None else None
                if picked is None:
                    queries, source = text_like_queries(self.corpus, self.level, self.matrix, self.plan.sample_queries)
                    picked = pick(self.matrix, self.gallery, k, queries, source, self.plan, candidates)
                    if path is not None:
                        save_pick(path, key, picked)
                ranking = ranking_of(picked, candidates, self.matrix, self.plan, self.gallery)
                self._picked[k] = picked, ranking
            return self._picked[k]


def recall_line(measured: IndexRecall | None) -> str:
    """Level 1's index in one line, as both faces say it: auto's pick or fallback, or an index's measured recall."""
    if measured is None:
        return ""
    if isinstance(measured, AutoRecall):  # the pick and its recall, or the fallback to exact
        return measured.line
    return (
        f"level 1 on {measured.spec}: recall@{measured.k} against exact {measured.recall:.3f} "
        f"({measured.queries} {measured.source} queries)"
    )
