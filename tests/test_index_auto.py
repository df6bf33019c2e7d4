"""``--index auto``: the fastest candidate passing the recall gate, the fallback to exact, the stored pick."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cascade.errors import ConfigError
from cascade.gap_queries import across_gap, gap_direction
from cascade.index import IndexFileError, IndexPlan, build_faiss, parse_index
from cascade.index_auto import AutoRecall, pick, ranking_of
from cascade.index_sizing import Candidate, default_candidates, estimate_bytes, ivf_lists
from tests.fakes import clustered
from tests.test_index import cached_searcher

faiss = pytest.importorskip("faiss")

N, DIM, CENTRES, K = 20_000, 64, 300, 20
PASSING = (Candidate.of("faiss:IVF128,Flat@nprobe=1"), Candidate.of("faiss:IVF128,Flat@nprobe=64"))
FAILING = (Candidate.of("faiss:IVF128,Flat@nprobe=1"), Candidate.of("faiss:IVF128,PQ8x4fs@nprobe=1", shortlist=1))


@pytest.fixture(scope="module")
def matrix() -> np.ndarray:
    return clustered(N, DIM, CENTRES)


@pytest.fixture(scope="module")
def queries(matrix) -> np.ndarray:
    return across_gap(matrix[np.linspace(0, N - 1, 100).astype(int)], gap_direction(DIM, seed=3), seed=4)


def truth(matrix: np.ndarray, queries: np.ndarray, k: int) -> list[set[int]]:
    """Each query's exact top k, in float64, without the code under test."""
    scores = queries.astype(np.float64) @ matrix.astype(np.float64).T
    return [set(np.argsort(-row, kind="stable")[:k].tolist()) for row in scores]


def recall_by_hand(ranking, matrix: np.ndarray, queries: np.ndarray, k: int) -> float:
    found = [set(ranking.rank(q[None, :], k)[0][0].tolist()) for q in queries]
    return float(np.mean([len(f & t) / k for f, t in zip(found, truth(matrix, queries, k))]))


def test_auto_picks_the_fastest_candidate_that_passes(matrix, queries):
    plan = IndexPlan("auto", min_recall=0.95)
    picked = pick(matrix, ("enc", "corpus"), K, queries, "gap", plan, PASSING)
    by_name = {row.name: row for row in picked.rows}
    assert [row.name for row in picked.rows] == ["exact"] + [c.name for c in PASSING]
    assert by_name["faiss:IVF128,Flat@nprobe=1"].recall < 0.95 <= by_name["faiss:IVF128,Flat@nprobe=64"].recall
    passing = [row for row in picked.rows if row.recall >= 0.95]  # exact always does
    assert not picked.fallback and picked.spec == min(passing, key=lambda row: row.query_ms).name
    ranking = ranking_of(picked, PASSING, matrix, plan, ("enc", "corpus"))
    assert recall_by_hand(ranking, matrix, queries, K) == pytest.approx(picked.recall, abs=0.01)
    assert picked.recall >= 0.95
    assert picked.line.startswith(f"level 1 auto: {picked.spec}, recall@{K} against exact {picked.recall:.3f} on 100")
    assert "1 of 2 candidates passed; the fastest picked, exact included" in picked.line


def test_when_nothing_passes_auto_falls_back_to_exact_and_says_so(matrix, queries):
    plan = IndexPlan("auto", min_recall=0.99)
    picked = pick(matrix, ("enc", "corpus"), K, queries, "gap", plan, FAILING)
    best = max(picked.rows[1:], key=lambda row: row.recall)
    assert best.recall < 0.99 and picked.fallback and picked.spec == "exact" and picked.recall == 1.0
    assert picked.line == (
        f"level 1 auto: no candidate reached recall@{K} 0.99 against exact on 100 gap queries; "
        f"best {best.name} at {best.recall:.3f}: falling back to exact"
    )
    ranking = ranking_of(picked, FAILING, matrix, plan, ("enc", "corpus"))
    assert recall_by_hand(ranking, matrix, queries, K) == 1.0


def test_a_memory_budget_leaves_out_what_does_not_fit(matrix, queries):
    flat_bytes = N * DIM * 4
    picked = pick(matrix, ("e", "c"), K, queries, "gap", IndexPlan("auto@memory_gb=0.000001"), PASSING)
    assert flat_bytes > 2**30 * 0.000001 and picked.fallback and [row.name for row in picked.rows] == ["exact"]
    assert picked.line.endswith("; none fit the memory budget: falling back to exact")


def test_without_a_budget_half_the_machine_is_the_budget(matrix, queries, monkeypatch):
    from cascade import index_sizing

    pages = {"SC_PAGE_SIZE": 4096, "SC_PHYS_PAGES": 2 * 1000}  # 8 MB of memory: half of it holds no IVF128,Flat
    monkeypatch.setattr(index_sizing.os, "sysconf", pages.__getitem__)
    flat_bytes = N * DIM * 4
    assert flat_bytes > 4096 * 1000
    picked = pick(matrix, ("e", "c"), K, queries, "gap", IndexPlan("auto"), PASSING)
    assert picked.fallback and [row.name for row in picked.rows] == ["exact"]


def test_a_float16_matrix_is_its_own_reference_and_never_copied(matrix, queries):
    half = matrix.astype(np.float16)
    plan = IndexPlan("auto", min_recall=0.99)
    picked = pick(half, ("enc", "corpus"), K, queries, "gap", plan, FAILING)
    assert picked.fallback and picked.rows[0].memory_bytes == half.nbytes == N * DIM * 2
    ranking = ranking_of(picked, FAILING, half, plan, ("enc", "corpus"))
    assert ranking.matrix is half  # exact over the rows as stored: at 10M a float32 copy would be 20 GB
    scores = queries.astype(np.float64) @ half.astype(np.float64).T
    expected = [set(np.argsort(-row, kind="stable")[:K].tolist()) for row in scores]
    found = [set(ranking.rank(q[None, :], K)[0][0].tolist()) for q in queries]
    assert found == expected


def written_bytes(index) -> int:
    """What FAISS writes for ``index``, counted through a callback (no file)."""
    sizes = []
    faiss.write_index(index, faiss.PyCallbackIOWriter(lambda chunk: sizes.append(len(chunk)) or len(chunk)))
    return sum(sizes)


@pytest.mark.parametrize("text", ["faiss:IVF128,Flat", "faiss:IVF128,PQ16x4fs", "faiss:HNSW16"])
def test_the_memory_estimate_is_close_to_what_faiss_writes(matrix, text):
    candidate = Candidate.of(text)
    built = build_faiss(candidate.spec, matrix, ("e", "c", candidate.spec.factory))
    assert estimate_bytes(candidate, N, DIM, matrix.nbytes) == pytest.approx(written_bytes(built.index), rel=0.15)
    reranked = Candidate.of(text, shortlist=4)  # re-ranking from the held matrix needs it resident: counted
    assert estimate_bytes(reranked, N, DIM, 12345) == estimate_bytes(candidate, N, DIM, 0) + 12345


def test_the_default_list_follows_the_sizing_rules():
    assert ivf_lists(1_000_000) == 4096 and ivf_lists(20_000) == 512 and ivf_lists(10_000) == 256
    names = [c.name for c in default_candidates(1_000_000, 512, 50)]
    assert names == [
        "exact:float16",
        "faiss:IVF4096,Flat@nprobe=128",
        "faiss:IVF4096,Flat@nprobe=512",
        "faiss:IVF4096,PQ128x4fs@nprobe=128+rerank=10",
        "faiss:IVF4096,PQ128x4fs@nprobe=512+rerank=10",
        "faiss:HNSW32@efSearch=100",
        "faiss:HNSW32@efSearch=200",
    ]
    assert [c.name for c in default_candidates(5_000, 512, 50)] == ["exact:float16"]  # a matmul is quick there
    assert not any("HNSW" in c.name for c in default_candidates(10_000_000, 512, 50))  # an hour's build


@pytest.mark.parametrize("text", ["auto@memory_gb=x", "auto@nprobe=4", "auto@memory_gb=1,nprobe=2"])
def test_malformed_auto_specs_are_one_line_errors(text):
    with pytest.raises(ConfigError, match="auto takes a memory budget only"):
        parse_index(text)
    assert parse_index("auto").name == "auto" and parse_index("auto@memory_gb=16").name == "auto@memory_gb=16"


@pytest.fixture
def short_list(monkeypatch):
    """The searcher's candidates: the two IVF settings (the default list builds HNSW too: seconds more)."""
    monkeypatch.setattr("cascade.index_auto.default_candidates", lambda n, d, k: PASSING)


def test_a_searcher_stores_its_pick_and_reuses_it_until_k_changes(matrix, tmp_path, short_list, monkeypatch):
    plan = IndexPlan("auto", folder=tmp_path, min_recall=0.95, sample_queries=100)
    first = cached_searcher(matrix, plan)
    measured = first.index_recall(K)
    assert isinstance(measured, AutoRecall) and measured.source == "gap" and measured.k == K
    records = sorted(tmp_path.glob("level1-auto-*.json"))
    assert len(records) == 1 and json.loads(records[0].read_text())["pick"]["spec"] == measured.spec
    result = first.search("a query", [K])
    assert len(result.ids) == K

    if measured.spec != "exact":  # the picked build is kept beside the record, and only that one
        assert len(list(tmp_path.glob("*.faiss"))) == 1

    calls = []
    monkeypatch.setattr("cascade.index_auto.pick", lambda *a, **kw: calls.append(a) or measured)
    assert cached_searcher(matrix, plan).index_recall(K) == measured and not calls  # read back, figures and all
    cached_searcher(matrix, plan).index_recall(K + 5)  # another k_1: measured again, its own record
    assert len(calls) == 1 and calls[0][2] == K + 5


def test_a_corrupt_or_foreign_pick_record_is_refused(matrix, tmp_path, short_list):
    plan = IndexPlan("auto", folder=tmp_path, min_recall=0.95, sample_queries=50)
    cached_searcher(matrix, plan).index_recall(K)
    cached_searcher(matrix[:-1000], plan, prefix="other").index_recall(K)  # another gallery, its own record
    by_size = {json.loads(p.read_text())["key"]["n_images"]: p for p in tmp_path.glob("level1-auto-*.json")}
    ours, theirs = by_size[N], by_size[N - 1000]
    ours.write_text(theirs.read_text())  # another gallery's record under this gallery's name
    with pytest.raises(IndexFileError, match="belongs to another gallery"):
        cached_searcher(matrix, plan).index_recall(K)
    ours.write_text('{"format": 1, "key": {')
    with pytest.raises(IndexFileError, match="is corrupt; delete it"):
        cached_searcher(matrix, plan).search("a query", [K])


def test_the_command_line_says_the_pick_and_its_recall_in_one_line(tmp_path, capsys):
    from cascade_cli import main
    from tests.fakes import make_gallery

    gallery = make_gallery(tmp_path / "gallery", 12, seed=2)[0].parent
    argv = ["index", "--images", str(gallery), "--levels", "openclip:tiny-vit-s@random", "--index", "auto"]
    code = main([*argv, "--index-k", "5", "--db", str(tmp_path / "db.duckdb"), "--quiet"])
    out, err = capsys.readouterr()
    lines = [line for line in out.splitlines() if line.startswith("level 1 auto: ")]
    assert code == 0 and not err and len(lines) == 1  # 12 images: exact or float16, measured on gap queries
    assert "recall@5 against exact" in lines[0] and "on 12 gap queries" in lines[0]
    assert len(list((tmp_path / "db.duckdb.indexes").glob("level1-auto-*.json"))) == 1


def test_the_picked_faiss_file_is_refused_when_corrupt(matrix, tmp_path, short_list, monkeypatch):
    import time

    import cascade.index_auto as auto
    from cascade.level1 import ExactFloat32

    class SlowExact(ExactFloat32):  # exact made slower than any IVF setting, so the pick is a FAISS file
        def rank(self, queries, k):
            time.sleep(0.005)
            return super().rank(queries, k)

    monkeypatch.setattr(auto, "exact_ranking", SlowExact)  # the matrix is float32: exact's strategy is this
    plan = IndexPlan("auto", folder=tmp_path, min_recall=0.5, sample_queries=50)
    measured = cached_searcher(matrix, plan).index_recall(K)
    assert measured.spec.startswith("faiss:IVF128,Flat") and not measured.fallback
    (picked,) = tmp_path.glob("*.faiss")
    picked.write_bytes(b"\x00" * 64)
    with pytest.raises(IndexFileError, match="is corrupt"):
        cached_searcher(matrix, plan).search("a query", [K])
