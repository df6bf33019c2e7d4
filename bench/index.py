"""Level 1 at scale: exact (float32, float16) against FAISS indexes on clustered synthetic embeddings.

Level 1 over N clustered embeddings (d = 512: a few thousand Gaussian centres on the sphere,
queries held out from the same distribution, not uniform noise, which is FAISS's worst case):
per-query latency (median of single queries), recall@50 against exact float32, memory, build
time; and the floor: the time to read the exact matrix once at the measured memory bandwidth.

    python -m bench.index              # N = 1M (about 15 minutes on 2 cores, 6 GB)
    python -m bench.index --n 200000   # a smaller run
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cascade.index import build_faiss, exact_top_k, parse_index
from cascade.ranking import half_top_k as _half_top_k
from cascade.ranking import max_row_norm as _max_row_norm
from cascade.ranking import top_k as _top_k
from cascade.search import _dot

DIM, CENTRES, K, N_QUERIES = 512, 4096, 50, 200
FACTORIES = ("faiss:HNSW32", "faiss:IVF4096,PQ64@nprobe=32")


@dataclass(frozen=True)
class IndexRow:
    """One level-1 method at one N: median single-query latency, recall@K against exact float32."""

    method: str
    n_images: int
    query_ms: float
    recall: float
    memory_mib: float
    build_s: float


@dataclass(frozen=True)
class IndexReport:
    rows: tuple[IndexRow, ...]
    floor_ms: float  # the float32 matrix's bytes / measured read bandwidth
    bandwidth_gb_s: float


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


def run(quick: bool = False, n_images: int = 1_000_000, factories: Sequence[str] = FACTORIES) -> IndexReport:
    n_images = 100_000 if quick else n_images
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((CENTRES, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    matrix = clustered(n_images, 1, centres)
    queries = clustered(N_QUERIES, 2, centres)
    truth = exact_top_k(matrix, queries, K)
    bandwidth = _bandwidth_gb_s(matrix)
    rows = []
    exact_ms = _median_ms(lambda q: _top_k(_dot(matrix, q), K), queries, 30)
    rows.append(IndexRow("exact float32", n_images, exact_ms, 1.0, matrix.nbytes / 2**20, 0.0))
    rows.append(_half_row(matrix, queries, truth))
    rows += [_faiss_row(text, matrix, queries, truth) for text in factories]
    return IndexReport(tuple(rows), matrix.nbytes / (bandwidth * 1e9) * 1000, bandwidth)


def _half_row(matrix: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> IndexRow:
    half = matrix.astype(np.float16)
    norm = _max_row_norm(half)
    found = [_half_top_k(half, q, K, norm)[0] for q in queries[:30]]
    half_ms = _median_ms(lambda q: _half_top_k(half, q, K, norm), queries, 30)
    return IndexRow("exact float16", len(matrix), half_ms, _recall(found, truth[:30]), half.nbytes / 2**20, 0.0)


def _faiss_row(text: str, matrix: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> IndexRow:
    import faiss

    built = build_faiss(parse_index(text), matrix, ("bench", str(len(matrix)), text))
    found = [built.search(q, K)[0] for q in queries]
    query_ms = _median_ms(lambda q: built.search(q, K), queries, N_QUERIES)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "index.faiss")
        faiss.write_index(built.index, path)
        memory = os.path.getsize(path) / 2**20
    return IndexRow(built.spec.name, len(matrix), query_ms, _recall(found, truth), memory, built.build_s)


def markdown(report: IndexReport) -> str:
    exact = report.rows[0]
    lines = [f"Memory read bandwidth {report.bandwidth_gb_s:.1f} GB/s: reading the float32 matrix once takes "
             f"{report.floor_ms:.0f} ms (the floor); exact float32 takes {exact.query_ms / report.floor_ms:.2f}x that.",
             "", "| level 1 | N | query (ms, median) | vs exact float32 | recall@50 vs exact | memory (MiB) "
             "| build (s) |",
             "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for row in report.rows:
        lines.append(f"| `{row.method}` | {row.n_images:,} | {row.query_ms:.2f} | {exact.query_ms / row.query_ms:.1f}x "
                     f"faster | {row.recall:.3f} | {row.memory_mib:,.0f} | {row.build_s:.0f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.index")
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--factories", default=";".join(FACTORIES), help="';'-separated index specs")
    args = parser.parse_args(argv)
    print(markdown(run(n_images=args.n, factories=args.factories.split(";"))), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
