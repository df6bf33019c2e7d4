"""Level 1 on an index: FAISS against exact, the recall gate, save/load/rebuild, bad files, float16 at speed."""

from __future__ import annotations

import numpy as np
import pytest

from cascade.cache import MemoryCache
from cascade.corpus import virtual_corpus
from cascade.errors import ConfigError
from cascade.index import (
    IndexFileError,
    IndexPlan,
    IndexRecallTooLow,
    build_faiss,
    index_file,
    measure_recall,
    parse_index,
)
from cascade.ranking import half_top_k as _half_top_k
from cascade.ranking import top_k as _top_k
from cascade.search import CascadeSearcher
from tests.fakes import FakeBiEncoder

pytest.importorskip("faiss")

N, DIM, CENTRES = 20_000, 32, 200


def clustered(n: int = N, dim: int = DIM, centres: int = CENTRES, seed: int = 0) -> np.ndarray:
    """Unit vectors around a few hundred random centres on the sphere, like real embeddings (not uniform noise)."""
    rng = np.random.default_rng(seed)
    middle = rng.normal(size=(centres, dim))
    middle /= np.linalg.norm(middle, axis=1, keepdims=True)
    rows = middle[rng.integers(0, centres, size=n)] + 0.25 * rng.normal(size=(n, dim)) / np.sqrt(dim)
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def cached_searcher(matrix: np.ndarray, plan: IndexPlan, prefix: str = "img") -> CascadeSearcher:
    """A one-level searcher whose level-1 rows are already in the cache (build embeds nothing)."""
    level = FakeBiEncoder("small", seed=1, image_macs=10, dim=matrix.shape[1])
    corpus = virtual_corpus(len(matrix), prefix=prefix)
    cache = MemoryCache()
    cache.put(level.id, dict(zip(corpus.ids, matrix)))
    return CascadeSearcher([level], corpus, cache=cache, index=plan)


@pytest.fixture(scope="module")
def matrix() -> np.ndarray:
    return clustered()


def exact_order(matrix: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The reference ranking of every row, in float64, computed without the code under test."""
    scores = matrix.astype(np.float64) @ query.astype(np.float64)
    order = np.argsort(-scores, kind="stable")
    return order, scores[order]


def test_hnsw_with_k_covering_the_gallery_is_the_exact_ranking(matrix):
    built = build_faiss(parse_index("faiss:HNSW32"), matrix, ("enc", "corpus", "HNSW32"))
    for query in (matrix[5], matrix[777] * 0.5 + matrix[9000] * 0.5):
        positions, scores = built.search(query, N)
        order, reference = exact_order(matrix, query)
        assert sorted(positions.tolist()) == list(range(N))  # every image, once
        np.testing.assert_allclose(scores, reference, atol=1e-5)
        gaps = np.diff(reference) < -1e-5  # where the next score is clearly lower, the order is forced
        forced = np.flatnonzero(np.concatenate([[True], gaps]) & np.concatenate([gaps, [True]]))
        assert (positions[forced] == order[forced]).all()


def test_recall_is_the_share_of_exact_top_k_found(matrix):
    built = build_faiss(parse_index("faiss:IVF64,Flat@nprobe=2"), matrix, ("enc", "corpus", "IVF64,Flat"))
    queries = clustered(n=50, seed=1)
    measured = measure_recall(built, matrix, queries, k=20, source="test")
    found, _ = built.search_many(queries, 20)
    by_hand = [len(set(found[i]) & set(exact_order(matrix, q)[0][:20].tolist())) / 20 for i, q in enumerate(queries)]
    assert measured.recall == pytest.approx(np.mean(by_hand))
    assert 0.3 < measured.recall < 1.0  # two of 64 lists: a real loss, which the figure must show


def test_hnsw_meets_the_gate_and_its_ranking_matches_exact_top_k(matrix):
    searcher = cached_searcher(matrix, IndexPlan("faiss:HNSW32"))
    searcher.build()
    measured = searcher.index_recall(50)
    assert measured.source == "gallery" and measured.queries == 200 and measured.recall >= 0.95
    exact = cached_searcher(matrix, IndexPlan())
    query = matrix[123] * 0.7 + matrix[4567] * 0.3
    searcher.levels[0].encode_texts = exact.levels[0].encode_texts = lambda texts: (query / np.linalg.norm(query))[None]
    got, want = searcher.search("q", [50]), exact.search("q", [50])
    assert len(set(got.ids) & set(want.ids)) >= 45


def test_an_index_below_the_gate_is_refused_with_what_was_measured(matrix):
    searcher = cached_searcher(matrix, IndexPlan("faiss:IVF64,PQ4x4@nprobe=1", min_recall=0.95))
    with pytest.raises(IndexRecallTooLow, match=r"recall@15 against exact is 0\.\d+ on 200 gallery queries"):
        searcher.search("a query", [15])


def test_saved_index_is_loaded_not_rebuilt_and_a_new_corpus_gets_its_own(matrix, tmp_path):
    plan = IndexPlan("faiss:HNSW32", folder=tmp_path)
    first = cached_searcher(matrix, plan)
    first.build()
    first.index_recall(15)
    files = sorted(tmp_path.glob("*.faiss"))
    assert len(files) == 1 and files[0].with_suffix(".json").is_file()
    stamp = files[0].stat().st_mtime_ns

    second = cached_searcher(matrix, plan)
    second.build()
    assert second._faiss.build_s == 0.0 and files[0].stat().st_mtime_ns == stamp  # loaded, not rebuilt
    assert "k=15,queries=200,params=efSearch=128" in second._faiss.recalls  # the gate's figure travelled too
    query = matrix[42]
    np.testing.assert_array_equal(first._faiss.search(query, 30)[0], second._faiss.search(query, 30)[0])

    changed = cached_searcher(matrix[:-1000], plan)  # another gallery: another key, a fresh build
    changed.build()
    assert changed._faiss.build_s > 0 and changed._faiss.n_images == N - 1000
    assert len(list(tmp_path.glob("*.faiss"))) == 2


def test_a_corrupt_index_file_or_one_of_another_corpus_is_refused(matrix, tmp_path):
    plan = IndexPlan("faiss:HNSW32", folder=tmp_path)
    cached_searcher(matrix[:2000], plan).build()
    path = next(tmp_path.glob("*.faiss"))
    path.write_bytes(b"not a faiss index" * 100)
    with pytest.raises(IndexFileError, match="is corrupt"):
        cached_searcher(matrix[:2000], plan).build()

    other = cached_searcher(matrix[:3000], plan, prefix="other")  # copy a sidecar of another gallery over it
    other.build()
    other_path = index_file(tmp_path, other._faiss.key)
    path.write_bytes(other_path.read_bytes())
    path.with_suffix(".json").write_text(other_path.with_suffix(".json").read_text())
    with pytest.raises(IndexFileError, match="belongs to another corpus"):
        cached_searcher(matrix[:2000], plan).build()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("faiss:", "malformed FAISS factory"),
        ("faiss:HNSW 32", "malformed FAISS factory"),
        ("faiss:HNSW32@efSearch", "malformed FAISS search parameters"),
        ("annoy:16", "unknown index"),
        ("exact:int8", "exact storage"),
        ("faiss:IVF64,PQ8x4fs+rerank=0", r"\+rerank= takes a whole number"),
        ("faiss:IVF64,PQ8x4fs@nprobe=4+rerank=ten", r"\+rerank= takes a whole number"),
    ],
)
def test_malformed_index_specs_are_one_line_errors(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_index(text)


def test_factories_faiss_cannot_build_are_one_line_errors(matrix):
    for text, message in (("faiss:HNSWxx", "could not parse"), ("faiss:PQ7", "multiple"),
                          ("faiss:HNSW32@nprobe=4", "could not set parameter nprobe")):  # fmt: skip
        with pytest.raises(ConfigError, match=message) as caught:
            build_faiss(parse_index(text), matrix[:500], ("e", "c", text))
        assert "\n" not in str(caught.value)


def test_a_reranked_shortlist_is_searched_scored_exactly_and_gated_as_served(matrix):
    spec = parse_index("faiss:IVF64,PQ8x4fs@nprobe=8+rerank=10")
    assert (spec.factory, spec.params, spec.shortlist) == ("IVF64,PQ8x4fs", "nprobe=8", 10)
    assert spec.name == "faiss:IVF64,PQ8x4fs@nprobe=8+rerank=10" and parse_index(spec.name) == spec
    plain = cached_searcher(matrix, IndexPlan("faiss:IVF64,PQ8x4fs@nprobe=8", min_recall=0.0))
    reranked = cached_searcher(matrix, IndexPlan(spec, min_recall=0.0))
    k = 20
    plain_recall, reranked_recall = plain.index_recall(k).recall, reranked.index_recall(k).recall
    assert plain_recall < 0.9 < reranked_recall  # 4-bit codes alone lose the top 20; re-scored they keep it
    assert reranked.index_recall(k).spec == spec.name
    query = matrix[321] * 0.6 + matrix[12345] * 0.4
    query /= np.linalg.norm(query)
    reranked.levels[0].encode_texts = lambda texts: query[None]
    result = reranked.search("q", [k])
    order, reference = exact_order(matrix, query)
    scores = {int(i): float(s) for i, s in zip(order[:2000], reference[:2000])}
    positions = [reranked.corpus.position(image_id) for image_id in result.ids]
    got = [scores[p] for p in positions]  # exact scores of what it returned: every one is among the first 2,000
    assert got == sorted(got, reverse=True)  # best first, by exact score
    assert len(set(positions) & set(order[:k].tolist())) >= 0.9 * k


def test_default_search_parameters_follow_the_factory():
    assert parse_index("faiss:HNSW32").name == "faiss:HNSW32@efSearch=128"
    assert parse_index("faiss:IVF4096,PQ64").params == "nprobe=32"
    assert parse_index("faiss:Flat").params == "" and parse_index("exact:float16").name == "exact:float16"


@pytest.mark.parametrize("seed", range(3))
def test_float16_top_k_is_the_exact_ranking_of_the_stored_values(seed):
    rng = np.random.default_rng(seed)
    half = clustered(n=5000, seed=seed).astype(np.float16)
    half[100:140] = half[7]  # a block of exact ties, which must keep corpus order at the cut
    query = half[7].astype(np.float32) + 0.01 * rng.normal(size=DIM).astype(np.float32)
    query /= np.linalg.norm(query)
    reference = half.astype(np.float64) @ query.astype(np.float64)  # the stored values, exactly enough
    by_hand = sorted(range(5000), key=lambda i: (-round(reference[i], 12), i))  # ties (rows 100-139): corpus order
    for k in (1, 10, 30, 100, 5000):
        positions, scores = _half_top_k(half, query, k, max_norm=1.0)
        assert positions.tolist() == by_hand[:k], k
        np.testing.assert_allclose(scores, reference[positions], atol=1e-6)
    assert by_hand[:41] == [7, *range(100, 140)]  # the tied block is what the query is closest to


def test_float16_level_one_ranks_like_float32(matrix):
    searchers = {dtype: cached_searcher(matrix, IndexPlan(f"exact:{dtype}")) for dtype in ("float32", "float16")}
    query = matrix[321] * 0.6 + matrix[8] * 0.4
    for searcher in searchers.values():
        searcher.levels[0].encode_texts = lambda texts: (query / np.linalg.norm(query))[None]
        searcher.build()
    assert searchers["float16"]._matrix.dtype == np.float16 and searchers["float16"]._matrix.nbytes == N * DIM * 2
    full, half = (searchers[d].search("q", [100]) for d in ("float32", "float16"))
    assert len(set(full.ids) & set(half.ids)) >= 98  # float16 storage moves scores by ~1e-3: the cut may swap
    assert full.ids[:10] == half.ids[:10]
    assert list(full.ids) == [full.ids[i] for i in _top_k(np.asarray(full.scores), 100)]


def test_float16_level_one_ranks_like_float32_on_the_shapes_gallery(monkeypatch):
    """The world's own test gallery through ``shapes:small``: float16 storage keeps every caption's top 10."""
    from analysis import presets
    from analysis.evaluate import caption_queries, evaluate
    from cascade import world
    from cascade.cache import MemoryCache
    from cascade.encoders import create_encoder

    monkeypatch.setitem(world.GALLERY_SIZES, "test", 300)
    corpus, cache = presets.gallery("shapes"), MemoryCache()
    runs = {}
    for dtype in ("float32", "float16"):
        searcher = CascadeSearcher([create_encoder("shapes:small")], corpus, cache=cache,
                                   index=IndexPlan(f"exact:{dtype}"))  # fmt: skip
        searcher.build()
        texts = caption_queries(corpus)[0][:200]
        runs[dtype] = ([searcher.search(text, [10]).ids for text in texts], evaluate(searcher, [10], limit=200))
    (full_ids, full), (half_ids, half) = runs["float32"], runs["float16"]
    same = sum(a == b for a, b in zip(full_ids, half_ids))
    assert same >= 195, f"only {same} of 200 top-10 lists identical"  # a swap needs a near-tie at float16 precision
    assert (
        abs(full.recall[1] - half.recall[1]) <= 1.0 and abs(full.recall[10] - half.recall[10]) <= 1.0
    )  # at most two of 200 captions move
