"""Algorithm 1: exactness, caching, MAC metering, validation, concurrency."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from cascade.cache import MemoryCache
from cascade.corpus import Corpus, virtual_corpus
from cascade.encoders import is_cross_encoder
from cascade.errors import ConfigError, EncoderNotFound
from cascade.index import IndexPlan
from cascade.ranking import top_k as _top_k
from cascade.search import CascadeSearcher
from tests.fakes import FakeBiEncoder, FakeCrossEncoder, make_gallery, run_in_threads

N_IMAGES = 60
QUERIES = ["a red circle", "two blue squares", "a small green triangle", "stripes", "left of the star"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Corpus:
    return Corpus.from_folder(make_gallery(tmp_path_factory.mktemp("gallery"), N_IMAGES)[0].parent)


def three_levels() -> list[FakeBiEncoder]:
    return [
        FakeBiEncoder("small", seed=1, image_macs=10),
        FakeBiEncoder("medium", seed=2, image_macs=100),
        FakeBiEncoder("large", seed=3, image_macs=1000),
    ]


def brute_force(encoder: FakeBiEncoder, corpus: Corpus, query: str) -> tuple[list[str], np.ndarray]:
    """The encoder's own ranking of the whole corpus, computed without the searcher."""
    features = encoder.encode_images([corpus.load(i) for i in corpus.ids])
    scores = features @ encoder.encode_texts([query])[0]
    order = np.argsort(-scores, kind="stable")
    return [corpus.ids[i] for i in order], scores[order]


@pytest.mark.parametrize("query", QUERIES)
def test_cascade_with_k_equal_n_is_the_last_levels_brute_force(corpus, query):
    levels = three_levels()
    searcher = CascadeSearcher(levels, corpus)
    result = searcher.search(query, ks=[N_IMAGES] * 3)
    expected_ids, expected_scores = brute_force(levels[-1], corpus, query)
    assert list(result.ids) == expected_ids
    np.testing.assert_allclose(result.scores, expected_scores, rtol=1e-5)


def test_single_level_is_plain_bi_encoder_top_k(corpus):
    encoder = FakeBiEncoder("small", seed=1, image_macs=10)
    result = CascadeSearcher([encoder], corpus).search("a red circle", ks=[7])
    expected_ids, _ = brute_force(encoder, corpus, "a red circle")
    assert list(result.ids) == expected_ids[:7]
    assert result.levels[0].candidates == N_IMAGES and result.levels[0].misses == 0
    assert result.image_macs == 0  # level 1 was paid for at build time


def test_cascade_keeps_the_top_k_of_each_level_in_order(corpus):
    levels = three_levels()
    result = CascadeSearcher(levels, corpus).search("two blue squares", ks=[20, 8, 3])
    first, second, third = result.levels
    assert (first.k, second.k, third.k) == (20, 8, 3)
    assert second.candidates == 20 and third.candidates == 8
    assert set(second.ids) <= set(first.ids) and set(third.ids) <= set(second.ids)
    assert list(first.scores) == sorted(first.scores, reverse=True)
    assert list(third.scores) == sorted(third.scores, reverse=True)


def test_repeated_query_spends_no_image_macs(corpus):
    searcher = CascadeSearcher(three_levels(), corpus)
    first = searcher.search("a small green triangle", ks=[15, 5, 2])
    again = searcher.search("a small green triangle", ks=[15, 5, 2])
    assert first.image_macs > 0
    assert again.image_macs == 0
    assert [level.misses for level in again.levels] == [0, 0, 0]
    assert [level.hits for level in again.levels] == [N_IMAGES, 15, 5]
    assert again.ids == first.ids


def test_metered_macs_equal_misses_times_macs_per_image(corpus):
    levels = three_levels()
    cache = MemoryCache()
    searcher = CascadeSearcher(levels, corpus, cache=cache)
    searcher.build()
    misses = [0, 0, 0]
    for query in QUERIES:
        result = searcher.search(query, ks=[12, 6, 3])
        for i, (level, trace) in enumerate(zip(levels, result.levels)):
            assert trace.image_macs == trace.misses * level.image_macs
            assert trace.hits + trace.misses == trace.candidates
            misses[i] += trace.misses
    # every miss is one image embedded once and cached: the cache holds exactly that many rows
    assert misses[1] == cache.count(levels[1].id) == levels[1].images_encoded
    assert misses[2] == cache.count(levels[2].id) == levels[2].images_encoded
    assert cache.count(levels[0].id) == N_IMAGES


def test_shared_text_tower_runs_once_per_query(corpus):
    levels = three_levels()  # all three share the "fake-text" tower
    result = CascadeSearcher(levels, corpus).search("stripes", ks=[10, 5, 2])
    assert [trace.text_macs for trace in result.levels] == [1000, 0, 0]
    assert levels[0].texts_encoded == 1 and levels[1].texts_encoded == 0


def test_separate_text_towers_each_pay(corpus):
    small = FakeBiEncoder("small", seed=1, image_macs=10, text_tower="a")
    large = FakeBiEncoder("large", seed=3, image_macs=1000, text_tower="b")
    result = CascadeSearcher([small, large], corpus).search("stripes", ks=[10, 2])
    assert [trace.text_macs for trace in result.levels] == [1000, 1000]


def test_precomputed_text_embeddings_are_used_and_billed_as_if_computed(corpus):
    def levels():
        return [FakeBiEncoder("small", seed=1, image_macs=10, text_tower="a"),
                FakeBiEncoder("large", seed=3, image_macs=1000, text_tower="b")]  # fmt: skip

    computed = CascadeSearcher(levels(), corpus).search("stripes", ks=[10, 2])
    given_levels = levels()
    given = {"a": given_levels[0].encode_texts(["stripes"])[0]}  # only the first tower's: the second computes its own
    before = [level.texts_encoded for level in given_levels]
    result = CascadeSearcher(given_levels, corpus).search("stripes", ks=[10, 2], text_embeddings=given)
    assert [level.texts_encoded - b for level, b in zip(given_levels, before)] == [0, 1]
    assert result.ids == computed.ids
    assert [t.text_macs for t in result.levels] == [t.text_macs for t in computed.levels] == [1000, 1000]
    assert set(given) == {"a"}  # the caller's mapping is not written to


def test_cross_encoder_stage_reranks_and_pays_per_pair(corpus):
    bi, cross = FakeBiEncoder("small", seed=1, image_macs=10), FakeCrossEncoder(pair_macs=300)
    searcher = CascadeSearcher([bi, cross], corpus)
    result = searcher.search("left of the star", ks=[9, 4])
    stage = result.levels[1]
    assert stage.candidates == 9 and stage.k == 4
    assert stage.text_macs == 9 * 300
    assert stage.image_macs == stage.misses * cross.image_macs == 9 * 500
    expected = cross.score("left of the star", cross.encode_images([corpus.load(i) for i in result.levels[0].ids]))
    assert list(stage.scores) == pytest.approx(sorted(expected.tolist(), reverse=True)[:4], rel=1e-6)
    again = searcher.search("left of the star", ks=[9, 4])
    assert again.levels[1].image_macs == 0 and again.levels[1].text_macs == 9 * 300


def test_build_reuses_cached_rows_and_resumes(corpus):
    cache = MemoryCache()
    level1 = FakeBiEncoder("small", seed=1, image_macs=10)
    half = corpus.ids[: N_IMAGES // 2]
    cache.put(level1.id, dict(zip(half, level1.encode_images([corpus.load(i) for i in half]))))
    level1.images_encoded = 0
    report = CascadeSearcher([level1], corpus, cache=cache).build()
    assert (report.embedded, report.reused, report.image_macs) == (N_IMAGES - len(half), len(half), 10 * 30)
    assert level1.images_encoded == N_IMAGES - len(half)
    again = CascadeSearcher([level1], corpus, cache=cache).build()
    assert again.embedded == 0 and again.reused == N_IMAGES


@pytest.mark.parametrize(
    ("query", "ks", "message"),
    [
        ("", [10, 5, 2], "query is empty"),
        ("   \n\t", [10, 5, 2], "query is empty"),
        ("ok", [10, 0, 0], "at least 1"),
        ("ok", [10, -1, -2], "at least 1"),
        ("ok", [N_IMAGES + 1, 5, 2], "larger than the collection"),
        ("ok", [5, 10, 2], "must not grow"),
        ("ok", [10, 5], "one k per level"),
        ("ok", [10, 5, 2, 1], "one k per level"),
        ("ok", [10, 5.5, 2], "whole numbers"),
    ],
)
def test_bad_search_input_is_one_clear_error(corpus, query, ks, message):
    searcher = CascadeSearcher(three_levels(), corpus)
    with pytest.raises(ConfigError, match=message):
        searcher.search(query, ks=ks)


def test_bad_cascades_are_refused(corpus):
    with pytest.raises(ConfigError, match="level 1 must be a bi-encoder"):
        CascadeSearcher([FakeCrossEncoder(), FakeBiEncoder("s", 1, 10)], corpus)
    with pytest.raises(ConfigError, match="only be the last stage"):
        CascadeSearcher([FakeBiEncoder("s", 1, 10), FakeCrossEncoder(), FakeBiEncoder("l", 3, 99)], corpus)
    with pytest.raises(ConfigError, match="at least one level"):
        CascadeSearcher([], corpus)
    with pytest.raises(ConfigError, match="empty"):
        CascadeSearcher([FakeBiEncoder("s", 1, 10)], Corpus(ids=[]))


def test_threads_never_embed_an_image_twice(corpus):
    levels = three_levels()
    cache = MemoryCache()
    searcher = CascadeSearcher(levels, corpus, cache=cache)
    searcher.build()
    results = []

    def worker(offset: int) -> None:
        for i in range(10):
            results.append(searcher.search(QUERIES[(offset + i) % len(QUERIES)] + f" {i % 3}", ks=[20, 10, 3]))

    errors = run_in_threads(worker, 8)
    assert not errors
    assert len(results) == 80
    for index in (1, 2):
        total_misses = sum(r.levels[index].misses for r in results)
        assert total_misses == levels[index].images_encoded == cache.count(levels[index].id)


def _stable_top_k(scores: np.ndarray, k: int) -> list[int]:
    """The promise, computed by hand: best score first, ties in incoming order."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]


@pytest.mark.parametrize("seed", range(5))
def test_top_k_keeps_incoming_order_among_ties_at_the_cut(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 3, size=500).astype(np.float32)  # three values: most of the cut is a tie
    for k in (1, 7, 100, 333, 499, 500):
        assert _top_k(scores, k).tolist() == _stable_top_k(scores, k), k


def test_top_k_of_all_equal_scores_is_the_incoming_order():
    assert _top_k(np.zeros(50, dtype=np.float32), 10).tolist() == list(range(10))


def _float16_searcher() -> tuple[CascadeSearcher, np.ndarray, dict[str, np.ndarray]]:
    """An ``exact:float16`` one-level searcher over 3,000 cached rows, its stored matrix and its queries.

    Rows 100-139 equal row 7 and row 900 differs from row 8 by less than float16 resolves: in
    storage they are exact ties, which must keep corpus order, and they are what the queries are near.
    """
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(3000, 32)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    rows[100:140] = rows[7]
    rows[900] = rows[8].astype(np.float16).astype(np.float32) * np.float32(1 + 2.0**-14)  # < half a float16 step
    queries = {"seven": rows[7] + 0.05 * rng.normal(size=32), "eight": rows[8] + 0.05 * rng.normal(size=32)}
    queries = {text: (q / np.linalg.norm(q)).astype(np.float32) for text, q in queries.items()}
    level = FakeBiEncoder("small", seed=1, image_macs=10, dim=32)
    level.encode_texts = lambda texts: np.stack([queries[text] for text in texts])
    corpus = virtual_corpus(len(rows))
    cache = MemoryCache()
    cache.put(level.id, dict(zip(corpus.ids, rows)))
    return CascadeSearcher([level], corpus, cache=cache, index=IndexPlan("exact:float16")), rows, queries


def _brute_force_float16(half: np.ndarray, query: np.ndarray, k: int) -> tuple[list[int], list[float]]:
    """The promise, computed by hand: exact scores of the stored float16 values, best first, ties in corpus order.

    Each product of a float16 and a float32 is exact in float64; ``math.fsum`` adds them exactly rounded.
    """
    scores = [math.fsum(products) for products in half.astype(np.float64) * query.astype(np.float64)]
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]
    return order, [scores[i] for i in order]


def test_float16_level_one_is_the_exact_ranking_of_the_stored_values():
    searcher, rows, queries = _float16_searcher()
    half = rows.astype(np.float16)
    assert np.array_equal(half[900], half[8]) and not np.array_equal(rows[900], rows[8])  # a tie made by storage
    for k in (1, 10, 41, 60, 3000):  # 41: the cut falls inside the tied block; 3000: every row
        many = list(searcher.search_many(list(queries), ks=[k]))
        for result, (text, query) in zip(many, queries.items()):
            order, scores = _brute_force_float16(half, query, k)
            for got in (searcher.search(text, ks=[k]), result):
                assert got.ids == tuple(searcher.corpus.ids[i] for i in order), (text, k)
                np.testing.assert_allclose(got.scores, scores, rtol=0, atol=1e-6)
    seven, _ = _brute_force_float16(half, queries["seven"], 41)
    eight, _ = _brute_force_float16(half, queries["eight"], 2)
    assert seven == [7, *range(100, 140)] and eight == [8, 900]  # the ties are what the queries find first


@pytest.mark.parametrize(
    ("name", "cross"),
    [
        ("shapes:small", False),
        ("shapes:cross", True),
        ("shapes:cross@0123abcd", True),
        ("openclip:ViT-B-16@laion2b_s34b_b88k", False),
        ("blip:base", False),
        ("blip:base+itm", True),
        ("blip:large+itm@transformers", True),
        ("blip:/models/my-blip+itm", True),
    ],
)
def test_the_registry_says_which_names_are_cross_encoders_without_building_them(name, cross):
    assert is_cross_encoder(name) is cross


def test_is_cross_encoder_refuses_an_unknown_backend():
    with pytest.raises(EncoderNotFound, match="unknown encoder backend 'nope'"):
        is_cross_encoder("nope:thing")


class GatedEncoder(FakeBiEncoder):
    """A fake level 2 whose ``encode_pixels`` first calls ``gate(pixels)``: tests hold encodes open with it."""

    def __init__(self, gate) -> None:
        super().__init__("gated", seed=3, image_macs=1000)
        self.gate = gate

    def encode_pixels(self, pixels):
        self.gate(pixels)
        return super().encode_pixels(pixels)


def test_misses_on_disjoint_images_encode_at_the_same_time(corpus):
    both_inside = threading.Barrier(2, timeout=30)  # passes only if both encodes are in progress at once
    level2 = GatedEncoder(lambda pixels: both_inside.wait())
    searcher = CascadeSearcher([FakeBiEncoder("small", seed=1, image_macs=10), level2], corpus)
    halves = [corpus.ids[:10], corpus.ids[10:20]]
    out: dict[int, list[str]] = {}

    def worker(thread: int) -> None:
        out[thread] = searcher._features(1, level2, halves[thread])[1]

    errors = run_in_threads(worker, 2)
    assert not errors  # a serialised pair would break the barrier (BrokenBarrierError)
    assert out == {0: halves[0], 1: halves[1]}
    assert level2.images_encoded == 20


def test_an_image_being_encoded_is_waited_for_not_encoded_again(corpus):
    """Thread A holds image X's encode open; B needs X and Y: it encodes Y meanwhile, then waits for X."""
    x, y = corpus.ids[0], corpus.ids[1]
    a_inside, b_done_with_y = threading.Event(), threading.Event()
    calls: list[int] = []

    def gate(pixels) -> None:
        calls.append(len(pixels))
        if len(calls) == 1:  # A's encode of X
            a_inside.set()
            assert b_done_with_y.wait(30), "B's encode of Y never ran while A was encoding X"

    level2 = GatedEncoder(gate)
    searcher = CascadeSearcher([FakeBiEncoder("small", seed=1, image_macs=10), level2], corpus)
    out: dict[str, tuple[np.ndarray, list[str]]] = {}

    def worker(thread: int) -> None:
        if thread == 0:
            out["a"] = searcher._features(1, level2, [x])
        else:
            assert a_inside.wait(30)
            original = searcher._fill

            def fill_then_signal(index, level, claim, *clock):
                encoded = original(index, level, claim, *clock)
                b_done_with_y.set()
                return encoded

            searcher._fill = fill_then_signal
            out["b"] = searcher._features(1, level2, [x, y])

    errors = run_in_threads(worker, 2)
    assert not errors
    assert out["a"][1] == [x] and out["b"][1] == [y]  # X billed to A only; B's X was a hit
    assert calls == [1, 1] and level2.images_encoded == 2
    expected = level2.encode_images([corpus.load(x)])[0]
    np.testing.assert_array_equal(out["b"][0][0], out["a"][0][0])
    np.testing.assert_allclose(out["b"][0][0], expected, rtol=1e-6)


def test_a_failed_encode_is_claimed_again_by_a_waiting_query(corpus):
    x = corpus.ids[0]
    a_inside, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def gate(pixels) -> None:
        calls.append(len(pixels))
        if len(calls) == 1:
            a_inside.set()
            release.wait(30)
            raise RuntimeError("encoder crashed")

    level2 = GatedEncoder(gate)
    searcher = CascadeSearcher([FakeBiEncoder("small", seed=1, image_macs=10), level2], corpus)
    out: dict[int, list[str]] = {}

    def worker(thread: int) -> None:
        if thread == 1:
            a_inside.wait(30)
            original = searcher._fill
            searcher._fill = lambda *args: (release.set(), original(*args))[1]  # A fails once B has claimed nothing
        out[thread] = searcher._features(1, level2, [x])[1]

    errors = run_in_threads(worker, 2)
    assert [str(e) for e in errors] == ["encoder crashed"]
    assert out == {1: [x]} and calls == [1, 1] and level2.images_encoded == 1


def test_a_cross_encoder_on_the_shared_text_tower_takes_the_querys_embedding(tmp_path):
    """[shapes:small, shapes:cross]: the query goes through the shared text tower once, and the scores are the
    cross-encoder's own (its text pass is the bi-encoder's embedding, bit for bit)."""
    from cascade import world
    from cascade.encoders import create_encoder

    json_path, root = world.materialise_small(tmp_path / "world", n_images=30)
    corpus = Corpus.from_karpathy(json_path, root)
    small, cross = create_encoder("shapes:small"), create_encoder("shapes:cross")
    assert cross.query_tower_id == small.text_tower_id and cross._text is small._text  # one module: one count
    query = corpus.captions[corpus.ids[0]][0]
    text_passes = []
    hook = cross._text.register_forward_hook(lambda *_: text_passes.append(1))
    try:
        searcher = CascadeSearcher([small, cross], corpus, cache=MemoryCache())
        searcher.build()
        result = searcher.search(query, [12, 5])
        assert text_passes == [1]  # level 1's pass only: the cross-encoder reused its embedding
        features = cross.encode_images([corpus.load(i) for i in result.levels[0].ids])
        own = cross.score(query, features)  # the cross-encoder encoding the query itself
    finally:
        hook.remove()
    assert len(text_passes) == 2
    expected = [result.levels[0].ids[i] for i in np.argsort(-own, kind="stable")[:5]]
    assert list(result.levels[1].ids) == expected
    np.testing.assert_array_equal(np.asarray(result.levels[1].scores, dtype=np.float32), np.sort(own)[::-1][:5])
