"""Level 1 at scale: exact (float32, float16) against FAISS indexes, for image-like and text-like queries.

Level 1 over N clustered embeddings (d = 512: 10,000 Gaussian centres on the sphere holding
clusters of uneven size, lognormal, so no index's list count lines up with them; not uniform
noise, which is FAISS's worst case), for two kinds of queries: held out from the same
distribution ("in-distribution"), and gallery images moved across a modality gap as CLIP's
captions sit from their images ("across the gap", cosine about 0.3 to the target:
``cascade.gap_queries``, the same generator the tests and ``--index auto`` use). Beside them,
one real cross-modal set (``bench.index_real``): the shapes family's captions against its
100,000-image gallery. Per kind: per-query latency at k_1 = 50 (median of single queries),
recall@50 and recall@100 against exact float32, memory, build time; and the floor: the time to
read the exact matrix once at the measured memory bandwidth. Each FAISS build is made once per
N (its build parameters, e.g. HNSW's efConstruction, are part of its key) and searched at
several values of its search parameter (HNSW's efSearch, IVF's nprobe); an IVF-PQ shortlist of
10 k or more is re-ranked exactly from the matrix (memory: the index's codes plus that matrix).
At the largest N, ``--index auto`` measures its own candidates on the gap queries (builds the
sweeps made are loaded, not made again) and its pick is timed as the rows are. The embeddings
are generated once, at the largest N; each smaller N is a prefix of them.

    python -m bench.index                                   # N = 1M: both kinds, every build, auto; the real set
    python -m bench.index --n 50000,100000                  # small sizes
    python -m bench.index --n 1000000 --sweeps "IVF4096,Flat@nprobe=16/64"   # one build

Ten million rows go through the import path instead: ``bench.index_scale``.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.index_real import REAL_GALLERY, real_set
from bench.index_report import (
    ACROSS_GAP,
    IN_DISTRIBUTION,
    K_WIDE,
    TARGET_RECALL,
    AutoCheck,
    IndexReport,
    IndexRow,
    K,
    SizeInfo,
    markdown,
    summary,
)
from bench.index_sweeps import Sweep, parse_sizes, parse_skip, parse_sweeps, sweep_text
from cascade.gap_queries import across_gap, gap_direction, rank_of_targets
from cascade.index import FaissIndex, IndexPlan, build_faiss, exact_top_k, index_file, parse_index, save_faiss
from cascade.index_auto import pick, ranking_of
from cascade.index_sizing import default_candidates
from cascade.level1 import faiss_ranking
from cascade.ranking import dot as _dot
from cascade.ranking import half_top_k as _half_top_k
from cascade.ranking import max_row_norm as _max_row_norm
from cascade.ranking import top_k as _top_k

DIM, CENTRES, N_QUERIES = 512, 10_000, 200
SIZES_SIGMA = 1.0  # cluster sizes: lognormal weights of this sigma (the largest ~ 25x the smallest of 90%)
GAP_SEED = 11  # the gap direction's seed (the queries' noise: GAP_SEED + 1)


# 8-bit PQ (``PQ64``) trains at about 10 ms a point in faiss-cpu 1.15.1 here (192 s on 20,000 points,
# one thread), half an hour on the 200,000-point training sample; the 4-bit fast-scan PQ trains in seconds.
# With the clusters of uneven size, a gap query's exact top 50 holds a few rows its noise lifted out of
# other clusters: found only by probing many lists, or by a long PQ shortlist re-ranked exactly (a 1M trial:
# IVF4096,Flat 0.89 / 0.91 / 0.97 at nprobe 16 / 64 / 256; PQ128x4fs re-ranking 40 k 0.95 at nprobe 256).
# A graph built on image vectors is entered far from a text query's answers (RoarGraph, VLDB 2024).
# HNSW: three builds (M, efConstruction) at 1M, about 3, 4 and 12 minutes on two cores.
SWEEPS = (
    Sweep("HNSW16", "efSearch", (256, 1024)),
    Sweep("HNSW32", "efSearch", (128, 512, 2048)),
    Sweep("HNSW32", "efSearch", (128, 512, 2048), build="efConstruction=120"),
    Sweep("IVF4096,Flat", "nprobe", (16, 64, 256, 1024)),
    Sweep("IVF4096,PQ128x4fs", "nprobe", (64, 256, 1024), shortlists=(10, 40, 100)),
)
SIZES = (1_000_000,)
SKIP: tuple[tuple[int, str], ...] = ()
REAL_SWEEPS = (
    Sweep("HNSW32", "efSearch", (64, 256)),
    Sweep("IVF1024,Flat", "nprobe", (4, 16, 64)),
    Sweep("IVF1024,PQ32x4fs", "nprobe", (16, 64), shortlists=(10, 40)),
)
QUICK_SWEEPS = (
    Sweep("HNSW32", "efSearch", (64, 128)),
    Sweep("HNSW32", "efSearch", (64,), build="efConstruction=80"),
    Sweep("IVF64,PQ16x4fs", "nprobe", (4, 16), shortlists=(10,)),
)
QUICK_REAL_SWEEPS = (Sweep("IVF16,Flat", "nprobe", (1, 4)),)
QUICK_SIZES = (10_000,)


def generator(dim: int = DIM, count: int = CENTRES, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(``count`` unit centres ``(count, dim)``, their weights: lognormal, summing to 1)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((count, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    weights = rng.lognormal(0.0, SIZES_SIGMA, count)
    return centres, weights / weights.sum()


def cluster_rows(rng: np.random.Generator, m: int, centres: np.ndarray, weights: np.ndarray | None = None,
                 spread: float = 0.6) -> np.ndarray:  # fmt: skip
    """``(m, d)`` float32 unit rows: a centre drawn by ``weights`` plus Gaussian noise of norm ``spread``."""
    dim = centres.shape[1]
    block = centres[rng.choice(len(centres), size=m, p=weights)]
    block += spread * rng.standard_normal((m, dim), np.float32) / np.sqrt(dim)
    return block / np.linalg.norm(block, axis=1, keepdims=True)


def clustered(n: int, seed: int, centres: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """``(n, d)`` unit rows of ``cluster_rows``, generated in blocks."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, centres.shape[1]), dtype=np.float32)
    for start in range(0, n, 1 << 16):
        out[start : start + (1 << 16)] = cluster_rows(rng, min(1 << 16, n - start), centres, weights)
    return out


def _median_ms(fn, queries: np.ndarray, repeats: int) -> float:
    times = []
    for q in queries[:repeats]:
        started = time.perf_counter()
        fn(q)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _bandwidth_gb_s(matrix: np.ndarray) -> float:
    """Read bandwidth: the fastest of a few full passes summing the matrix (SIMD adds keep up with memory)."""
    best = min(_timed(lambda: matrix.sum(dtype=np.float32)) for _ in range(3))
    return matrix.nbytes / best / 1e9


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _recall(found: list[np.ndarray], truth: np.ndarray) -> float:
    """Mean share of each query's exact top k (``truth`` ``(m, k)``) that ``found`` holds."""
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / len(t) for f, t in zip(found, truth)]))


def run(
    quick: bool = False,
    sizes: Sequence[int] = SIZES,
    sweeps: Sequence[Sweep] = SWEEPS,
    skip: Sequence[tuple[int, str]] = SKIP,
    real: bool = True,
) -> IndexReport:
    """Every method at every N (ascending), for both kinds of queries, ``auto`` at the largest N; then the real
    set. ``skip``: (N, pattern) pairs; a method whose name contains the pattern (case-insensitive, e.g. ``HNSW``,
    ``float16``) is not run at that N."""
    if quick:
        sizes, sweeps, skip = QUICK_SIZES, QUICK_SWEEPS, ()
    sizes = sorted(set(sizes))
    centres, weights = generator()
    full = clustered(sizes[-1], 1, centres, weights)  # one generation: every N is a prefix (an i.i.d. sample too)
    held_out = clustered(N_QUERIES, 2, centres, weights)
    gap = gap_direction(DIM, GAP_SEED)
    rows: list[IndexRow] = []
    infos = []
    auto = None
    with tempfile.TemporaryDirectory(prefix="bench-index-") as folder:
        for n in sizes:
            patterns = [pattern.lower() for at, pattern in skip if at == n]
            targets = np.linspace(0, n - 1, N_QUERIES).astype(int)  # a caption per target image, spread over N
            queries = {IN_DISTRIBUTION: held_out, ACROSS_GAP: across_gap(full[targets], gap, seed=GAP_SEED + 1)}
            keep = Path(folder) if n == sizes[-1] else None  # the builds auto may load
            size_rows, info = _one_size(full[:n], queries, sweeps, patterns, keep)
            ranks = rank_of_targets(full[:n], queries[ACROSS_GAP], targets)
            rows += size_rows
            infos.append(dataclasses.replace(info, target_ranks=((ACROSS_GAP, _rank_summary(ranks)),)))
            if keep is not None:
                auto = _auto_check(full[:n], queries[ACROSS_GAP], size_rows, keep)
    if real:
        real_rows, real_info = _real(quick)
        rows += real_rows
        infos.append(real_info)
    return IndexReport(tuple(rows), tuple(infos), auto)


def _real(quick: bool) -> tuple[list[IndexRow], SizeInfo]:
    """The real cross-modal set: its captions and its gap queries on one gallery."""
    matrix, queries, title, targets = real_set(quick, N_QUERIES, ACROSS_GAP)
    rows, info = _one_size(matrix, queries, QUICK_REAL_SWEEPS if quick else REAL_SWEEPS, [], None)
    ranks = tuple((kind, _rank_summary(rank_of_targets(matrix, rows_of_kind, targets))) for kind, rows_of_kind
                  in queries.items())  # fmt: skip
    rows = [dataclasses.replace(row, gallery=REAL_GALLERY) for row in rows]
    return rows, dataclasses.replace(info, gallery=REAL_GALLERY, title=title, target_ranks=ranks)


def _rank_summary(ranks: np.ndarray) -> tuple[float, ...]:
    """(median, 90th, 99th percentile, share ranked first) of the targets' exact ranks."""
    return (*(float(v) for v in np.percentile(ranks, [50, 90, 99])), float(np.mean(ranks == 1)))


def _one_size(matrix: np.ndarray, queries: dict[str, np.ndarray], sweeps: Sequence[Sweep],
              patterns: Sequence[str], keep: Path | None) -> tuple[list[IndexRow], SizeInfo]:  # fmt: skip
    """Every method on ``matrix`` for every kind of ``queries``; builds saved in ``keep`` when given."""
    n = len(matrix)
    skipped = []

    def wanted(name: str) -> bool:
        if any(pattern in name.lower() for pattern in patterns):
            skipped.append(name)
            return False
        return True

    truths = {kind: best_first(matrix, rows, exact_top_k(matrix, rows, K_WIDE)) for kind, rows in queries.items()}
    bandwidth = _bandwidth_gb_s(matrix)
    # One matmul whatever the query: timed once, the reference of every kind.
    first = next(iter(queries.values()))
    exact_ms = _median_ms(lambda q: _top_k(_dot(matrix, q), K), first, 30)
    rows = [IndexRow("exact float32", n, exact_ms, 1.0, matrix.nbytes / 2**20, 0.0, kind, "", 1.0) for kind in queries]
    if wanted("exact float16"):
        rows += half_rows(matrix, queries, truths)
    for sweep in sweeps:
        if wanted(f"faiss:{sweep.label}"):
            rows += sweep_rows(sweep, matrix, queries, truths, keep)
    rows.sort(key=lambda row: list(queries).index(row.queries))  # stable: one kind's rows together
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return rows, SizeInfo(n, matrix.nbytes / (bandwidth * 1e9) * 1000, bandwidth, peak, tuple(skipped))


def best_first(matrix: np.ndarray, queries: np.ndarray, top: np.ndarray) -> np.ndarray:
    """``top`` ``(m, k)`` (each query's exact top k, unordered) ordered best first, so ``[:, :K]`` is the top K."""
    scores = np.einsum("mkd,md->mk", np.asarray(matrix[top], dtype=np.float32), np.asarray(queries, np.float32))
    return np.take_along_axis(top, np.argsort(-scores, axis=1, kind="stable"), axis=1)


def half_rows(matrix: np.ndarray, queries: dict[str, np.ndarray], truths: dict[str, np.ndarray]) -> list[IndexRow]:
    half = matrix.astype(np.float16, copy=False)  # a float16 matrix (10M rows, mapped) is ranked as it lies
    norm = _max_row_norm(half)
    rows = []
    for kind, rows_of_kind in queries.items():
        recalls = [
            _recall([_half_top_k(half, q, k, norm)[0] for q in rows_of_kind[:30]], truths[kind][:30, :k])
            for k in (K, K_WIDE)
        ]
        half_ms = _median_ms(lambda q: _half_top_k(half, q, K, norm), rows_of_kind, 30)
        rows.append(IndexRow("exact float16", len(matrix), half_ms, recalls[0], half.nbytes / 2**20, 0.0, kind, "",
                             recalls[1]))  # fmt: skip
    return rows


def sweep_rows(sweep: Sweep, matrix: np.ndarray, queries: dict[str, np.ndarray], truths: dict[str, np.ndarray],
                keep: Path | None, built: FaissIndex | None = None) -> list[IndexRow]:  # fmt: skip
    """One build of ``sweep`` (``built``, when made already), then one row per kind of queries, value of its search
    parameter and shortlist."""
    if built is None:
        built = build_faiss(parse_index(sweep.spec(sweep.values[0])), matrix, sweep.key(len(matrix)), build=sweep.build)
    if keep is not None and not sweep.build:
        save_faiss(built, index_file(keep, built.key))
    rows, codes_mib = [], _serialized_mib(built)
    for kind, rows_of_kind in queries.items():
        for value in sweep.values:
            for shortlist in sweep.shortlists or (0,):
                # A new FaissIndex over the same built index: its __post_init__ sets the search parameter.
                tuned = dataclasses.replace(built, spec=parse_index(sweep.spec(value, shortlist)))
                ranking = faiss_ranking(tuned, matrix)
                memory = codes_mib + (matrix.nbytes / 2**20 if shortlist else 0.0)
                rows.append(_measured(sweep.method(value, shortlist), ranking, rows_of_kind, truths[kind],
                                      (len(matrix), memory, built.build_s), kind, sweep.label))  # fmt: skip
    return rows


def _measured(method: str, ranking, queries: np.ndarray, truth: np.ndarray, sized: tuple[int, float, float],
              kind: str, build: str) -> IndexRow:  # fmt: skip
    """One setting: recall@K and @K_WIDE against ``truth`` ``(m, K_WIDE)``, median latency at K.

    Args:
        sized: (N, memory in MiB, build seconds).
    """
    recalls = [_recall([ranking.rank(q[None, :], k)[0][0] for q in queries], truth[:, :k]) for k in (K, K_WIDE)]
    query_ms = _median_ms(lambda q: ranking.rank(q[None, :], K), queries, N_QUERIES)
    n, memory, build_s = sized
    return IndexRow(method, n, query_ms, recalls[0], memory, build_s, kind, build, recalls[1])


def _auto_check(matrix: np.ndarray, queries: np.ndarray, rows: Sequence[IndexRow], folder: Path) -> AutoCheck:
    """``auto`` at k_1 = K with the recall target as its gate, on the gap queries: its pick, timed as the rows are,
    against the fastest row reaching the target across the gap."""
    gallery, n = ("bench", str(len(matrix))), len(matrix)
    plan = IndexPlan("auto", folder=folder, min_recall=TARGET_RECALL, sample_queries=len(queries))
    candidates = default_candidates(n, matrix.shape[1], K)
    started = time.perf_counter()
    picked = pick(matrix, gallery, K, queries, "gap", plan, candidates)
    seconds = time.perf_counter() - started
    ranking = ranking_of(picked, candidates, matrix, plan, gallery)
    query_ms = _median_ms(lambda q: ranking.rank(q[None, :], K), queries, N_QUERIES)
    passing = [r for r in rows if r.queries == ACROSS_GAP and r.recall >= TARGET_RECALL and r.method != "exact float32"]
    fastest = min(passing, key=lambda r: r.query_ms, default=None)
    return AutoCheck(n, picked.line, picked.spec, picked.recall, query_ms, seconds,
                     fastest.method if fastest else "", fastest.query_ms if fastest else 0.0)  # fmt: skip


def _serialized_mib(built: FaissIndex) -> float:
    """The index's size as FAISS writes it, counted through a callback (no file, no copy in memory)."""
    import faiss

    written = [0]

    def count(chunk: bytes) -> int:
        written[0] += len(chunk)
        return len(chunk)

    faiss.write_index(built.index, faiss.PyCallbackIOWriter(count))
    return written[0] / 2**20


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.index", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--n", type=parse_sizes, default=list(SIZES), help="comma-separated sizes (default: 1M)")
    defaults = ";".join(sweep_text(w) for w in SWEEPS)
    parser.add_argument(
        "--sweeps",
        type=parse_sweeps,
        default=list(SWEEPS),
        help=f"';'-separated FACTORY@PARAM=V1/V2/...[ build:NAME=VALUE][ rerank:R] (default: {defaults})",
    )
    parser.add_argument("--skip-at", type=parse_skip, default=list(SKIP),
                        help="N:PATTERN,... methods not run at N (e.g. 4000000:HNSW; default: none)")  # fmt: skip
    parser.add_argument("--no-real", action="store_true", help="leave out the real cross-modal set")
    args = parser.parse_args(argv)
    report = run(args.quick, args.n, args.sweeps, args.skip_at, not args.no_real)
    print(markdown(report), end="")
    for name, result, target in summary(report):
        print(f"- {name}: {result}" + (f" (target {target})" if target else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
