"""Every benchmark section runs in quick mode, and ``python -m bench`` writes its page.

Each section is its own test (and its own pytest-xdist group), so the sections spread over the
cores instead of running one after another in a single subprocess. They run in this process:
the imports are paid once per worker, and a failing section fails with its own traceback.
"""

import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow

KEYS = (
    "query",
    "log",
    "build",
    "lifetime",
    "crisp",
    "evaluation",
    "index",
    "index-scale",
    "index-cascade",
    "ray",
    "load",
    "imports",
    "space",
)


def _section(key: str):
    from bench.__main__ import SECTIONS

    return next(section for section in SECTIONS if section.key == key)


def test_every_section_is_smoke_tested_here():
    from bench.__main__ import SECTIONS

    assert set(KEYS) == {section.key for section in SECTIONS} == set(CHECKS)


def _tables(markdown: str) -> list[list[dict[str, str]]]:
    """Every markdown table of ``markdown``: a list of rows, each ``{header: cell}``; a row's cells match its header."""
    tables, lines = [], markdown.splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.startswith("|") and lines[i + 1].startswith("|---") and (i == 0 or not lines[i - 1].startswith("|")):
            header = [cell.strip() for cell in line.strip("|").split("|")]
            rows = []
            for body in lines[i + 2 :]:
                if not body.startswith("|"):
                    break
                cells = [cell.strip() for cell in body.strip("|").split("|")]
                assert len(cells) == len(header), f"{body!r} under {header}"
                rows.append(dict(zip(header, cells)))
            tables.append(rows)
    return tables


def _num(cell: str) -> float:
    """``"1,234.5"``, ``"12.3x"``, ``"85%"``, ``"+4.0%"`` -> the number."""
    return float(cell.replace(",", "").split(" ")[0].rstrip("x%"))


def _close(shown: float, computed: float, decimals: int) -> bool:
    """``shown`` is ``computed`` rounded to ``decimals`` places (inputs themselves rounded: one more unit of slack)."""
    return abs(shown - computed) <= 10.0**-decimals + 0.01 * abs(computed)


def _check_query(result, tables) -> None:
    from bench.query_path import ROWS_QUICK

    (table,) = tables
    assert [(_num(r["N"]), r["storage"], r["text tower"], int(r["repeats"])) for r in table] == list(ROWS_QUICK)
    assert [row.n_images for row in result.rows] == [n for n, *_ in ROWS_QUICK] and result.log.records == 60


def _check_log(result, tables) -> None:
    (table,) = tables
    floor = next(_num(r["median (ms)"]) for r in table if r["writer"] == "plain INSERT")
    assert len(table) == 3 and result.records == 60
    for row in table:  # each ratio is its median over the INSERT's, as the same table shows them
        assert _close(_num(row["median / plain INSERT"]), _num(row["median (ms)"]) / floor, 1), row
        assert _num(row["p95 (ms)"]) >= _num(row["median (ms)"])


def _check_build(result, tables) -> None:
    (table,) = tables
    assert len(table) == len(result.rows) >= 1
    assert _num(table[0]["N"]) == 32  # quick: 32 photos (and 256 world images when the shapes weights exist)
    assert all(_num(row["N"]) == 256 for row in table[1:])
    for row in table:
        ratio = 100 * _num(row["build (img/s)"]) / _num(row["bare forward (img/s)"])
        assert abs(_num(row["build / bare"]) - ratio) <= 1.0 + 0.01 * ratio, row


def _check_lifetime(result, tables) -> None:
    from bench.lifetime import LARGE, QUICK_GALLERY_IMAGES, QUICK_QUERIES, SMALL
    from cascade.encoders import create_encoder

    (table,) = tables
    small, large = create_encoder(SMALL).image_macs, create_encoder(LARGE).image_macs
    n = QUICK_GALLERY_IMAGES
    assert [r["workload"] for r in table] == ["uniform", "zipf"]
    for row in table:
        assert (_num(row["images"]), _num(row["queries"])) == (n, QUICK_QUERIES)
        alpha, cascade, alone = _num(row["alpha"]), _num(row["cascade GMACs"]), _num(row[f"{LARGE} alone GMACs"])
        assert _close(alone, n * large / 1e9, 2)  # the largest encoder embeds the gallery once
        assert _close(cascade, (n * small + round(alpha * n) * large) / 1e9, 2)  # N C_1 + alpha N C_2, by hand
        assert _close(_num(row["MACs saved (x)"]), alone / cascade, 2)
    uniform, zipf = table
    assert _num(uniform["alpha"]) > _num(zipf["alpha"])  # a popular tenth of the images hands level 2 fewer


def _check_crisp(result, tables) -> None:
    from bench.crisp import BLIP_ROWS, CROSS, SHAPES_PAIRS
    from bench.lifetime import QUICK_GALLERY_IMAGES
    from cascade.encoders import create_encoder

    shapes, blip = tables
    assert len(blip) == 1 and _num(blip[0]["N"]) == BLIP_ROWS[0][2] and _num(blip[0]["k"]) == BLIP_ROWS[0][3]
    cross = create_encoder(CROSS)
    assert len(shapes) == len(SHAPES_PAIRS)
    for row, (bi_name, k) in zip(shapes, SHAPES_PAIRS):
        bi, n = create_encoder(bi_name), QUICK_GALLERY_IMAGES
        assert (_num(row["N"]), _num(row["k"]), _num(row["queries"])) == (n, k, 6)
        cascade = (bi.text_macs + n * bi.dim + cross.query_macs + k * cross.pair_macs) / 1e9  # by hand
        alone = (cross.query_macs + n * cross.pair_macs) / 1e9
        assert _close(_num(row["cascade GMACs/query"]), cascade, 3)
        assert _close(_num(row["cross alone GMACs/query"]), alone, 2)
        assert _close(_num(row["MACs speedup"]), alone / cascade, 1)


def _check_evaluation(result, tables) -> None:
    from bench.evaluation import PRESET, QUICK_CAPTIONS, QUICK_COMPARISONS

    (table,) = tables
    assert [r["ks"] for r in table] == [", ".join(map(str, PRESET.comparisons[i][1])) for i in QUICK_COMPARISONS]
    assert all(_num(r["queries"]) == QUICK_CAPTIONS and r["rows equal"] == "yes" for r in table)
    for row, raw in zip(table, result):
        assert _num(row["speedup"]) == pytest.approx(round(raw.per_query_s / raw.batched_s, 2))


def _check_index(result, tables) -> None:
    from bench.index import QUICK_SIZES
    from bench.index_real import CAPTIONS
    from bench.lifetime import QUICK_GALLERY_IMAGES

    synthetic, real = tables
    assert {_num(r["N"]) for r in synthetic} == set(QUICK_SIZES) and len(synthetic) + len(real) == len(result.rows)
    assert {_num(r["N"]) for r in real} == {QUICK_GALLERY_IMAGES}
    assert {r["queries"] for r in real} == {CAPTIONS, "across the gap"}
    assert {r["queries"] for r in synthetic} == {"in-distribution", "across the gap"}
    for table, raws in ((synthetic, result.rows[: len(synthetic)]), (real, result.rows[len(synthetic) :])):
        exact = table[0]
        assert _num(exact["recall@50 vs exact"]) == 1.0 and _num(exact["vs exact float32"]) == 1.0
        for row, raw in zip(table, raws):
            assert _num(row["vs exact float32"]) == pytest.approx(round(raws[0].query_ms / raw.query_ms, 1))
            assert 0.0 <= _num(row["recall@50 vs exact"]) <= 1.0 and 0.0 <= _num(row["recall@100"]) <= 1.0
    assert result.auto is not None and result.auto.n_images == QUICK_SIZES[-1] and result.auto.line


def _check_scale(result, tables) -> None:
    from bench.index_scale import QUICK

    rows, phases = tables
    sweep = QUICK.sweep
    settings = len(sweep.values) * len(sweep.shortlists)
    assert [r["level 1"] for r in rows] == [f"`{raw.method}`" for raw in result.rows] and len(rows) == 2 * (
        1 + settings
    )
    assert rows[0]["level 1"] == "`exact float16`" and _num(rows[0]["vs exact float16"]) == 1.0
    assert {r["queries"] for r in rows} == {"in-distribution", "across the gap"}
    for row in rows:
        assert 0.0 <= _num(row["recall@50 vs exact"]) <= 1.0 and 0.0 <= _num(row["recall@100"]) <= 1.0
    assert [r["phase"] for r in phases] == ["write", "import", "index build", "level 1", "engine", "estimate"]
    assert all(0 < _num(r["peak anonymous memory (MiB)"]) <= _num(r["peak resident, mapped pages included (MiB)"])
               for r in phases)  # fmt: skip
    assert result.served.startswith(f"faiss:{sweep.factory}@") and "+rerank=" in result.served
    assert result.estimate_distinct == QUICK.distinct and result.estimate_queries == QUICK.log_lines
    assert 0 < result.alpha <= 1 and result.alpha * QUICK.n >= 50  # at least one query's top 50


def _check_index_cascade(result, tables) -> None:
    from bench.index_cascade import PRESET, QUICK_QUERIES
    from bench.lifetime import QUICK_GALLERY_IMAGES

    (table,) = tables
    assert [r["level 1"] for r in table][1:] == ["`exact`"] and len(table) == 2
    for row in table:
        assert row["ks"] == ", ".join(map(str, PRESET.ks))
        assert (_num(row["images"]), _num(row["queries"])) == (QUICK_GALLERY_IMAGES, QUICK_QUERIES)
        assert QUICK_GALLERY_IMAGES * _num(row["alpha"]) >= PRESET.ks[0] - 0.5  # level 2 saw at least one k_1


def _check_ray(result, tables) -> None:
    from bench.lifetime import QUICK_GALLERY_IMAGES

    (table,) = tables
    assert (
        len(table) == 4
        and result.n_images == QUICK_GALLERY_IMAGES
        and _num(table[0]["time / local (pixel array)"]) == 1
    )
    local = _num(table[0]["seconds"])
    for row in table:  # images/s and the ratio follow from the seconds the same row shows (rounded to 0.1 s)
        low, high = max(_num(row["seconds"]) - 0.05, 1e-9), _num(row["seconds"]) + 0.05
        assert result.n_images / high - 1 <= _num(row["images/s"]) <= result.n_images / low + 1, row
        if local >= 1:  # a local build under a second leaves the ratio to its rounding
            assert (
                low / (local + 0.05) - 0.05 <= _num(row["time / local (pixel array)"]) <= high / (local - 0.05) + 0.05
            )


def _check_load(result, tables) -> None:
    (table,) = tables
    ((row,), (raw,)) = table, result
    assert (int(row["torch threads"]), int(row["errors"]), row["logged exactly once"]) == (1, 0, "yes")
    assert _num(row["answered"]) == raw.answered > 0 and _num(row["duration (s)"]) == round(raw.duration_s)
    assert _close(_num(row["queries/s"]), raw.answered / raw.duration_s, 1)


def _check_imports(result, tables) -> None:
    from bench.imports import QUICK

    (table,) = tables
    measured = result.comparisons()
    assert [r["comparison"] for r in table] == [what for what, *_ in measured] and len(table) == 4
    for row, (_, ours, reference, target) in zip(table, measured):  # each cell is the report's figure, rounded
        assert _close(_num(row["ours"]), ours, 2) and _close(_num(row["reference"]), reference, 2), row
        assert _num(row["ratio"]) == pytest.approx(round(ours / reference, 2)) and row["target"] == f"<= {target:g}x"
        assert row["met"] == ("yes" if ours / reference <= target else "NO")
    assert [_num(r["reference"]) for r in table[2:]] == [round(QUICK.n_rows * QUICK.dim * 2 / 2**20, 2)] * 2
    runs = (*result.reads, *result.imports)
    assert len(result.reads) == len(result.imports) == QUICK.repeats and all(r.rows == QUICK.n_rows for r in runs)
    assert all(r.check_s + r.write_s == pytest.approx(r.seconds, rel=0.05) for r in result.imports)
    e = result.estimate  # the quick log: every distinct query ranked, so every line
    assert (e.distinct_queries, e.queries) == (QUICK.ranked, QUICK.log_lines)
    assert len(e.level1_s) == len(e.bare_s) == QUICK.repeats
    assert e.alpha == pytest.approx(e.handed / QUICK.n_rows) and QUICK.k <= e.handed <= QUICK.ranked * QUICK.k
    assert abs(e.handed - e.bare_handed) <= 0.01 * e.handed  # the same top k, up to ties the renormalising moves


def _check_space(result, tables) -> None:
    from analysis.presets import get
    from bench import space

    table, where = tables
    queries = (*result.queries, *result.visitors)
    assert [r["moment"] for r in table[2:]] == [f'{q.what}: "{q.query}"' for q in queries] and len(table) == 9
    assert 0 < result.served_s <= result.ready_s
    assert (_num(table[0]["wall time, client (s)"]), _num(table[1]["wall time, client (s)"])) == (
        round(result.served_s, 1),
        round(result.ready_s, 1),
    )
    for row, q in zip(table[2:], queries):
        assert _num(row["wall time, client (s)"]) == round(q.client_ms / 1000, 2) and q.client_ms >= q.engine_ms
        assert _num(row["in the engine (s)"]) == round(sum(s.latency_ms for s in q.stages) / 1000, 2)
        for stage in q.stages:  # a query's misses fit one batch (32): its steps ran in turn, within the stage
            assert stage.decode_ms + stage.preprocess_ms + stage.forward_ms <= stage.latency_ms + 0.01
            assert (stage.forward_ms > 0) == (stage.misses > 0)
    first, again, new = result.queries
    ks = get("flickr30k-cpu").ks
    assert [s.misses for s in first.stages] == [0, *ks[:-1]]  # a fresh Space: stage i + 1 embeds all k_i it is handed
    assert [s.misses for s in again.stages] == [0, 0, 0] and again.query == first.query != new.query
    assert len({q.query for q in result.visitors}) == len(result.visitors) == 4
    assert len(result.bare_ms) == 3 and all(len(b) == 2 and min(b) > 0 for b in result.bare_ms)
    assert len(where) == 4  # the first and the new query, stages 2 and 3
    for row, (query, stage, bare) in zip(
        where, [(q, s, b) for q in (first, new) for s, b in zip(q.stages[1:], space.bare_for(result, q))]
    ):
        assert (row["query"], int(row["embedded"]), _num(row["forward"])) == (
            query.what,
            stage.misses,
            round(stage.forward_ms),
        )
        assert _num(row["forward / bare"]) == pytest.approx(round(stage.forward_ms / bare, 2), abs=0.011)
    idle_ms = sum(space.IDLE_MS_PER_IMAGE[n] * k for n, k in zip(("ViT-B-16", "ViT-L-14"), ks[:-1]))
    expected = first.client_ms / ((sum(result.bare_ms[0]) + sum(result.bare_ms[1])) / 2) * idle_ms / 1000
    assert space.projected_s(result) == pytest.approx(expected)


CHECKS = {"query": _check_query, "log": _check_log, "build": _check_build, "lifetime": _check_lifetime,
          "crisp": _check_crisp, "evaluation": _check_evaluation, "index": _check_index, "index-scale": _check_scale,
          "index-cascade": _check_index_cascade, "ray": _check_ray, "load": _check_load,
          "imports": _check_imports, "space": _check_space}  # fmt: skip


@pytest.mark.parametrize("key", [pytest.param(key, marks=pytest.mark.xdist_group(f"bench-{key}")) for key in KEYS])
def test_section_runs_quick_and_its_table_agrees_with_itself_and_the_quick_parameters(key):
    section = _section(key)
    result = section.run(True)
    table = section.markdown(result)
    assert "nan" not in table.lower()
    CHECKS[key](result, _tables(table))
    summary = section.summary(result)
    assert summary and all(name and outcome for name, outcome, _ in summary)
    if key == "load":  # the load test's own checks: what the page reports as "0 errors, logged exactly once"
        assert all(row.errors == 0 and row.logged_once and row.answered > 0 for row in result)
    if key == "evaluation":  # the batched evaluator's rows equal the one-search-per-query rows
        assert all(row.rows_equal for row in result)


def test_bench_writes_the_page_with_the_sections_asked_for(tmp_path, capsys):
    out = tmp_path / "benchmarks.md"
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--only", "log", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    assert "| benchmark | result | target |" in text and "\n## Query log\n" in text
    assert "FAILED" not in text and "\n## Load\n" not in text
    from bench.__main__ import main

    with pytest.raises(SystemExit) as bad:  # in this process (--threads 0: torch's thread count left as it is)
        main(["--threads", "0", "--only", "nope", "--out", str(out)])
    assert bad.value.code == 2 and "unknown section(s) nope" in capsys.readouterr().err
    assert "\n## Query log\n" in out.read_text()  # the page written above is left as it was
