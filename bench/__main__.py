"""``python -m bench``: run every benchmark and write docs/benchmarks.md.

    python -m bench                 # everything (about 45 minutes on 2 cores, and an hour for index-scale at 10M)
    python -m bench --quick         # a smoke run: every code path, small sizes (about 2 minutes)
    python -m bench --only crisp,lifetime --out /tmp/bench.md
    python -m bench --only index,ray --merge   # re-run two sections, keep the page's others as they were

Each section runs in turn; one that fails is reported in the page (and makes
the exit code 1) without stopping the others. Results are ratios and medians
of interleaved measurements taken in one run: on a shared machine absolute
times move from run to run, ratios much less.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench import (
    build_path,
    crisp,
    evaluation,
    index_cascade,
    index_scale,
    lifetime,
    load,
    query_log,
    query_path,
    ray_engine,
)
from bench import imports as imports_bench
from bench import index as index_bench
from bench import page as bench_page
from bench import space as space_bench

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


@dataclass(frozen=True)
class Section:
    """A benchmark: its title, what it measures, how to run it, its table, its lines in the summary."""

    key: str
    title: str
    intro: str
    run: Callable[[bool], object]
    markdown: Callable[[object], str]
    summary: Callable[[object], list[tuple[str, str, str]]]  # (benchmark, result, target) rows


def _query_summary(report: query_path.QueryPathReport) -> list[tuple[str, str, str]]:
    rows = [(f"Warm query, N = {r.n_images:,} ({r.storage}, {r.text_tower} text): overhead over bare "
             f"text-encode + matmul + top-k", f"{100 * r.overhead:+.0f}%", "< 30%")
            for r in report.rows]  # fmt: skip
    rows.append(("Query log: `Store.record` per query (median / p95)",
                 f"{report.log.median_ms:.2f} / {report.log.p95_ms:.2f} ms", "< 2 ms"))  # fmt: skip
    return rows


def _log_summary(report: query_log.QueryLogReport) -> list[tuple[str, str, str]]:
    store, v1, floor = (report.writer(name) for name in ("Store.record (schema 2)", "schema 1 record", "plain INSERT"))
    return [("Query log: `Store.record` per query (median / p95; schema 1 and a plain one-row INSERT in the same run)",
             f"{store.median_ms:.2f} / {store.p95_ms:.2f} ms ({v1.median_ms / store.median_ms:.1f}x faster than "
             f"schema 1's {v1.median_ms:.2f}; {store.median_ms / floor.median_ms:.2f}x the INSERT's "
             f"{floor.median_ms:.2f})", "< 2 ms")]  # fmt: skip


def _build_summary(report: build_path.BuildPathReport) -> list[tuple[str, str, str]]:
    rows = [(f"Build: {r.encoder} on {r.images}, folder throughput / bare forward", f"{100 * r.ratio:.0f}%", ">= 85%")
            for r in report.rows]  # fmt: skip
    return rows + [("Build", f"skipped: {reason}", "") for reason in report.skipped]


def _lifetime_summary(rows: Sequence[lifetime.LifetimeRow]) -> list[tuple[str, str, str]]:
    return [(f"Lifetime, {r.workload} replay ({r.queries:,} queries, alpha {r.alpha:.2f}): {lifetime.LARGE} alone / "
             f"cascade", f"{r.macs_reduction:.2f}x MACs, {r.wall_reduction:.2f}x wall time", "")
            for r in rows]  # fmt: skip


def _crisp_summary(report: crisp.CrispReport) -> list[tuple[str, str, str]]:
    rows = [(f"CrispSearch, {crisp.short_id(r.bi_encoder)} top-{r.k} -> {crisp.short_id(r.cross_encoder)} vs cross "
             f"alone (N = {r.n_images:,})", f"{r.macs_speedup:.1f}x MACs, {r.wall_speedup:.1f}x wall; R@10 "
             f"{r.cascade_recall_subset[-1]:.1f} vs {r.alone_recall_subset[-1]:.1f}", "")
            for r in report.shapes]  # fmt: skip
    rows += [(f"CrispSearch, BLIP {m.bi_encoder} top-{m.k} -> {m.cross_encoder} (N = {m.n_images:,}, from the "
              f"architectures)", f"{m.macs_speedup:.1f}x MACs", "")
             for m in report.blip if m.n_images == 5_000 and m.k == 128]  # fmt: skip
    if report.skipped:
        rows.append(("CrispSearch on the shapes world", f"skipped: {report.skipped}", ""))
    return rows


def _load_summary(rows: Sequence[load.LoadRow]) -> list[tuple[str, str, str]]:
    return [(f"Load: {row.clients} gradio_client users, {row.duration_s:.0f} s, {row.torch_threads} torch thread(s) "
             "per search", f"p50 {row.p50_ms:.0f} ms, p95 {row.p95_ms:.0f} ms, {row.errors} errors, logged exactly "
             f"once: {'yes' if row.logged_once else 'NO'}", "0 errors")
            for row in rows]  # fmt: skip


def _evaluation_summary(rows: Sequence[evaluation.EvaluationRow]) -> list[tuple[str, str, str]]:
    equal = "yes" if all(r.rows_equal for r in rows) else "NO"
    batched = sum(r.batched_s for r in rows)
    return [(f"Evaluation: the shapes preset's {len(rows)} comparisons ({rows[0].n_queries:,} captions), whole run "
             f"against the {evaluation.FILED_S:.0f} s measured when issue 14 was filed",
             f"{batched:.0f} s ({evaluation.FILED_S / batched:.1f}x faster); level 1 batched vs one search per query "
             f"in this run: {evaluation.total_speedup(rows):.2f}x; rows equal: {equal}",
             ">= 3x, equal rows")]  # fmt: skip


SECTIONS: tuple[Section, ...] = (
    Section("query", "Query path", query_path.__doc__.split("\n\n")[1], query_path.run, query_path.markdown,
            _query_summary),
    Section("log", "Query log", query_log.__doc__.split("\n\n")[1], query_log.run, query_log.markdown, _log_summary),
    Section("build", "Build path", build_path.__doc__.split("\n\n")[1], build_path.run, build_path.markdown,
            _build_summary),
    Section("lifetime", "Lifetime", lifetime.__doc__.split("\n\n")[1], lifetime.run, lifetime.markdown,
            _lifetime_summary),
    Section("crisp", "CrispSearch", crisp.__doc__.split("\n\n")[1], crisp.run, crisp.markdown, _crisp_summary),
    Section("evaluation", "Evaluation", evaluation.__doc__.split("\n\n")[1], evaluation.run, evaluation.markdown,
            _evaluation_summary),
    Section("index", "Level-1 index", index_bench.__doc__.split("\n\n")[1], index_bench.run, index_bench.markdown,
            index_bench.summary),
    Section("index-scale", "Level 1 at ten million", index_scale.__doc__.split("\n\n")[1], index_scale.run,
            index_scale.markdown, index_scale.summary),
    Section("index-cascade", "Level-1 index in the cascade", index_cascade.__doc__.split("\n\n")[1], index_cascade.run,
            index_cascade.markdown, index_cascade.summary),
    Section("ray", "Ray build", ray_engine.__doc__.split("\n\n")[1], ray_engine.run, ray_engine.markdown,
            ray_engine.summary),
    Section("load", "Load", load.__doc__.split("\n\n")[1], load.run, load.markdown, _load_summary),
    Section("imports", "Existing CLIP index", imports_bench.__doc__.split("\n\n")[1], imports_bench.run,
            imports_bench.markdown, imports_bench.summary),
    Section("space", "The Space's start", space_bench.__doc__.split("\n\n")[1], space_bench.run,
            space_bench.markdown, space_bench.summary),
)  # fmt: skip


@dataclass
class Outcome:
    section: Section
    seconds: float
    result: object = None
    error: str = ""
    started: datetime | None = None  # UTC
    load_average: float = 0.0  # the 1-minute load average when the section started


def run_sections(sections: Sequence[Section], quick: bool) -> list[Outcome]:
    outcomes = []
    for section in sections:
        print(f"bench: {section.title} ...", file=sys.stderr, flush=True)
        when, load_average = datetime.now(UTC), os.getloadavg()[0]
        started = time.perf_counter()
        try:
            result, error = section.run(quick), ""
        except Exception as err:  # noqa: BLE001  (one failed section must not lose the others' results)
            traceback.print_exc()
            result, error = None, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        seconds = time.perf_counter() - started
        print(f"bench: {section.title} done in {seconds:.0f} s{' (FAILED)' if error else ''}", file=sys.stderr)
        outcomes.append(Outcome(section, seconds, result, error, when, load_average))
    return outcomes


def blocks(outcomes: Sequence[Outcome], quick: bool) -> list[bench_page.Block]:
    """Each outcome as the page shows it: its table, its summary rows, when and how it was measured."""
    import torch

    out = []
    for o in outcomes:
        measured = bench_page.measured_line(o.started or datetime.now(UTC), quick, o.load_average,
                                            torch.get_num_threads(), o.seconds)  # fmt: skip
        body = "" if o.error else o.section.markdown(o.result)
        rows = () if o.error else tuple(o.section.summary(o.result))
        out.append(bench_page.Block(o.section.title, o.section.intro, body, rows, measured, o.error))
    return out


def header(quick: bool, load_before: float, merged: Sequence[str] = ()) -> list[str]:
    """The page's first lines: what generated it and on what; for a merge, which sections it re-ran."""
    import torch

    if merged:
        run = (f"Merged {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: re-ran {', '.join(merged)} (`--merge`); the other "
               "sections are from earlier runs. Each section says when it was measured, at its end.")  # fmt: skip
    else:
        mode = "--quick (smoke run: small sizes, few repeats; not for quoting)" if quick else "full"
        run = f"Run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, mode {mode}; load average {load_before:.1f} at the start."
    return [
        "# Benchmarks",
        "",
        "Generated by `python -m bench` (`bash dev.sh bench`); do not edit by hand.",
        "",
        f"{run} {os.cpu_count()} CPU cores; Python {platform.python_version()}, torch {torch.__version__}, torch "
        f"intra-op threads: {torch.get_num_threads()} (`--threads`).",
        "",
        "How to read it: the machine is shared and noisy, so every comparison interleaves its two sides in one "
        "run and reports medians and ratios; absolute times are context, not results.",
    ]


def page(outcomes: Sequence[Outcome], quick: bool, load_before: float) -> str:
    """The whole markdown page: how it was measured, the summary table, one section per benchmark."""
    return bench_page.render(header(quick, load_before), blocks(outcomes, quick))


def merged_page(old: str, outcomes: Sequence[Outcome], quick: bool) -> str:
    """``old`` with the sections of ``outcomes`` re-measured, every other section kept as it was."""
    titles = [o.section.title for o in outcomes]
    return bench_page.merge(
        old, header(quick, 0.0, titles), blocks(outcomes, quick), f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: small sizes, few repeats")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown file to write (default: %(default)s)")
    parser.add_argument("--only", help=f"comma-separated sections: {', '.join(s.key for s in SECTIONS)}")
    parser.add_argument("--merge", action="store_true",
                        help="rewrite only the sections run, and their summary rows, in the --out page")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s; 0: one per core)")
    args = parser.parse_args(argv)
    if args.threads:
        # One thread by default: on a shared machine torch's per-core OpenMP threads wait on each
        # other whenever another process holds a core, and small forward passes slow down many-fold.
        import torch

        torch.set_num_threads(args.threads)
    wanted = [key.strip() for key in args.only.split(",")] if args.only else [s.key for s in SECTIONS]
    unknown = set(wanted) - {s.key for s in SECTIONS}
    if unknown:
        parser.error(f"unknown section(s) {', '.join(sorted(unknown))}; sections: {', '.join(s.key for s in SECTIONS)}")
    old = args.out.read_text() if args.merge and args.out.is_file() else None
    if old is not None:
        try:
            bench_page.parse(old)  # before hours of measuring, not after
        except bench_page.PageError as err:
            parser.error(f"cannot merge into {args.out}: {err}")
    load_before = os.getloadavg()[0]
    outcomes = run_sections([s for s in SECTIONS if s.key in wanted], quick=args.quick)
    text = page(outcomes, args.quick, load_before) if old is None else merged_page(old, outcomes, args.quick)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"bench: {'merged into' if old is not None else 'wrote'} {args.out}", file=sys.stderr)
    return 1 if any(outcome.error for outcome in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
