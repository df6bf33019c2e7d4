"""The query log: ``Store.record`` against its floor and against the schema-1 log, in one run.

Every logged query pays ``Store.record`` on top of its search (target: under 2 ms).
Three writers take turns record by record, each into its own DuckDB file: the
store (schema 2: one single-row INSERT, per-level rows in a JSON column), the
schema-1 log it replaced (a transaction of two INSERTs: the queries row with a
sequence id and a primary key, then one query_levels row per level; its
statements are kept here verbatim, run on a copy of the v1 test fixture), and
the floor: a plain ``INSERT`` of one two-column row. Each record is a
two-level search (k = 100 -> 10).

    python -m bench.query_log [--quick]
"""

from __future__ import annotations

import gzip
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np

from analysis.store import Store
from bench import section_main
from bench.query_path import QUERIES, _logged_result
from cascade.types import SearchResult

V1_FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "data" / "store_v1.duckdb.gz"
N_IMAGES = 100_000


@dataclass(frozen=True)
class LogWriter:
    """One writer's times per record (ms)."""

    name: str
    median_ms: float
    p95_ms: float


@dataclass(frozen=True)
class QueryLogReport:
    records: int
    writers: tuple[LogWriter, ...]  # store (schema 2), schema 1, plain INSERT

    def writer(self, name: str) -> LogWriter:
        return next(w for w in self.writers if w.name == name)


def _record_v1(con: duckdb.DuckDBPyConnection, result: SearchResult, corpus_id: str, corpus_size: int) -> None:
    """``Store.record`` of schema 1 (commit 2eb34ec), verbatim but for the connection."""
    first = result.levels[0]
    levels = [
        [i, t.encoder, t.k, t.candidates, t.hits, t.misses, t.macs_per_image, t.image_macs, t.text_macs,
         t.latency_ms]
        for i, t in enumerate(result.levels, start=1)
    ]  # fmt: skip
    con.execute("BEGIN TRANSACTION")
    query_id = con.execute(
        "INSERT INTO queries VALUES (nextval('query_seq'), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING query_id",
        [
            datetime.now(UTC).replace(tzinfo=None), result.config.key, list(result.config.levels),
            list(result.config.ks), corpus_id, corpus_size, result.query, corpus_size * first.macs_per_image,
            result.image_macs, result.text_macs, result.latency_ms,
        ],
    ).fetchone()[0]  # fmt: skip
    row = "(" + ", ".join(["?"] * 11) + ")"
    con.execute(
        f"INSERT INTO query_levels VALUES {', '.join([row] * len(levels))}",
        [value for level in levels for value in (query_id, *level)],
    )
    con.execute("COMMIT")


def _elapsed_ms(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000.0


def run(quick: bool = False, n_records: int | None = None) -> QueryLogReport:
    """The three writers interleaved record by record (quick: 60 records, else 400), after 10 warm-up records each."""
    n_records = n_records or (60 if quick else 400)
    results = [_logged_result(query, N_IMAGES) for query in QUERIES]
    warmup = 10
    times: dict[str, list[float]] = {"Store.record (schema 2)": [], "schema 1 record": [], "plain INSERT": []}
    with tempfile.TemporaryDirectory() as folder:
        v1_path = Path(folder) / "v1.duckdb"
        with gzip.open(V1_FIXTURE, "rb") as packed, open(v1_path, "wb") as out:
            shutil.copyfileobj(packed, out)
        v1, plain = duckdb.connect(str(v1_path)), duckdb.connect(str(Path(folder) / "plain.duckdb"))
        plain.execute("CREATE TABLE t (id BIGINT, query VARCHAR)")
        with Store(Path(folder) / "v2.duckdb") as store:
            for i in range(warmup + n_records):
                result = results[i % len(results)]
                writers = {
                    "Store.record (schema 2)": lambda r=result: store.record(r, "bench-corpus", N_IMAGES),
                    "schema 1 record": lambda r=result: _record_v1(v1, r, "bench-corpus", N_IMAGES),
                    "plain INSERT": lambda r=result, i=i: plain.execute("INSERT INTO t VALUES (?, ?)", [i, r.query]),
                }
                names = list(writers)
                for name in names[i % 3 :] + names[: i % 3]:  # each writer goes first, second, third in turn
                    elapsed = _elapsed_ms(writers[name])
                    if i >= warmup:
                        times[name].append(elapsed)
            logged = store.frame("SELECT count(*) AS n FROM queries")["n"][0]
        v1.close()
        plain.close()
    if logged != warmup + n_records:
        raise RuntimeError(f"logged {logged} queries for {warmup + n_records} records")
    writers = tuple(LogWriter(name, statistics.median(t), float(np.percentile(t, 95))) for name, t in times.items())
    return QueryLogReport(records=n_records, writers=writers)


def markdown(report: QueryLogReport) -> str:
    floor = report.writer("plain INSERT").median_ms
    lines = ["| writer | median (ms) | p95 (ms) | median / plain INSERT |", "|---|---:|---:|---:|"]
    for w in report.writers:
        lines.append(f"| {w.name} | {w.median_ms:.2f} | {w.p95_ms:.2f} | {w.median_ms / floor:.2f}x |")
    return "\n".join(lines) + f"\n\n{report.records} records per writer, interleaved."


def main(argv: Sequence[str] | None = None) -> int:
    return section_main("query_log", __doc__, run, markdown, argv)


if __name__ == "__main__":
    sys.exit(main())
