"""Warm-query overhead: the cascade machinery against the bare search it wraps.

A *warm* query finds every image feature it needs in a cache, so what is left
is text encoding, the level-1 matmul over all N embeddings, top-k, and for the
later levels a gather of k cached rows and a small matmul. The bare reference is
text-encode + ``M @ q`` + top-k on the same matrix with the same text tower: numpy's
float32 GEMV, or for float16 storage torch's float16 GEMV (``torch.mv``) and ``torch.topk``,
the fastest plain way to rank float16 rows (the cascade's own ``exact:float16`` adds an exact
re-scoring of the few rows near the cut, ``cascade.ranking.half_top_k``).
Both run interleaved in one process; we report medians and their ratio.

Text tower: the ViT-B-16 text transformer (random weights: the cost is the
architecture's). A cheaper text tower makes the matmul a larger share and the
relative overhead larger; we report that case too, with a tiny text tower.

Each (N, storage) row runs in a fresh process so its peak resident memory is
its own: at N = 1M a float32 matrix is 2 GiB and a float16 one 1 GiB.

The query log: ``Store.record`` of a two-level search into a DuckDB file, the
price every logged query pays on top of the search (target under 2 ms).

    python -m bench.query_path                       # the default rows, printed
    python -m bench.query_path --row 1000000 float16 ViT-B-16 --json
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from cascade.corpus import virtual_corpus
from cascade.encoders import create_encoder
from cascade.encoders.base import BiEncoder
from cascade.ranking import dot
from cascade.search import CascadeSearcher
from cascade.types import CascadeConfig, LevelTrace, SearchResult

DIM = 512
QUERIES = ("a red circle left of two blue squares", "a dog on a beach", "three striped stars", "a small green cube")
KS = (100, 10)
_GEN_ROWS = 1 << 16  # rows generated at a time: no float32 copy of a float16 matrix ever exists


class TableEncoder(BiEncoder):
    """A level whose image features are a given table (already cached), with a real text tower."""

    def __init__(self, name: str, text_tower: BiEncoder, image_macs: int) -> None:
        self.id, self.name, self.image_macs, self.image_size = f"bench:{name}", name, image_macs, 224
        self.dim, self.text_tower_id, self.text_macs = DIM, text_tower.text_tower_id, text_tower.text_macs
        self._text = text_tower

    def preprocess(self, image):  # never called: every feature is cached
        raise RuntimeError("a warm benchmark must not encode images")

    def encode_pixels(self, pixels):
        raise RuntimeError("a warm benchmark must not encode images")

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self._text.encode_texts(texts)


class SeededCache:
    """A FeatureCache that holds a row for every image: derived from the id, made on demand.

    A warm level 2 needs its k candidates cached; storing rows for all N images would
    add 2 GiB at N = 1M for rows no query reads.
    """

    def get(self, encoder_id: str, image_ids: Sequence[str]) -> dict[str, np.ndarray]:
        return {image_id: _seeded_row(encoder_id, image_id) for image_id in image_ids}

    def put(self, encoder_id: str, features: Mapping[str, np.ndarray]) -> None:
        raise RuntimeError("a warm benchmark must not encode images")


def _seeded_row(encoder_id: str, image_id: str) -> np.ndarray:
    seed = [sum(encoder_id.encode()), int(image_id[3:])]
    row = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return row / np.linalg.norm(row)


@dataclass(frozen=True)
class QueryPathRow:
    """Medians of interleaved warm queries; memory of this row's own process.

    Attributes:
        paired_ratio: median over the interleaved pairs of cascade time / bare time (each pair ran
            back to back, so a slow moment of the machine hits both of its sides).
        matrix_mib: the level-1 matrix as stored.
        base_rss_mib: the process's resident memory before the matrix existed (Python, torch, model).
        peak_rss_mib: its peak resident memory after the measured queries.
    """

    n_images: int
    text_tower: str
    storage: str
    bare_ms: float
    cascade_ms: float
    paired_ratio: float
    matrix_mib: float
    base_rss_mib: float
    peak_rss_mib: float
    repeats: int

    @property
    def overhead(self) -> float:
        return self.paired_ratio - 1.0


def _projected_text_tower(arch: str) -> BiEncoder:
    """An OpenCLIP text tower whose output is projected to DIM (so towers of any width fit the table)."""
    encoder = create_encoder(f"openclip:{arch}@random")
    if encoder.dim == DIM:
        return encoder
    generator = torch.Generator().manual_seed(0)
    projection = torch.nn.functional.normalize(torch.randn(encoder.dim, DIM, generator=generator))

    class Projected(BiEncoder):
        id, name, image_macs, image_size, dim = encoder.id + "+proj", encoder.name, 0, 0, DIM
        text_tower_id, text_macs = encoder.text_tower_id + "+proj", encoder.text_macs
        preprocess = encode_pixels = None

        def encode_texts(self, texts):
            out = torch.from_numpy(encoder.encode_texts(texts)) @ projection
            return torch.nn.functional.normalize(out, dim=-1).numpy()

    return Projected()


def _elapsed_ms(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def _rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def unit_matrix(n_images: int, storage: str, seed: int = 0) -> np.ndarray:
    """``(n_images, DIM)`` random unit rows in ``storage`` dtype, generated in slices."""
    rng = np.random.default_rng(seed)
    matrix = np.empty((n_images, DIM), dtype=storage)
    for start in range(0, n_images, _GEN_ROWS):
        block = rng.standard_normal((min(_GEN_ROWS, n_images - start), DIM), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        matrix[start : start + len(block)] = block
    return matrix


def _bare_search(matrix: np.ndarray, text: BiEncoder) -> Callable[[], np.ndarray]:
    """The bare query on ``matrix``: encode the text, score every row, keep the top ``KS[-1]`` positions."""
    if matrix.dtype == np.float16:
        rows = torch.from_numpy(matrix)

        def bare_half() -> np.ndarray:
            q = torch.from_numpy(text.encode_texts([QUERIES[0]])[0].astype(np.float16))
            return torch.topk(torch.mv(rows, q), KS[-1]).indices.numpy()

        return bare_half

    def bare() -> np.ndarray:
        scores = dot(matrix, text.encode_texts([QUERIES[0]])[0])
        top = np.argpartition(-scores, KS[-1])[: KS[-1]]
        return top[np.argsort(-scores[top])]

    return bare


def measure(n_images: int, arch: str = "ViT-B-16", storage: str = "float32", repeats: int = 30) -> QueryPathRow:
    """One row: warm cascade [level 1 over N, level 2 over k_1 = 100] -> 10 results, against bare top-10.

    Call it in a fresh process for a meaningful ``peak_rss_mib`` (``measure_in_subprocess``).
    """
    text = _projected_text_tower(arch)
    text.encode_texts([QUERIES[0]])  # first call allocates the model's buffers: part of the base
    base_rss = _rss_mib()
    matrix = unit_matrix(n_images, storage)
    corpus = virtual_corpus(n_images)
    level1, level2 = TableEncoder("level1", text, 10), TableEncoder("level2", text, 1000)
    searcher = CascadeSearcher([level1, level2], corpus, cache=SeededCache())
    searcher.use_level1_matrix(matrix)

    bare = _bare_search(matrix, text)

    def cascade() -> object:
        return searcher.search(QUERIES[0], KS)

    for fn in (bare, cascade):  # warm-up: first calls fill caches and page in memory
        fn(), fn()
    bare_times, cascade_times = [], []
    for _ in range(repeats):  # interleaved, so machine noise hits both alike
        bare_times.append(_elapsed_ms(bare))
        cascade_times.append(_elapsed_ms(cascade))
    return QueryPathRow(
        n_images=n_images,
        text_tower=arch,
        storage=storage,
        bare_ms=statistics.median(bare_times),
        cascade_ms=statistics.median(cascade_times),
        paired_ratio=statistics.median(c / b for c, b in zip(cascade_times, bare_times)),
        matrix_mib=matrix.nbytes / 2**20,
        base_rss_mib=base_rss,
        peak_rss_mib=_rss_mib(),
        repeats=repeats,
    )


def measure_in_subprocess(n_images: int, storage: str, arch: str, repeats: int, timeout_s: float = 900) -> QueryPathRow:
    """``measure`` in a fresh Python process (its own peak memory), with this process's torch threads."""
    command = [sys.executable, "-m", "bench.query_path", "--row", str(n_images), storage, arch,
               "--repeats", str(repeats), "--threads", str(torch.get_num_threads()), "--json"]  # fmt: skip
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise RuntimeError(f"query-path row N={n_images} {storage} {arch} failed: {done.stderr.strip()[-2000:]}")
    return QueryPathRow(**json.loads(done.stdout.strip().splitlines()[-1]))


# ---------------------------------------------------------------- the query log


@dataclass(frozen=True)
class LogCostRow:
    """Wall time of ``Store.record`` for one two-level search, into a DuckDB file."""

    records: int
    median_ms: float
    p95_ms: float


def _logged_result(query: str, n_images: int) -> SearchResult:
    """A two-level search result as the searcher makes it (k = 100 -> 10), without running a model."""
    traces = []
    for level, (k, candidates) in enumerate(zip(KS, (n_images, KS[0])), start=1):
        traces.append(LevelTrace(
            encoder=f"bench:level{level}", k=k, candidates=candidates, hits=candidates - 3, misses=3,
            image_macs=3 * 10**9, text_macs=10**9, latency_ms=1.5, ids=tuple(f"img{i:07d}" for i in range(k)),
            scores=tuple(1.0 - i / k for i in range(k)), macs_per_image=10**9,
        ))  # fmt: skip
    config = CascadeConfig(levels=tuple(t.encoder for t in traces), ks=KS)
    return SearchResult(query=query, config=config, levels=tuple(traces))


def log_cost(n_records: int = 300, n_images: int = 100_000) -> LogCostRow:
    """Median and p95 of logging one query (a 2-level SearchResult) to a fresh DuckDB file."""
    from analysis.store import Store

    results = [_logged_result(query, n_images) for query in QUERIES]
    warmup = 10
    times = []
    with tempfile.TemporaryDirectory() as folder, Store(Path(folder) / "log.duckdb") as store:
        for i in range(warmup + n_records):
            result = results[i % len(results)]
            elapsed = _elapsed_ms(lambda result=result: store.record(result, "bench-corpus", n_images))
            if i >= warmup:
                times.append(elapsed)
        logged = store.frame("SELECT count(*) AS n FROM queries")["n"][0]
    if logged != warmup + n_records:
        raise RuntimeError(f"logged {logged} queries for {warmup + n_records} records")
    return LogCostRow(
        records=n_records,
        median_ms=statistics.median(times),
        p95_ms=float(np.percentile(times, 95)),
    )


# ---------------------------------------------------------------- the whole benchmark


# (N, storage, text tower, repeats). At N = 1M the matmul dominates, so the cheap text tower suffices there;
# float16 halves the matrix's memory; its bare side is torch's float16 GEMV and top-k.
ROWS_QUICK: tuple[tuple[int, str, str, int], ...] = (  # one process, no full-size model: the float16 path
    (10_000, "float16", "tiny-vit-s", 8),
)
ROWS_FULL: tuple[tuple[int, str, str, int], ...] = (
    (10_000, "float32", "ViT-B-16", 10),
    (10_000, "float32", "tiny-vit-s", 30),
    (100_000, "float32", "ViT-B-16", 10),
    (100_000, "float32", "tiny-vit-s", 30),
    (1_000_000, "float32", "tiny-vit-s", 15),
    (1_000_000, "float16", "tiny-vit-s", 8),
)


@dataclass(frozen=True)
class QueryPathReport:
    rows: tuple[QueryPathRow, ...]
    log: LogCostRow


def run(quick: bool = False) -> QueryPathReport:
    """Every row in its own process, then the log's cost."""
    rows = tuple(
        measure_in_subprocess(n, storage, arch, repeats)
        for n, storage, arch, repeats in (ROWS_QUICK if quick else ROWS_FULL)
    )
    return QueryPathReport(rows=rows, log=log_cost(60 if quick else 400))


def markdown(report: QueryPathReport) -> str:
    lines = [
        "| N | storage | text tower | repeats | bare median (ms) | cascade median (ms) | overhead (median of pairs) "
        "| matrix (MiB) | peak RSS (MiB) |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report.rows:
        lines.append(f"| {r.n_images:,} | {r.storage} | {r.text_tower} | {r.repeats} | {r.bare_ms:.2f} | "
                     f"{r.cascade_ms:.2f} | {100 * r.overhead:+.1f}% | {r.matrix_mib:,.0f} | "
                     f"{r.peak_rss_mib:,.0f} |")  # fmt: skip
    log = report.log
    lines += [
        "",
        f"Query log (`Store.record`, one 2-level search into a DuckDB file, {log.records} records): "
        f"median {log.median_ms:.2f} ms, p95 {log.p95_ms:.2f} ms (target: under 2 ms).",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.query_path", description=__doc__.split("\n\n")[0])
    parser.add_argument("--row", nargs=3, metavar=("N", "STORAGE", "TEXT_TOWER"), help="measure one row here")
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.row:
        n, storage, arch = args.row
        row = measure(int(n), arch=arch, storage=storage, repeats=args.repeats)
        print(json.dumps(asdict(row)) if args.json else markdown(QueryPathReport((row,), log_cost(50))))
        return 0
    print(markdown(run(quick=args.quick)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
