"""Bring your existing CLIP index: the import and the estimate against NumPy doing the same reads.

A clip-retrieval index (float16 ``img_emb/img_emb_N.npy`` shards and ``metadata/metadata_N.parquet`` with
``image_path``; random unit rows written here block by block) is imported with ``analysis.imported`` (every row
checked, then written atomically as one matrix file beside a database, mapped when served), against NumPy reading
the same files into memory (``np.load`` of every shard, pyarrow reading the metadata). A query log's alpha is
estimated with level 1 only (``analysis.estimate``, its ``level1_s``) against a bare batched matmul and
``np.argpartition`` over the same memory-mapped shards for the same query embeddings; text encoding is reported
apart. Each side runs in a fresh process, so its peak resident memory is its own: measured above that process's
baseline (torch imported, the text tower built), against the matrix's bytes. Targets: the import within 3x NumPy's
read, level 1 within 1.5x the bare ranking, peak memory within 1.5x the matrix.

    python -m bench.imports [--quick]     # the section; each side runs as `--worker KIND`, a process of its own
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from analysis.embedding_sources import detect
from analysis.estimate import QUERY_BATCH, RANK_BLOCK_ROWS, distinct_queries, estimate, hardware_named
from analysis.imported import ImportRequest, imported_folder, prepare, write
from analysis.query_logs import stream_query_log
from analysis.store import Store
from bench.imports_workload import read_through, write_index, write_log
from cascade.encoders import create_encoder
from cascade.encoders.base import BiEncoder

ROOT = Path(__file__).resolve().parent.parent
TARGET_IMPORT, TARGET_LEVEL1, TARGET_RSS = 3.0, 1.5, 1.5  # ours / reference, at most


@dataclass(frozen=True)
class Workload:
    """An index of ``n_rows`` x ``dim`` float16 rows in ``shards`` shards; a log of ``log_lines`` lines over
    ``distinct`` queries, of which the first ``ranked`` (in order of first appearance) are ranked by both sides,
    top ``k``; ``repeats`` runs of each side."""

    n_rows: int
    dim: int
    shards: int
    encoder: str
    log_lines: int
    distinct: int
    ranked: int
    k: int
    repeats: int

    @property
    def matrix_mib(self) -> float:
        return self.n_rows * self.dim * 2 / 2**20


FULL = Workload(1_000_000, 512, 10, "openclip:ViT-B-32@random", 100_000, 10_000, 1_000, 100, 3)
QUICK = Workload(20_000, 32, 2, "openclip:tiny-vit-s@random", 2_000, 200, 200, 100, 1)


@dataclass(frozen=True)
class ProcessRun:
    """One ``read`` or ``import`` process: seconds measured, peak resident memory and the baseline under it.

    Attributes:
        check_s, write_s: the import's two steps (``prepare`` reads and checks every row; ``write`` opens the
            store and writes, syncs and publishes the matrix and its rows); 0 for the NumPy read.
    """

    seconds: float
    rows: int
    base_rss_mib: float
    peak_rss_mib: float
    check_s: float = 0.0
    write_s: float = 0.0

    @property
    def above_base_mib(self) -> float:
        return self.peak_rss_mib - self.base_rss_mib


@dataclass(frozen=True)
class EstimateRun:
    """The estimate's process. ``level1_s`` and ``bare_s``: one per interleaved repeat, after a first estimate that
    encoded the queries (``text_encoding_s``, ``first_level1_s``). ``handed``, ``bare_handed``: the union of the
    ranked queries' top k by each side. Memory: the peak right after the first batch of queries was encoded
    (``text_peak_rss_mib``) and after the first estimate (``peak_rss_mib``), before any bare ranking ran."""

    queries: int
    distinct_queries: int
    handed: int
    bare_handed: int
    alpha: float
    text_encoding_s: float
    first_level1_s: float
    level1_s: tuple[float, ...]
    bare_s: tuple[float, ...]
    base_rss_mib: float
    text_peak_rss_mib: float
    peak_rss_mib: float


# ---------------------------------------------------------------- the workload, written


def _peak_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def read_with_numpy(src: Path) -> tuple[int, list]:
    """The reference read: every shard loaded whole (``np.load``), every metadata file read by pyarrow."""
    matrices = [np.load(path) for path in sorted((src / "img_emb").glob("img_emb_*.npy"))]
    tables = [pq.read_table(path, columns=["image_path"]) for path in sorted((src / "metadata").glob("*.parquet"))]
    rows = sum(len(matrix) for matrix in matrices)
    if rows != sum(table.num_rows for table in tables):
        raise RuntimeError(f"{src}: shards and metadata disagree on their rows")
    return rows, [*matrices, *tables]  # held until measured


def import_once(src: Path, name: str, encoder: BiEncoder, scratch: Path) -> dict[str, float]:
    """``cascade import-embeddings`` as its command runs it: ``prepare`` (every row checked), then ``write`` beside
    a fresh database (the store remembers reachable files' ids). The encoder is built already (the baseline)."""
    started = time.perf_counter()
    prepared = prepare(ImportRequest(src=str(src), encoder=name), create=lambda _: encoder)
    checked = time.perf_counter()
    with Store(scratch / "bench.duckdb") as store:
        result = write(prepared, imported_folder(store.path), known=store)
    done = time.perf_counter()
    return {"seconds": done - started, "check_s": checked - started, "write_s": done - checked, "rows": result.images}


class _Remembering:
    """Level 1's text tower, remembering each query's embedding: the bare side ranks the very same embeddings,
    and the estimate's repeats skip the tower. Notes the peak memory right after the first batch it encodes."""

    def __init__(self, encoder: BiEncoder) -> None:
        self.id, self.dim, self.image_macs, self._encoder = encoder.id, encoder.dim, encoder.image_macs, encoder
        self.embedded: dict[str, np.ndarray] = {}
        self.first_batch_peak_mib = 0.0

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        new = [text for text in texts if text not in self.embedded]
        if new:
            self.embedded.update(zip(new, np.asarray(self._encoder.encode_texts(new), dtype=np.float32)))
            self.first_batch_peak_mib = self.first_batch_peak_mib or _peak_mib()
        return np.stack([self.embedded[text] for text in texts])


def _keep(scores: np.ndarray, k: int) -> np.ndarray:
    """``(B, min(k, n))`` column positions of each row's ``k`` highest ``scores``, unordered."""
    if scores.shape[1] <= k:
        return np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    return np.argpartition(-scores, k - 1, axis=1)[:, :k]


def bare_top_k(files: Sequence[Path], embedded: np.ndarray, k: int, batch: int, block_rows: int) -> np.ndarray:
    """``(Q, k)`` rows of each query's top ``k``: the shards mapped (``np.load(mmap_mode="r")``), float16 to float32
    a block at a time, ``(B, d) @ (d, n)`` and ``np.argpartition``; no normalising, no checking."""
    out = []
    for begin in range(0, len(embedded), batch):
        queries, scores_kept, rows_kept, offset = embedded[begin : begin + batch], [], [], 0
        for path in files:
            shard = np.load(path, mmap_mode="r")
            for start in range(0, len(shard), block_rows):
                scores = queries @ np.asarray(shard[start : start + block_rows], dtype=np.float32).T
                keep = _keep(scores, k)
                scores_kept.append(np.take_along_axis(scores, keep, axis=1))
                rows_kept.append(keep + (offset + start))
            offset += len(shard)
        scores, rows = np.hstack(scores_kept), np.hstack(rows_kept)
        out.append(np.take_along_axis(rows, _keep(scores, k), axis=1))
    return np.vstack(out)


def _ranked_queries(log: Path, ranked: int) -> list[tuple[str, int]]:
    """The log's lines whose query is one of its first ``ranked`` distinct queries, as ``(query, count)``."""
    keep = set(distinct_queries(stream_query_log(log))[0][:ranked])
    return [(query, count) for query, count in stream_query_log(log) if query.strip() in keep]


def estimate_runs(src: Path, encoder: BiEncoder, log: Path, workload: Workload, base_mib: float) -> dict:
    """A first estimate (it encodes the queries; the estimate's own peak memory is read after it), then
    ``repeats`` interleaved pairs: the estimate's level 1 again, the bare ranking of the same embeddings."""
    source, queries, tower = detect(src), _ranked_queries(log, workload.ranked), _Remembering(encoder)
    k = workload.k
    profile, files = hardware_named(), sorted((src / "img_emb").glob("img_emb_*.npy"))

    def ours():
        return estimate(source, tower, (), (k,), queries, profile)

    first = ours()
    peak = _peak_mib()
    embedded = np.stack([tower.embedded[text] for text in distinct_queries(queries)[0]])
    level1, bare = [], []
    for _ in range(workload.repeats):
        level1.append(ours().level1_s)
        started = time.perf_counter()
        rows = bare_top_k(files, embedded, k, QUERY_BATCH, RANK_BLOCK_ROWS)
        bare.append(time.perf_counter() - started)
    measured = {name: getattr(first, name) for name in ("queries", "distinct_queries", "handed", "alpha")}
    measured |= {"text_encoding_s": first.text_encoding_s, "first_level1_s": first.level1_s, "level1_s": level1}
    measured |= {"bare_s": bare, "bare_handed": int(np.unique(rows).size), "base_rss_mib": base_mib}
    return measured | {"text_peak_rss_mib": tower.first_batch_peak_mib, "peak_rss_mib": peak}


def worker(kind: str, workload: Workload, src: Path, log: Path, scratch: Path) -> dict:
    """One measurement in this (fresh) process: ``read``, ``import`` or ``estimate``; its baseline first."""
    encoder = create_encoder(workload.encoder)
    encoder.encode_texts(["a photo"])  # the first call allocates the tower's buffers: part of the baseline
    base = _peak_mib()
    if kind == "estimate":
        return estimate_runs(src, encoder, log, workload, base)
    if kind == "read":
        started = time.perf_counter()
        rows, held = read_with_numpy(src)
        measured = {"seconds": time.perf_counter() - started, "rows": rows}
        del held
    else:
        measured = import_once(src, workload.encoder, encoder, scratch)
    return asdict(ProcessRun(**measured, base_rss_mib=base, peak_rss_mib=_peak_mib()))


def _in_subprocess(kind: str, workload: Workload, src: Path, log: Path, scratch: Path) -> dict:
    """``worker`` in a fresh Python process (its own peak memory), with this process's torch threads."""
    arguments = {"worker": kind, "workload": json.dumps(asdict(workload)), "src": src, "log": log, "scratch": scratch}
    arguments["threads"] = torch.get_num_threads()
    command = [sys.executable, "-m", "bench.imports", *(f"--{name}={value}" for name, value in arguments.items())]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"imports worker {kind} failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- the report


@dataclass(frozen=True)
class ImportsReport:
    """Both comparisons of one run; times are medians of the runs, ratios ours / reference."""

    workload: Workload
    reads: tuple[ProcessRun, ...]
    imports: tuple[ProcessRun, ...]
    estimate: EstimateRun
    write_s: float  # writing the workload (index and log), for context

    def comparisons(self) -> list[tuple[str, float, float, float]]:
        """``(what, ours, reference, target)``: medians of the runs; met when ``ours / reference <= target``."""
        median, e, matrix = statistics.median, self.estimate, self.workload.matrix_mib
        imported, read = (median(r.seconds for r in runs) for runs in (self.imports, self.reads))
        import_peak, estimate_peak = median(r.above_base_mib for r in self.imports), e.peak_rss_mib - e.base_rss_mib
        return [
            ("import, check + write (s) / NumPy reading the files", imported, read, TARGET_IMPORT),
            ("estimate's level 1 (s) / bare matmul + top-k", median(e.level1_s), median(e.bare_s), TARGET_LEVEL1),
            ("import's peak RSS above baseline (MiB) / the matrix", import_peak, matrix, TARGET_RSS),
            ("estimate's peak RSS above baseline (MiB) / the matrix", estimate_peak, matrix, TARGET_RSS),
        ]


def run(quick: bool = False) -> ImportsReport:
    """Write the workload in a temporary folder; import and read interleaved, then the estimate; a process each."""
    workload = QUICK if quick else FULL
    with tempfile.TemporaryDirectory(prefix="bench-imports-") as folder:
        src, log, scratch = Path(folder) / "index", Path(folder) / "queries.txt", Path(folder) / "db"
        started = time.perf_counter()
        write_index(src, workload.n_rows, workload.dim, workload.shards)
        write_log(log, workload.log_lines, workload.distinct)
        write_s = time.perf_counter() - started
        read_through(src)
        reads, imports = [], []
        for _ in range(workload.repeats):  # interleaved, so a slow moment of the machine hits both sides
            reads.append(ProcessRun(**_in_subprocess("read", workload, src, log, scratch)))
            scratch.mkdir()
            imports.append(ProcessRun(**_in_subprocess("import", workload, src, log, scratch)))
            shutil.rmtree(scratch)
        measured = _in_subprocess("estimate", workload, src, log, scratch)
    estimate = EstimateRun(**measured | {key: tuple(measured[key]) for key in ("level1_s", "bare_s")})  # JSON lists
    return ImportsReport(workload, tuple(reads), tuple(imports), estimate, write_s)


def _seconds(runs: Iterable[float]) -> str:
    return ", ".join(f"{s:.2f}" for s in runs)


def _workload_note(report: ImportsReport) -> str:
    w, e = report.workload, report.estimate
    tower = w.encoder.removeprefix("openclip:").replace("@random", " (random weights, the architecture's cost)")
    return (
        f"**Workload.** N = {w.n_rows:,} rows, d = {w.dim}, float16 ({w.matrix_mib:,.1f} MiB) in {w.shards} "
        f"clip-retrieval shards; `image_path` holds webdataset keys, so no file is reachable and every row keeps a "
        f"`path:` id. Log: {w.log_lines:,} lines over {w.distinct:,} distinct queries (Zipf-like repeats); both "
        f"sides rank its first {e.distinct_queries:,} distinct queries ({e.queries:,} lines), top {w.k}, in "
        f"batches of {QUERY_BATCH} queries over blocks of {RANK_BLOCK_ROWS:,} rows. Text tower: {tower}. "
        f"Workload written in {report.write_s:.0f} s."
    )


def _import_note(report: ImportsReport) -> str:
    imports, reads = report.imports, report.reads
    check_s, write_s = (statistics.median(getattr(r, step) for r in imports) for step in ("check_s", "write_s"))
    return (
        f"**Import** ({report.workload.repeats} run(s) of each side, interleaved, a fresh process each; page cache: "
        f"every file of the index read once before the first run, nothing dropped). Import runs "
        f"{_seconds(r.seconds for r in imports)} s (median check {check_s:.2f} s + write {write_s:.2f} s); NumPy "
        f"runs {_seconds(r.seconds for r in reads)} s, its peak RSS above baseline "
        f"{statistics.median(r.above_base_mib for r in reads):,.0f} MiB. The import reads each block twice (the check, "
        f"then the write: nothing is written before every row passed), copies rows that are unit vectors as they "
        f"are, and writes the matrix with plain writes and one fsync (its pages are the page cache's, not the "
        f"process's)."
    )


def _estimate_note(report: ImportsReport) -> str:
    w, e = report.workload, report.estimate
    return (
        f"**Estimate** (one process: a first estimate encoded the queries, then {w.repeats} interleaved pair(s)). "
        f"Text encoding of {e.distinct_queries:,} queries: {e.text_encoding_s:.1f} s (not in the ratio); the "
        f"first run's level 1: {e.first_level1_s:.2f} s; level-1 runs {_seconds(e.level1_s)} s, bare "
        f"{_seconds(e.bare_s)} s. alpha {e.alpha:.4f}: the union of the top {w.k} is {e.handed:,} rows (bare: "
        f"{e.bare_handed:,}; a random tower's embeddings of different texts lie close together, so their top k "
        f"overlap; the ranking costs the same). Peak RSS above baseline {e.peak_rss_mib - e.base_rss_mib:,.0f} MiB, "
        f"of which {e.text_peak_rss_mib - e.base_rss_mib:,.0f} MiB was reached by the end of the first batch's "
        f"text encoding (baseline {e.base_rss_mib:,.0f} MiB)."
    )


def markdown(report: ImportsReport) -> str:
    lines = ["| comparison | ours | reference | ratio | target | met |", "|---|---:|---:|---:|---:|---|"]
    for what, ours, reference, target in report.comparisons():
        ratio = ours / reference
        met = "yes" if ratio <= target else "NO"
        lines.append(f"| {what} | {ours:,.2f} | {reference:,.2f} | {ratio:.2f}x | <= {target:g}x | {met} |")
    return "\n".join([*lines, "", _workload_note(report), "", _import_note(report), "", _estimate_note(report)])


def summary(report: ImportsReport) -> list[tuple[str, str, str]]:
    """Three rows: the import's time, the estimate's level 1, both peaks of memory (each against its reference)."""
    (_, imported, read, _), (_, level1, bare, _), *memory = report.comparisons()
    w, matrix = report.workload, report.workload.matrix_mib
    index = f"a clip-retrieval index (N = {w.n_rows:,}, d = {w.dim}, float16)"
    peaks = ", ".join(
        f"{name} {ours / matrix:.2f}x ({ours:,.0f} MiB)"
        for name, (_, ours, _, _) in zip(("import", "estimate"), memory)
    )
    return [
        (
            f"Import of {index}: `cascade import-embeddings` (check + write) / NumPy reading the same files",
            f"{imported / read:.2f}x ({imported:.2f} s vs {read:.2f} s)",
            f"<= {TARGET_IMPORT:g}x",
        ),
        (
            f"Estimate on that index ({report.estimate.distinct_queries:,} distinct queries): level 1 / bare batched "
            f"matmul + top-k",
            f"{level1 / bare:.2f}x ({level1:.2f} s vs {bare:.2f} s)",
            f"<= {TARGET_LEVEL1:g}x",
        ),
        (f"Peak RSS above the process's baseline / the matrix ({matrix:,.0f} MiB)", peaks, f"<= {TARGET_RSS:g}x"),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.imports", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--worker", choices=("read", "import", "estimate"), help="measure one side here, as JSON")
    parser.add_argument("--workload", type=lambda text: Workload(**json.loads(text)), default=FULL)
    parser.add_argument("--src", type=Path, help="the clip-retrieval index")
    parser.add_argument("--log", type=Path, help="the query log")
    parser.add_argument("--scratch", type=Path, help="a folder for the import's database")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(worker(args.worker, args.workload, args.src, args.log, args.scratch)))
        return 0
    report = run(args.quick)
    print(markdown(report))
    for name, result, target in summary(report):
        print(f"- {name}: {result} (target {target})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
