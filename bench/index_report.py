"""What ``bench.index`` reports: its rows, one table per N, and the summary lines (the page's first table).

Both kinds of queries share one table per N (a ``queries`` column): exact float32 is one matmul
whatever the query, so its one timing is the reference of every row at that N.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cascade.index import parse_index

K = 50
IN_DISTRIBUTION, ACROSS_GAP = "in-distribution", "across the gap"
TARGET_RECALL, TARGET_SPEEDUP = 0.98, 20.0


@dataclass(frozen=True)
class IndexRow:
    """One level-1 method at one N: median single-query latency, recall@K against exact float32.

    Attributes:
        build_s: the build's seconds (the same on every row of one FAISS build).
        queries: ``IN_DISTRIBUTION`` or ``ACROSS_GAP``.
        build: the FAISS build the row searched (``Sweep.label``); "" for exact rows.
    """

    method: str
    n_images: int
    query_ms: float
    recall: float
    memory_mib: float
    build_s: float
    queries: str = IN_DISTRIBUTION
    build: str = ""


@dataclass(frozen=True)
class SizeInfo:
    """One N: the floor, the process's peak RSS once its rows were measured, the methods skipped there."""

    n_images: int
    floor_ms: float  # the float32 matrix's bytes / measured read bandwidth
    bandwidth_gb_s: float
    peak_rss_mib: float
    skipped: tuple[str, ...] = ()
    gap_ranks: tuple[float, ...] = ()  # exact rank of a gap query's target: median, 90th, 99th percentile, share 1st


@dataclass(frozen=True)
class IndexReport:
    rows: tuple[IndexRow, ...]
    sizes: tuple[SizeInfo, ...]


def markdown(report: IndexReport) -> str:
    lines = []
    for info in report.sizes:
        rows = [r for r in report.rows if r.n_images == info.n_images]
        exact = rows[0]
        lines += [
            _size_paragraph(info, exact),
            "",
            "| level 1 | queries | N | query (ms, median) | vs exact float32 "
            "| recall@50 vs exact | memory (MiB) | build (s) |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for row in rows:
            lines.append(
                f"| `{row.method}` | {row.queries} | {row.n_images:,} | {row.query_ms:.2f} | "
                f"{exact.query_ms / row.query_ms:.1f}x faster | {row.recall:.3f} | {row.memory_mib:,.0f} | "
                f"{row.build_s:.0f} |"
            )
        lines.append("")
    lines.append(
        "The rows of one FAISS build at one N share that build; they differ only in the search parameter and the "
        "queries. Exact float32 is one matmul whatever the query: timed once per N, the reference of both kinds."
    )
    return "\n".join(lines) + "\n"


def _size_paragraph(info: SizeInfo, exact: IndexRow) -> str:
    text = (
        f"**N = {info.n_images:,}.** Memory read bandwidth {info.bandwidth_gb_s:.1f} GB/s: reading the float32 "
        f"matrix once takes {info.floor_ms:.0f} ms (the floor); exact float32 takes "
        f"{exact.query_ms / info.floor_ms:.2f}x that. Peak RSS of the process: {info.peak_rss_mib:,.0f} MiB."
    )
    if info.gap_ranks:
        median, p90, p99, first = info.gap_ranks
        text += (
            f" Queries across the gap: exact search ranks the target first for {100 * first:.0f}% of them "
            f"(median rank {median:.0f}, 90th percentile {p90:.0f}, 99th {p99:.0f})."
        )
    if info.skipped:
        text += f" Skipped at this N (`--skip-at`): {', '.join(f'`{s}`' for s in info.skipped)}."
    return text


def _factory(row: IndexRow) -> str:
    """The FAISS build a row searched (its factory, for rows that predate build labels)."""
    return row.build or (parse_index(row.method).factory if row.method.startswith("faiss:") else row.method)


def best_of_sweep(rows: Sequence[IndexRow]) -> tuple[IndexRow | None, IndexRow]:
    """(the first row, in sweep order, reaching TARGET_RECALL, or None; the row of highest recall)."""
    reached = next((r for r in rows if r.recall >= TARGET_RECALL), None)
    return reached, max(rows, key=lambda r: r.recall)


def summary(report: IndexReport) -> list[tuple[str, str, str]]:
    """Per N: exact against the floor, float16 against float32; per kind of queries, each build's cheapest setting
    reaching the recall target (or its best, when none does), across the gap the fastest of all; what was skipped."""
    out = []
    for info in report.sizes:
        rows = [r for r in report.rows if r.n_images == info.n_images]
        exact, n = rows[0], f"N = {info.n_images:,}"
        out.append(
            (
                f"Level 1, exact float32 at {n}: query time / time to read the matrix once",
                f"{exact.query_ms / info.floor_ms:.2f}x",
                "<= 1.5x",
            )
        )
        out += [
            (
                f"Level 1, exact float16 at {n}: speed vs exact float32, recall@50",
                f"{exact.query_ms / r.query_ms:.1f}x, {r.recall:.3f}",
                "<= 1.2x the float32 time",
            )
            for r in rows
            if r.method == "exact float16" and r.queries == IN_DISTRIBUTION
        ]
        for kind in dict.fromkeys(r.queries for r in rows):
            out += _build_lines([r for r in rows if r.queries == kind], exact, n, kind)
        if info.skipped:
            out.append((f"Level 1 at {n}", f"skipped (`--skip-at`): {', '.join(info.skipped)}", ""))
    return out


def _build_lines(rows: Sequence[IndexRow], exact: IndexRow, n: str, kind: str) -> list[tuple[str, str, str]]:
    """One line per FAISS build for one kind of queries; across the gap, the fastest setting reaching the target."""
    name = "Level 1" if kind == IN_DISTRIBUTION else f"Level 1 {kind}"
    out = []
    for factory in dict.fromkeys(_factory(r) for r in rows if r.method.startswith("faiss:")):
        sweep = [r for r in rows if _factory(r) == factory]
        reached, best = best_of_sweep(sweep)
        if reached is not None:
            result = (
                f"`{reached.method}`: {exact.query_ms / reached.query_ms:.1f}x faster, recall@50 "
                f"{reached.recall:.3f} (the smallest setting tried reaching {TARGET_RECALL})"
            )
        else:
            result = (
                f"none of {len(sweep)} settings reached {TARGET_RECALL}; best `{best.method}`: "
                f"{exact.query_ms / best.query_ms:.1f}x faster, recall@50 {best.recall:.3f}"
            )
        target = (
            f">= {TARGET_SPEEDUP:.0f}x at >= {TARGET_RECALL}" if "HNSW" in factory and kind == IN_DISTRIBUTION else ""
        )
        out.append((f"{name}, `faiss:{factory}` at {n} (one build): speed vs exact float32, recall@50", result, target))
    if kind == ACROSS_GAP:
        passing = [r for r in rows if r.recall >= TARGET_RECALL and r.method != "exact float32"]
        fastest = min(passing, key=lambda r: r.query_ms, default=None)
        result = (
            f"`{fastest.method}`: {exact.query_ms / fastest.query_ms:.1f}x faster, recall@50 {fastest.recall:.3f}"
            if fastest is not None
            else f"no setting reached {TARGET_RECALL}"
        )
        out.append(
            (
                f"{name} at {n}: the fastest setting reaching recall@50 {TARGET_RECALL}",
                result,
                f">= {TARGET_SPEEDUP:.0f}x at >= {TARGET_RECALL}",
            )
        )
    return out
