"""Level 1 at scale: exact (float32, float16) against FAISS indexes on clustered synthetic embeddings.

Level 1 over N clustered embeddings (d = 512: a few thousand Gaussian centres on the sphere,
queries held out from the same distribution, not uniform noise, which is FAISS's worst case):
per-query latency (median of single queries), recall@50 against exact float32, memory, build
time; and the floor: the time to read the exact matrix once at the measured memory bandwidth.
Each FAISS factory is built once per N and searched at several values of its search parameter
(HNSW's efSearch, IVF's nprobe), so its rows show the speed/recall trade-off of one build. The
embeddings are generated once, at the largest N; each smaller N is a prefix of them.

    python -m bench.index                                   # N = 1M and 4M, HNSW skipped at 4M
    python -m bench.index --n 1000000,4000000 --skip-at ''  # everything at both sizes
    python -m bench.index --n 50000,100000                  # small sizes
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

from cascade.index import FaissIndex, build_faiss, exact_top_k, parse_index
from cascade.ranking import dot as _dot
from cascade.ranking import half_top_k as _half_top_k
from cascade.ranking import max_row_norm as _max_row_norm
from cascade.ranking import top_k as _top_k

DIM, CENTRES, K, N_QUERIES = 512, 4096, 50, 200
TARGET_RECALL, TARGET_SPEEDUP = 0.98, 20.0


@dataclass(frozen=True)
class Sweep:
    """One FAISS factory, built once per N, searched at each of ``values`` of its search parameter ``param``."""

    factory: str
    param: str
    values: tuple[int, ...]

    def spec(self, value: int) -> str:
        return f"faiss:{self.factory}@{self.param}={value}"


# 8-bit PQ (``PQ64``) trains at about 10 ms a point in faiss-cpu 1.15.1 here (192 s on 20,000 points,
# one thread), half an hour on the 200,000-point training sample; the 4-bit fast-scan PQ trains in seconds.
# IVF4096,Flat: one inverted list per synthetic cluster, exact scores inside the lists probed (at 1M: recall@50
# 1.000 at nprobe 4, 211x faster than exact, a 78 s build; HNSW32 stays below 0.93 up to efSearch 2048 there).
SWEEPS = (Sweep("HNSW32", "efSearch", (128, 256, 512, 1024, 2048)), Sweep("IVF4096,Flat", "nprobe", (4, 16)),
          Sweep("IVF1024,PQ64x4fs", "nprobe", (32, 128)))  # fmt: skip
SIZES = (1_000_000, 4_000_000)
SKIP = ((4_000_000, "HNSW"),)  # an HNSW32 build at 4M: about an hour on 2 cores, 9 GB beside the 8 GB matrix
QUICK_SWEEPS = (Sweep("HNSW32", "efSearch", (64, 128)), Sweep("IVF64,PQ16x4fs", "nprobe", (4, 16)))
QUICK_SIZES = (10_000,)


@dataclass(frozen=True)
class IndexRow:
    """One level-1 method at one N: median single-query latency, recall@K against exact float32.

    Attributes:
        build_s: the build's seconds (the same on every row of one FAISS build).
    """

    method: str
    n_images: int
    query_ms: float
    recall: float
    memory_mib: float
    build_s: float


@dataclass(frozen=True)
class SizeInfo:
    """One N: the floor, the process's peak RSS once its rows were measured, the methods skipped there."""

    n_images: int
    floor_ms: float  # the float32 matrix's bytes / measured read bandwidth
    bandwidth_gb_s: float
    peak_rss_mib: float
    skipped: tuple[str, ...] = ()


@dataclass(frozen=True)
class IndexReport:
    rows: tuple[IndexRow, ...]
    sizes: tuple[SizeInfo, ...]


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
    """Every method at every N (ascending). ``skip``: (N, pattern) pairs; a method whose name contains the
    pattern (case-insensitive, e.g. ``HNSW``, ``float16``) is not run at that N."""
    if quick:
        sizes, sweeps, skip = QUICK_SIZES, QUICK_SWEEPS, ()
    sizes = sorted(set(sizes))
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((CENTRES, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    full = clustered(sizes[-1], 1, centres)  # one generation: every N is a prefix (an i.i.d. sample too)
    queries = clustered(N_QUERIES, 2, centres)
    rows: list[IndexRow] = []
    infos = []
    for n in sizes:
        patterns = [pattern.lower() for at, pattern in skip if at == n]
        size_rows, info = _one_size(full[:n], queries, sweeps, patterns)
        rows += size_rows
        infos.append(info)
    return IndexReport(tuple(rows), tuple(infos))


def _one_size(matrix: np.ndarray, queries: np.ndarray, sweeps: Sequence[Sweep],
              patterns: Sequence[str]) -> tuple[list[IndexRow], SizeInfo]:  # fmt: skip
    n = len(matrix)
    skipped = []

    def wanted(name: str) -> bool:
        if any(pattern in name.lower() for pattern in patterns):
            skipped.append(name)
            return False
        return True

    truth = exact_top_k(matrix, queries, K)
    bandwidth = _bandwidth_gb_s(matrix)
    exact_ms = _median_ms(lambda q: _top_k(_dot(matrix, q), K), queries, 30)
    rows = [IndexRow("exact float32", n, exact_ms, 1.0, matrix.nbytes / 2**20, 0.0)]
    if wanted("exact float16"):
        rows.append(_half_row(matrix, queries, truth))
    for sweep in sweeps:
        if wanted(f"faiss:{sweep.factory}"):
            rows += _sweep_rows(sweep, matrix, queries, truth)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return rows, SizeInfo(n, matrix.nbytes / (bandwidth * 1e9) * 1000, bandwidth, peak, tuple(skipped))


def _half_row(matrix: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> IndexRow:
    half = matrix.astype(np.float16)
    norm = _max_row_norm(half)
    found = [_half_top_k(half, q, K, norm)[0] for q in queries[:30]]
    half_ms = _median_ms(lambda q: _half_top_k(half, q, K, norm), queries, 30)
    return IndexRow("exact float16", len(matrix), half_ms, _recall(found, truth[:30]), half.nbytes / 2**20, 0.0)


def _sweep_rows(sweep: Sweep, matrix: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> list[IndexRow]:
    """One build of ``sweep.factory``, then one row per value of its search parameter."""
    built = build_faiss(parse_index(sweep.spec(sweep.values[0])), matrix, ("bench", str(len(matrix)), sweep.factory))
    memory = _serialized_mib(built)
    rows = []
    for value in sweep.values:
        # A new FaissIndex over the same built index: its __post_init__ sets the search parameter.
        tuned = dataclasses.replace(built, spec=parse_index(sweep.spec(value)))
        found = tuned.search_many(queries, K)[0]
        query_ms = _median_ms(lambda q, tuned=tuned: tuned.search(q, K), queries, N_QUERIES)
        rows.append(IndexRow(tuned.spec.name, len(matrix), query_ms, _recall(list(found), truth), memory,
                             built.build_s))  # fmt: skip
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


def markdown(report: IndexReport) -> str:
    lines = []
    for info in report.sizes:
        rows = [r for r in report.rows if r.n_images == info.n_images]
        exact = rows[0]
        lines += [f"**N = {info.n_images:,}.** Memory read bandwidth {info.bandwidth_gb_s:.1f} GB/s: reading the "
                  f"float32 matrix once takes {info.floor_ms:.0f} ms (the floor); exact float32 takes "
                  f"{exact.query_ms / info.floor_ms:.2f}x that. Peak RSS of the process: {info.peak_rss_mib:,.0f} MiB."
                  + (f" Skipped at this N (`--skip-at`): {', '.join(f'`{s}`' for s in info.skipped)}."
                     if info.skipped else ""),
                  "", "| level 1 | N | query (ms, median) | vs exact float32 | recall@50 vs exact | memory (MiB) "
                  "| build (s) |", "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for row in rows:
            lines.append(f"| `{row.method}` | {row.n_images:,} | {row.query_ms:.2f} | "
                         f"{exact.query_ms / row.query_ms:.1f}x faster | {row.recall:.3f} | {row.memory_mib:,.0f} | "
                         f"{row.build_s:.0f} |")  # fmt: skip
        lines.append("")
    lines.append("The rows of one FAISS factory at one N share one build; they differ only in the search parameter.")
    return "\n".join(lines) + "\n"


def _factory(method: str) -> str:
    return parse_index(method).factory if method.startswith("faiss:") else method


def best_of_sweep(rows: Sequence[IndexRow]) -> tuple[IndexRow | None, IndexRow]:
    """(the first row, in sweep order, reaching TARGET_RECALL, or None; the row of highest recall)."""
    reached = next((r for r in rows if r.recall >= TARGET_RECALL), None)
    return reached, max(rows, key=lambda r: r.recall)


def summary(report: IndexReport) -> list[tuple[str, str, str]]:
    """Per N: exact against the floor, float16 against float32, each factory's cheapest setting reaching the
    recall target (or its best, when none does), and what was skipped."""
    out = []
    for info in report.sizes:
        rows = [r for r in report.rows if r.n_images == info.n_images]
        exact, n = rows[0], f"N = {info.n_images:,}"
        out.append((f"Level 1, exact float32 at {n}: query time / time to read the matrix once",
                    f"{exact.query_ms / info.floor_ms:.2f}x", "<= 1.5x"))  # fmt: skip
        out += [(f"Level 1, exact float16 at {n}: speed vs exact float32, recall@50",
                 f"{exact.query_ms / r.query_ms:.1f}x, {r.recall:.3f}", "<= 1.2x the float32 time")
                for r in rows if r.method == "exact float16"]  # fmt: skip
        for factory in dict.fromkeys(_factory(r.method) for r in rows if r.method.startswith("faiss:")):
            sweep = [r for r in rows if _factory(r.method) == factory]
            reached, best = best_of_sweep(sweep)
            if reached is not None:
                result = (f"`{reached.method}`: {exact.query_ms / reached.query_ms:.1f}x faster, recall@50 "
                          f"{reached.recall:.3f} (the smallest setting tried reaching {TARGET_RECALL})")  # fmt: skip
            else:
                result = (f"none of {len(sweep)} settings reached {TARGET_RECALL}; best `{best.method}`: "
                          f"{exact.query_ms / best.query_ms:.1f}x faster, recall@50 {best.recall:.3f}")  # fmt: skip
            target = f">= {TARGET_SPEEDUP:.0f}x at >= {TARGET_RECALL}" if "HNSW" in factory else ""
            out.append((f"Level 1, `faiss:{factory}` at {n} (one build): speed vs exact float32, recall@50",
                        result, target))  # fmt: skip
        if info.skipped:
            out.append((f"Level 1 at {n}", f"skipped (`--skip-at`): {', '.join(info.skipped)}", ""))
    return out


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
    """``FACTORY@PARAM=V1/V2/...;...`` (e.g. ``HNSW32@efSearch=128/512``) -> sweeps."""
    sweeps = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        factory, _, setting = part.removeprefix("faiss:").partition("@")
        param, _, values = setting.partition("=")
        try:
            sweeps.append(Sweep(factory, param, tuple(int(v) for v in values.split("/"))))
        except ValueError:
            raise argparse.ArgumentTypeError(f"--sweeps takes FACTORY@PARAM=V1/V2, got {part!r}") from None
    return sweeps


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.index", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--n", type=parse_sizes, default=list(SIZES), help="comma-separated sizes (default: 1M,4M)")
    defaults = ";".join(f"{w.factory}@{w.param}=" + "/".join(map(str, w.values)) for w in SWEEPS)
    parser.add_argument("--sweeps", type=parse_sweeps, default=list(SWEEPS),
                        help=f"';'-separated FACTORY@PARAM=V1/V2/... (default: {defaults})")  # fmt: skip
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
