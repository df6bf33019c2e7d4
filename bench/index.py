"""Level 1 at scale: exact (float32, float16) against FAISS indexes on clustered synthetic embeddings.

Level 1 over N clustered embeddings (d = 512: a few thousand Gaussian centres on the sphere,
not uniform noise, which is FAISS's worst case), for two kinds of queries: held out from the
same distribution ("in-distribution"), and gallery images moved across a modality gap as CLIP's
captions sit from their images ("across the gap", cosine about 0.3 to the target:
``cascade.gap_queries``, the same generator the tests and ``--index auto`` use). Per kind:
per-query latency (median of single queries), recall@50 against exact float32, memory, build
time; and the floor: the time to read the exact matrix once at the measured memory bandwidth.
Each FAISS build is made once per N (its build parameters, e.g. HNSW's efConstruction, are part
of its key) and searched at several values of its search parameter (HNSW's efSearch, IVF's
nprobe); an IVF-PQ shortlist of 10 k is re-ranked exactly from the float32 matrix (memory: the
index's codes plus that matrix). The embeddings are generated once, at the largest N; each
smaller N is a prefix of them.

    python -m bench.index                                   # N = 1M and 4M, HNSW skipped at 4M
    python -m bench.index --n 1000000,4000000 --skip-at ''  # everything at both sizes
    python -m bench.index --n 50000,100000                  # small sizes
    python -m bench.index --n 1000000                       # 1M only: both kinds of queries, every build
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bench.index_report import (
    ACROSS_GAP,
    IN_DISTRIBUTION,
    IndexReport,
    IndexRow,
    K,
    SizeInfo,
    markdown,
    summary,
)
from cascade.gap_queries import across_gap, gap_direction, rank_of_targets
from cascade.index import FaissIndex, build_faiss, exact_top_k, parse_index
from cascade.level1 import FaissRanking, Reranked
from cascade.ranking import dot as _dot
from cascade.ranking import half_top_k as _half_top_k
from cascade.ranking import max_row_norm as _max_row_norm
from cascade.ranking import top_k as _top_k

DIM, CENTRES, N_QUERIES = 512, 4096, 200
GAP_SEED = 11  # the gap direction's seed (the queries' noise: GAP_SEED + 1)


@dataclass(frozen=True)
class Sweep:
    """One FAISS build, made once per N, searched at each of ``values`` of its search parameter ``param``.

    Attributes:
        build: parameters set before adding (``efConstruction=200``), part of the build's key.
        shortlist: 0, or the multiple of k the index returns for an exact re-rank from the matrix.
    """

    factory: str
    param: str
    values: tuple[int, ...]
    build: str = ""
    shortlist: int = 0

    def spec(self, value: int) -> str:
        return f"faiss:{self.factory}@{self.param}={value}"

    @property
    def label(self) -> str:
        """The build: its factory, its build parameters and its re-rank, e.g. ``HNSW32 efConstruction=200``."""
        return " ".join(filter(None, [self.factory, self.build, f"rerank={self.shortlist}k" if self.shortlist else ""]))

    def method(self, value: int) -> str:
        return self.spec(value) + "".join(f" {part}" for part in self.label.split(" ")[1:])

    def key(self, n: int) -> tuple[str, str, str]:
        """The build's key: two builds of one factory with other build parameters never share an index file."""
        return ("bench", str(n), self.factory + (f"/{self.build}" if self.build else ""))


# 8-bit PQ (``PQ64``) trains at about 10 ms a point in faiss-cpu 1.15.1 here (192 s on 20,000 points,
# one thread), half an hour on the 200,000-point training sample; the 4-bit fast-scan PQ trains in seconds.
# IVF4096,Flat: one inverted list per synthetic cluster, exact scores inside the lists probed (at 1M: recall@50
# 1.000 at nprobe 4, 211x faster than exact, a 78 s build; HNSW32 stays below 0.93 up to efSearch 2048 there).
# Across the gap a query's nearest list is less often its target's, and a graph built on image vectors
# is entered far from its answers (RoarGraph, VLDB 2024): more probes, larger efSearch, and three HNSW builds
# (M, efConstruction) at 1M.
SWEEPS = (
    Sweep("HNSW32", "efSearch", (128, 256, 512, 1024, 2048)),
    Sweep("HNSW32", "efSearch", (128, 256, 512, 1024), build="efConstruction=200"),
    Sweep("HNSW64", "efSearch", (128, 256, 512, 1024), build="efConstruction=200"),
    Sweep("IVF4096,Flat", "nprobe", (4, 16, 64, 256)),
    Sweep("IVF4096,PQ128x4fs", "nprobe", (16, 64, 256), shortlist=10),
)
SIZES = (1_000_000, 4_000_000)
SKIP = ((4_000_000, "HNSW"),)  # an HNSW32 build at 4M: about an hour on 2 cores, 9 GB beside the 8 GB matrix
QUICK_SWEEPS = (
    Sweep("HNSW32", "efSearch", (64, 128)),
    Sweep("HNSW32", "efSearch", (64,), build="efConstruction=80"),
    Sweep("IVF64,PQ16x4fs", "nprobe", (4, 16), shortlist=10),
)
QUICK_SIZES = (10_000,)


def clustered(n: int, seed: int, centres: np.ndarray, spread: float = 0.6) -> np.ndarray:
    """``(n, DIM)`` unit rows, each a centre plus Gaussian noise, generated in blocks."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 1 << 16):
        m = min(1 << 16, n - start)
        block = centres[rng.integers(0, len(centres), size=m)] + spread * rng.standard_normal(
            (m, DIM), np.float32
        ) / np.sqrt(DIM)
        out[start : start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
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
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / K for f, t in zip(found, truth)]))


def run(
    quick: bool = False,
    sizes: Sequence[int] = SIZES,
    sweeps: Sequence[Sweep] = SWEEPS,
    skip: Sequence[tuple[int, str]] = SKIP,
) -> IndexReport:
    """Every method at every N (ascending), for both kinds of queries. ``skip``: (N, pattern) pairs; a method
    whose name contains the pattern (case-insensitive, e.g. ``HNSW``, ``float16``) is not run at that N."""
    if quick:
        sizes, sweeps, skip = QUICK_SIZES, QUICK_SWEEPS, ()
    sizes = sorted(set(sizes))
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((CENTRES, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    full = clustered(sizes[-1], 1, centres)  # one generation: every N is a prefix (an i.i.d. sample too)
    held_out = clustered(N_QUERIES, 2, centres)
    gap = gap_direction(DIM, GAP_SEED)
    rows: list[IndexRow] = []
    infos = []
    for n in sizes:
        patterns = [pattern.lower() for at, pattern in skip if at == n]
        targets = np.linspace(0, n - 1, N_QUERIES).astype(int)  # a caption per target image, spread over N
        queries = {IN_DISTRIBUTION: held_out, ACROSS_GAP: across_gap(full[targets], gap, seed=GAP_SEED + 1)}
        size_rows, info = _one_size(full[:n], queries, sweeps, patterns)
        ranks = rank_of_targets(full[:n], queries[ACROSS_GAP], targets)
        rows += size_rows
        infos.append(dataclasses.replace(info, gap_ranks=_rank_summary(ranks)))
    return IndexReport(tuple(rows), tuple(infos))


def _rank_summary(ranks: np.ndarray) -> tuple[float, ...]:
    """(median, 90th, 99th percentile, share ranked first) of the targets' exact ranks."""
    return (*(float(v) for v in np.percentile(ranks, [50, 90, 99])), float(np.mean(ranks == 1)))


def _one_size(matrix: np.ndarray, queries: dict[str, np.ndarray], sweeps: Sequence[Sweep],
              patterns: Sequence[str]) -> tuple[list[IndexRow], SizeInfo]:  # fmt: skip
    n = len(matrix)
    skipped = []

    def wanted(name: str) -> bool:
        if any(pattern in name.lower() for pattern in patterns):
            skipped.append(name)
            return False
        return True

    truths = {kind: exact_top_k(matrix, rows, K) for kind, rows in queries.items()}
    bandwidth = _bandwidth_gb_s(matrix)
    # One matmul whatever the query: timed once, the reference of both kinds.
    exact_ms = _median_ms(lambda q: _top_k(_dot(matrix, q), K), queries[IN_DISTRIBUTION], 30)
    rows = [IndexRow("exact float32", n, exact_ms, 1.0, matrix.nbytes / 2**20, 0.0, kind) for kind in queries]
    if wanted("exact float16"):
        rows += _half_rows(matrix, queries, truths)
    for sweep in sweeps:
        if wanted(f"faiss:{sweep.label}"):
            rows += _sweep_rows(sweep, matrix, queries, truths)
    rows.sort(key=lambda row: list(queries).index(row.queries))  # stable: in-distribution rows first
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return rows, SizeInfo(n, matrix.nbytes / (bandwidth * 1e9) * 1000, bandwidth, peak, tuple(skipped))


def _half_rows(matrix: np.ndarray, queries: dict[str, np.ndarray], truths: dict[str, np.ndarray]) -> list[IndexRow]:
    half = matrix.astype(np.float16)
    norm = _max_row_norm(half)
    rows = []
    for kind, rows_of_kind in queries.items():
        found = [_half_top_k(half, q, K, norm)[0] for q in rows_of_kind[:30]]
        half_ms = _median_ms(lambda q: _half_top_k(half, q, K, norm), rows_of_kind, 30)
        recall = _recall(found, truths[kind][:30])
        rows.append(IndexRow("exact float16", len(matrix), half_ms, recall, half.nbytes / 2**20, 0.0, kind))
    return rows


def _sweep_rows(
    sweep: Sweep, matrix: np.ndarray, queries: dict[str, np.ndarray], truths: dict[str, np.ndarray]
) -> list[IndexRow]:
    """One build of ``sweep``, then one row per kind of queries and value of its search parameter."""
    built = build_faiss(parse_index(sweep.spec(sweep.values[0])), matrix, sweep.key(len(matrix)), build=sweep.build)
    memory = _serialized_mib(built) + (matrix.nbytes / 2**20 if sweep.shortlist else 0.0)
    rows = []
    for kind, rows_of_kind in queries.items():
        for value in sweep.values:
            # A new FaissIndex over the same built index: its __post_init__ sets the search parameter.
            tuned = dataclasses.replace(built, spec=parse_index(sweep.spec(value)))
            ranking = Reranked(tuned, matrix, sweep.shortlist) if sweep.shortlist else FaissRanking(tuned)
            found = [ranking.rank(q[None, :], K)[0][0] for q in rows_of_kind]
            query_ms = _median_ms(lambda q, ranking=ranking: ranking.rank(q[None, :], K), rows_of_kind, N_QUERIES)
            recall = _recall(found, truths[kind])
            row = IndexRow(sweep.method(value), len(matrix), query_ms, recall, memory, built.build_s, kind, sweep.label)
            rows.append(row)
    return rows


def _serialized_mib(built: FaissIndex) -> float:
    """The index's size as FAISS writes it, counted through a callback (no file, no copy in memory)."""
    import faiss

    written = [0]

    def count(chunk: bytes) -> int:
        written[0] += len(chunk)
        return len(chunk)

    faiss.write_index(built.index, faiss.PyCallbackIOWriter(count))
    return written[0] / 2**20


def parse_sizes(text: str) -> list[int]:
    return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]


def parse_skip(text: str) -> list[tuple[int, str]]:
    """``N:PATTERN[,N:PATTERN...]`` -> [(N, PATTERN)]; "" -> nothing skipped."""
    pairs = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        n, sep, pattern = part.partition(":")
        if not sep or not pattern or not n.replace("_", "").isdigit():
            raise argparse.ArgumentTypeError(f"--skip-at takes N:PATTERN (e.g. 4000000:HNSW), got {part!r}")
        pairs.append((int(n.replace("_", "")), pattern))
    return pairs


def parse_sweeps(text: str) -> list[Sweep]:
    """``FACTORY@PARAM=V1/V2/...[ build:NAME=VALUE][ rerank:R];...`` -> sweeps, e.g.
    ``HNSW32@efSearch=128/512 build:efConstruction=200;IVF4096,PQ128x4fs@nprobe=16/64 rerank:10``."""
    sweeps = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        head, *extras = part.split()
        factory, _, setting = head.removeprefix("faiss:").partition("@")
        param, _, values = setting.partition("=")
        options = dict(extra.partition(":")[::2] for extra in extras)
        try:
            if set(options) - {"build", "rerank"} or not param:
                raise ValueError(part)
            sweep = Sweep(
                factory,
                param,
                tuple(int(v) for v in values.split("/")),
                options.get("build", ""),
                int(options.get("rerank", 0)),
            )
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"--sweeps takes FACTORY@PARAM=V1/V2[ build:NAME=VALUE][ rerank:R], got {part!r}"
            ) from None
        sweeps.append(sweep)
    return sweeps


def _sweep_text(sweep: Sweep) -> str:
    extras = (f" build:{sweep.build}" if sweep.build else "") + (
        f" rerank:{sweep.shortlist}" if sweep.shortlist else ""
    )
    return f"{sweep.factory}@{sweep.param}=" + "/".join(map(str, sweep.values)) + extras


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.index", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--n", type=parse_sizes, default=list(SIZES), help="comma-separated sizes (default: 1M,4M)")
    defaults = ";".join(_sweep_text(w) for w in SWEEPS)
    parser.add_argument(
        "--sweeps",
        type=parse_sweeps,
        default=list(SWEEPS),
        help=f"';'-separated FACTORY@PARAM=V1/V2/...[ build:NAME=VALUE][ rerank:R] (default: {defaults})",
    )
    parser.add_argument("--skip-at", type=parse_skip, default=list(SKIP),
                        help="N:PATTERN,... methods not run at N (default: 4000000:HNSW; '' runs all)")  # fmt: skip
    args = parser.parse_args(argv)
    report = run(args.quick, args.n, args.sweeps, args.skip_at)
    print(markdown(report), end="")
    for name, result, target in summary(report):
        print(f"- {name}: {result}" + (f" (target {target})" if target else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
