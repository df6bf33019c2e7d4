"""What ``bench.index`` reports: its rows, one table per N, and the summary lines (the page's first table).

Both kinds of queries share one table per N (a ``queries`` column): exact float32 is one matmul
whatever the query, so its one timing is the reference of every row at that N.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cascade.index import parse_index

K, K_WIDE = 50, 100  # the recall columns: k_1 = 50 (latency too) and 100
IN_DISTRIBUTION, ACROSS_GAP = "in-distribution", "across the gap"
TARGET_RECALL, TARGET_SPEEDUP, TARGET_AUTO = 0.98, 20.0, 1.5


@dataclass(frozen=True)
class IndexRow:
    """One level-1 method at one N: median single-query latency at K, recall@K and @K_WIDE against exact float32.

    Attributes:
        build_s: the build's seconds (the same on every row of one FAISS build).
        queries: ``IN_DISTRIBUTION``, ``ACROSS_GAP`` or a real set's kind.
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
    recall_wide: float = float("nan")
    gallery: str = ""  # "" for the clustered generator's, else the real set's name (``SizeInfo.gallery``)


@dataclass(frozen=True)
class SizeInfo:
    """One N: the floor, the process's peak RSS once its rows were measured, the methods skipped there.

    Attributes:
        target_ranks: per kind of queries with targets, the exact rank of each query's target: (median, 90th,
            99th percentile, share ranked first).
        gallery, title: the real set's name and what its gallery and queries are; "" for the clustered generator's.
    """

    n_images: int
    floor_ms: float  # the float32 matrix's bytes / measured read bandwidth
    bandwidth_gb_s: float
    peak_rss_mib: float
    skipped: tuple[str, ...] = ()
    target_ranks: tuple[tuple[str, tuple[float, ...]], ...] = ()
    gallery: str = ""
    title: str = ""


@dataclass(frozen=True)
class AutoCheck:
    """``--index auto`` at N on the gap queries, gate TARGET_RECALL at k_1 = K: its line, its pick timed as the rows
    are, the seconds it took to measure its candidates, and the fastest row reaching the target ("" when none)."""

    n_images: int
    line: str
    spec: str
    recall: float
    query_ms: float
    measure_s: float
    fastest: str
    fastest_ms: float


@dataclass(frozen=True)
class IndexReport:
    rows: tuple[IndexRow, ...]
    sizes: tuple[SizeInfo, ...]
    auto: AutoCheck | None = None


def markdown(report: IndexReport) -> str:
    lines = []
    for info in report.sizes:
        rows = rows_of(report, info)
        exact = rows[0]
        lines += [
            _size_paragraph(info, exact),
            "",
            f"| level 1 | queries | N | query (ms, median, k = {K}) | vs exact float32 "
            f"| recall@{K} vs exact | recall@{K_WIDE} | memory (MiB) | build (s) |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in rows:
            lines.append(
                f"| `{row.method}` | {row.queries} | {row.n_images:,} | {row.query_ms:.2f} | "
                f"{exact.query_ms / row.query_ms:.1f}x faster | {row.recall:.3f} | {row.recall_wide:.3f} | "
                f"{row.memory_mib:,.0f} | {row.build_s:.0f} |"
            )
        lines.append("")
        if report.auto is not None and report.auto.n_images == info.n_images and not info.gallery:
            lines += [_auto_paragraph(report.auto, exact), ""]
    lines.append(
        "The rows of one FAISS build at one N share that build; they differ only in the search parameter, the "
        "re-ranked shortlist and the queries. Exact float32 is one matmul whatever the query: timed once per N, "
        "the reference of every kind."
    )
    return "\n".join(lines) + "\n"


def rows_of(report: IndexReport, info: SizeInfo) -> list[IndexRow]:
    """The rows measured on ``info``'s gallery, exact float32 first."""
    return [r for r in report.rows if r.n_images == info.n_images and r.gallery == info.gallery]


def _auto_paragraph(auto: AutoCheck, exact: IndexRow) -> str:
    against = (
        f"{auto.query_ms / auto.fastest_ms:.2f}x the latency of the fastest row reaching {TARGET_RECALL} across the "
        f"gap, `{auto.fastest}` ({auto.fastest_ms:.2f} ms)"
        if auto.fastest
        else f"no row reached {TARGET_RECALL} across the gap"
    )
    return (
        f"**`--index auto` at N = {auto.n_images:,}**, gate recall@{K} {TARGET_RECALL} on the gap queries "
        f'({auto.measure_s:.0f} s measuring its candidates, the builds above loaded): "{auto.line}". Its pick '
        f"answers in {auto.query_ms:.2f} ms ({exact.query_ms / auto.query_ms:.1f}x faster than exact float32): "
        f"{against}."
    )


def _size_paragraph(info: SizeInfo, exact: IndexRow) -> str:
    text = f"**N = {info.n_images:,}**" + (f", {info.title}." if info.title else ".")
    text += (
        f" Memory read bandwidth {info.bandwidth_gb_s:.1f} GB/s: reading the float32 "
        f"matrix once takes {info.floor_ms:.0f} ms (the floor); exact float32 takes "
        f"{exact.query_ms / info.floor_ms:.2f}x that. Peak RSS of the process: {info.peak_rss_mib:,.0f} MiB."
    )
    for kind, (median, p90, p99, first) in info.target_ranks:
        text += (
            f" Queries {kind}: exact search ranks the target first for {100 * first:.0f}% of them "
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
    reaching the recall target (or its best, when none does), across the gap the fastest of all; what was skipped;
    ``auto`` against the fastest setting reaching the target."""
    out = []
    for info in report.sizes:
        rows = rows_of(report, info)
        exact, n = rows[0], f"N = {info.n_images:,}" + (f" ({info.gallery}, real captions)" if info.gallery else "")
        if not info.gallery:
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
    if report.auto is not None:
        auto = report.auto
        result = (
            f"`{auto.spec}` ({auto.recall:.3f}), {auto.query_ms:.2f} ms: {auto.query_ms / auto.fastest_ms:.2f}x "
            f"`{auto.fastest}` ({auto.fastest_ms:.2f} ms)"
            if auto.fastest
            else f"`{auto.spec}` ({auto.recall:.3f}), {auto.query_ms:.2f} ms; no row reached {TARGET_RECALL}"
        )
        out.append((f"`--index auto` at N = {auto.n_images:,} across the gap, gate {TARGET_RECALL}: its pick's "
                    "latency / the fastest setting reaching the gate", result, f"<= {TARGET_AUTO}x"))  # fmt: skip
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
