"""The benchmarks page (bench/page.py): a merge replaces the re-run sections and keeps the others verbatim."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bench import page

HEADER = ["# Benchmarks", "", "Run: then."]


def block(title: str, value: str, measured: str = "_Measured then._", error: str = "", rows: int = 1) -> page.Block:
    return page.Block(title=title, intro=f"What {title} measures.", body=f"| x |\n|---|\n| {value} |",
                      rows=tuple((f"{title} row {i}", value, "") for i in range(rows)), measured=measured,
                      error=error)  # fmt: skip


def sections(text: str) -> list[str]:
    return [line[3:] for line in text.splitlines() if line.startswith("## ")]


def test_merge_replaces_one_section_and_its_rows_and_keeps_the_others_verbatim():
    old = page.render(HEADER, [block("Alpha", "1", rows=2), block("Level-1 index", "2"), block("Gamma", "3")])
    merged = page.merge(
        old, ["# Benchmarks", "", "Merged now."], [block("Level-1 index", "20", "_Measured now._")], "now"
    )
    # Hand-written expectation of the summary table: Alpha's two rows and Gamma's untouched, the index row new.
    table = merged.split("| benchmark | result | target | section |\n|---|---|---|---|\n")[1].split("\n\n")[0]
    assert table.splitlines() == [
        "| Alpha row 0 | 1 |  | [Alpha](#alpha) |",
        "| Alpha row 1 | 1 |  | [Alpha](#alpha) |",
        "| Level-1 index row 0 | 20 |  | [Level-1 index](#level-1-index) |",
        "| Gamma row 0 | 3 |  | [Gamma](#gamma) |",
    ]
    assert sections(merged) == ["Alpha", "Level-1 index", "Gamma"]
    assert "| 20 |" in merged and "| 2 |" not in merged and "_Measured now._" in merged
    old_blocks, new_blocks = page.parse(old).blocks, page.parse(merged).blocks
    assert new_blocks["Alpha"] == old_blocks["Alpha"] and new_blocks["Gamma"] == old_blocks["Gamma"]
    assert merged.startswith("# Benchmarks\n\nMerged now.\n")


def test_merge_appends_a_new_section_and_a_failed_rerun_keeps_the_previous_figures_flagged():
    old = page.render(HEADER, [block("Alpha", "1"), block("Beta", "2")])
    merged = page.merge(old, HEADER, [block("Beta", "", error="RuntimeError: boom"), block("Delta", "4")], "today")
    assert sections(merged) == ["Alpha", "Beta", "Delta"]
    beta = page.parse(merged).blocks["Beta"]
    assert (
        beta.splitlines()[2] == "_Re-run today FAILED (RuntimeError: boom); the figures below are the previous run's._"
    )
    assert "| 2 |" in beta and "_Measured then._" in beta  # the old figures and their date survive
    assert page.parse(merged).rows["Beta"] == ["| Beta row 0 | 2 |  | [Beta](#beta) |"]
    assert page.parse(merged).rows["Delta"] == ["| Delta row 0 | 4 |  | [Delta](#delta) |"]


def test_merging_twice_is_the_same_as_merging_once():
    old = page.render(HEADER, [block("Alpha", "1"), block("Beta", "2")])
    once = page.merge(old, HEADER, [block("Beta", "9")], "now")
    assert page.merge(once, HEADER, [block("Beta", "9")], "now") == once


def test_a_page_without_the_section_column_is_refused_with_one_line():
    legacy = "# Benchmarks\n\n| benchmark | result | target |\n|---|---|---|\n| a | b | c |\n\n## Alpha\n\nx\n"
    with pytest.raises(page.PageError, match="predates --merge"):
        page.merge(legacy, HEADER, [block("Alpha", "1")], "now")


def test_measured_line_and_anchor():
    line = page.measured_line(datetime(2026, 12, 1, 9, 7, tzinfo=UTC), False, 0.34, 1, 104.6)
    assert line == ("_Measured 2026-12-01 09:07 UTC, mode full, load average 0.3 at its start, 1 torch thread(s); "
                    "section time 105 s._")  # fmt: skip
    assert page.anchor("Level-1 index in the cascade") == "level-1-index-in-the-cascade"
    assert page.anchor("Ray build vs local build") == "ray-build-vs-local-build"


def test_bench_main_merges_a_section_into_an_existing_page(tmp_path, monkeypatch):
    """``python -m bench --only KEY --merge`` through main(), with a fake section (no measuring)."""
    import bench.__main__ as bench_main

    fake = bench_main.Section("fake", "Level-1 index", "Fake intro.", lambda quick: 7,
                              lambda r: f"| v |\n|---|\n| {r} |", lambda r: [("fake row", str(r), ">= 1")])  # fmt: skip
    monkeypatch.setattr(bench_main, "SECTIONS", (fake,))
    out = tmp_path / "benchmarks.md"
    out.write_text(page.render(HEADER, [block("Alpha", "1"), block("Level-1 index", "2")]))
    assert bench_main.main(["--only", "fake", "--merge", "--out", str(out), "--threads", "0"]) == 0
    parsed = page.parse(out.read_text())
    assert parsed.rows["Level-1 index"] == ["| fake row | 7 | >= 1 | [Level-1 index](#level-1-index) |"]
    assert parsed.rows["Alpha"] == ["| Alpha row 0 | 1 |  | [Alpha](#alpha) |"]
    assert "| 7 |" in parsed.blocks["Level-1 index"] and "mode full" in parsed.blocks["Level-1 index"]


def test_index_summary_names_the_smallest_setting_reaching_the_target_or_says_none_did():
    from bench.index import IndexReport, IndexRow, SizeInfo, parse_skip, summary

    def row(method: str, ms: float, recall: float) -> IndexRow:
        return IndexRow(method, 1000, ms, recall, 1.0, 5.0)

    rows = (row("exact float32", 100.0, 1.0), row("faiss:HNSW32@efSearch=128", 1.0, 0.9),
            row("faiss:HNSW32@efSearch=256", 2.0, 0.981), row("faiss:HNSW32@efSearch=512", 4.0, 0.995),
            row("faiss:IVF64,Flat@nprobe=4", 0.5, 0.5), row("faiss:IVF64,Flat@nprobe=16", 1.25, 0.8))  # fmt: skip
    report = IndexReport(rows, (SizeInfo(1000, 80.0, 10.0, 123.0, ("faiss:IVF9,Flat",)),))
    lines = {name.split(" at ")[0]: (result, target) for name, result, target in summary(report)}
    assert lines["Level 1, exact float32"] == ("1.25x", "<= 1.5x")  # 100 ms / 80 ms
    assert lines["Level 1, `faiss:HNSW32`"] == (
        "`faiss:HNSW32@efSearch=256`: 50.0x faster, recall@50 0.981 (the smallest setting tried reaching 0.98)",
        ">= 20x at >= 0.98",
    )
    assert lines["Level 1, `faiss:IVF64,Flat`"][0] == (
        "none of 2 settings reached 0.98; best `faiss:IVF64,Flat@nprobe=16`: 80.0x faster, recall@50 0.800"
    )
    assert lines["Level 1"][0] == "skipped (`--skip-at`): faiss:IVF9,Flat"
    assert parse_skip("4_000_000:HNSW, 1000000:float16") == [(4_000_000, "HNSW"), (1_000_000, "float16")]
    assert parse_skip("") == []


def test_space_reads_the_first_query_against_the_bare_passes_around_it_and_projects_it_onto_idle_rates():
    from bench.space import FULL, Query, SpaceReport, Stage, bare_for, markdown, projected_s, summary

    def query(what: str, text: str, client_ms: float, misses: tuple[int, int]) -> Query:
        stages = [Stage("openclip:ViT-B-32@t#rev-1", 0, 100.0, 0.0, 0.0, 0.0)]
        stages += [
            Stage(f"openclip:{name}@t#rev-2", m, 1000.0 * m, 1.0, 2.0, 900.0 * m)
            for name, m in zip(("ViT-B-16", "ViT-L-14"), misses)
        ]
        return Query(what, text, client_ms, tuple(stages))

    first, again, new = (
        query("first", "a", 14_000.0, (30, 10)),
        query("again", "a", 90.0, (0, 0)),
        query("new", "b", 9_000.0, (12, 4)),
    )
    visitors = tuple(query(f"visitor {n}", f"v{n}", 20_000.0, (5, 5)) for n in range(4))
    bare = ((4000.0, 6000.0), (6000.0, 8000.0), (5000.0, 7000.0))  # before, between, after (ms: B-16, L-14)
    report = SpaceReport(FULL, (30, 10, 10), 7.0, 100.0, (first, again, new), visitors, bare, 10.0, 2)
    assert bare_for(report, first) == (5000.0, 7000.0) and bare_for(report, new) == (5500.0, 7500.0)
    # 14 s over 12 s of bare passes, times 30 x 165 + 10 x 756 ms at idle rates
    assert projected_s(report) == pytest.approx(14_000 / 12_000 * (30 * 165 + 10 * 756) / 1000)
    rows = {name: result for name, result, _ in summary(report)}
    assert rows["Space rehearsal: first query (ks 30, 10, 10), the same again, a new one"] == (
        "14.0 s (1.17x its bare forward passes; 14.6 s at an idle machine's rates), 0.09 s, 9.0 s"
    )
    assert "| first | ViT-B-16 | 30 | 30,000 | 1 | 2 | 27,000 | 5,000 | 5.40 |" in markdown(report)
