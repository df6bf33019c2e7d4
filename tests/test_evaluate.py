"""Recall@k and the evaluator's cost accounting against independent references."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.evaluate import CaptionEmbeddings, evaluate, recall_at_k
from cascade import search
from cascade.corpus import Corpus
from cascade.errors import ConfigError
from cascade.search import CascadeSearcher
from tests.fakes import FakeBiEncoder, make_karpathy, small_and_large


def test_recall_at_k_on_hand_made_rankings():
    ranked = np.array([[3, 1, 2], [0, 2, 1], [2, 0, 1], [1, 2, 0]])
    positives = np.array([3, 1, 1, 0])
    assert recall_at_k(ranked, positives, 1) == 25.0  # only query 0
    assert recall_at_k(ranked, positives, 2) == 25.0
    assert recall_at_k(ranked, positives, 3) == 100.0
    assert recall_at_k(ranked, positives, 10) == 100.0  # k beyond the ranking: same as all of it


def reference_recalls(encoder: FakeBiEncoder, corpus: Corpus) -> dict[int, float]:
    """Rank of each caption's image by counting better-scored images: no sorting, no top-k code shared."""
    features = encoder.encode_images([corpus.load(i) for i in corpus.ids])
    ranks = []
    for position, image_id in enumerate(corpus.ids):
        for caption in corpus.captions[image_id]:
            scores = features @ encoder.encode_texts([caption])[0]
            ranks.append(int((scores > scores[position]).sum()))
    ranks = np.array(ranks)
    return {k: 100.0 * float((ranks < k).mean()) for k in (1, 5, 10)}


@pytest.mark.parametrize("captions_per_image", [1, 3])
def test_single_level_recall_matches_brute_force_reference(tmp_path, captions_per_image):
    json_path, root = make_karpathy(tmp_path, n_images=50, captions_per_image=captions_per_image)
    corpus = Corpus.from_karpathy(json_path, root, split="test")
    encoder = FakeBiEncoder("small", seed=1, image_macs=10)
    result = evaluate(CascadeSearcher([encoder], corpus), ks=[10])
    expected = reference_recalls(FakeBiEncoder("small", seed=1, image_macs=10), corpus)
    assert result.n_queries == 50 * captions_per_image
    assert (result.recall[1], result.recall[5], result.recall[10]) == pytest.approx(
        (expected[1], expected[5], expected[10])
    )
    assert 0 < result.recall[10] < 100  # random embeddings: neither trivially perfect nor empty
    assert result.image_macs == 50 * 10 and result.alpha == 0.0


def test_full_k_cascade_recall_equals_last_level_and_cost_counts_each_image_once(tmp_path):
    json_path, root = make_karpathy(tmp_path, n_images=40, captions_per_image=2)
    corpus = Corpus.from_karpathy(json_path, root, split="test")
    small, large = small_and_large()
    full = evaluate(CascadeSearcher([small, large], corpus), ks=[40, 10])
    alone = evaluate(CascadeSearcher([FakeBiEncoder("large", seed=3, image_macs=1000)], corpus), ks=[10])
    assert (full.recall[1], full.recall[5], full.recall[10]) == (alone.recall[1], alone.recall[5], alone.recall[10])
    assert full.alpha == 1.0 and full.image_macs == 40 * 10 + 40 * 1000

    partial = evaluate(CascadeSearcher([small, large], corpus), ks=[12, 10])
    handed = set()
    searcher = CascadeSearcher([small, large], corpus)
    for image_id in corpus.ids:
        for caption in corpus.captions[image_id]:
            handed.update(searcher.search(caption, ks=[12, 10]).levels[0].ids)
    assert partial.alpha == pytest.approx(len(handed) / 40)
    assert partial.image_macs == 40 * 10 + len(handed) * 1000


def test_evaluation_needs_ten_results(tmp_path):
    json_path, root = make_karpathy(tmp_path, n_images=20)
    searcher = CascadeSearcher([FakeBiEncoder("s", 1, 10)], Corpus.from_karpathy(json_path, root))
    with pytest.raises(ConfigError, match="last k >= 10"):
        evaluate(searcher, ks=[5])


def test_a_gallery_under_ten_images_is_evaluated_with_k_capped(tmp_path):
    json_path, root = make_karpathy(tmp_path, n_images=5, captions_per_image=2)
    corpus = Corpus.from_karpathy(json_path, root, split="test")
    result = evaluate(CascadeSearcher([FakeBiEncoder("small", seed=1, image_macs=10)], corpus), ks=[5])
    expected = reference_recalls(FakeBiEncoder("small", seed=1, image_macs=10), corpus)
    assert (result.recall[1], result.recall[5], result.recall[10]) == pytest.approx((expected[1], 100.0, 100.0))
    assert 0 < result.recall[1] < 100  # a real ranking: some captions' image is not first
    assert result.n_queries == 10
    with pytest.raises(ConfigError, match="last k >= 5 to measure R@5"):
        evaluate(CascadeSearcher([FakeBiEncoder("small", seed=1, image_macs=10), FakeBiEncoder("l", 3, 99)], corpus),
                 ks=[5, 4])  # fmt: skip


def per_query(searcher: CascadeSearcher) -> CascadeSearcher:
    """The searcher with ``search_many`` replaced by one ``search`` per query (the unbatched path)."""

    def one_by_one(texts, ks, text_embeddings=None):
        for i, text in enumerate(texts):
            yield searcher.search(text, ks, {tower: rows[i] for tower, rows in (text_embeddings or {}).items()})

    searcher.search_many = one_by_one
    return searcher


@pytest.mark.parametrize(("ks", "block"), [((12, 10), 256), ((12, 10), 7), ((30, 20, 10), 7), ((10,), 1)])
def test_batched_level_one_gives_the_rows_of_one_search_per_query(tmp_path, monkeypatch, ks, block):
    monkeypatch.setattr(search, "_BLOCK_QUERIES", block)  # 7: blocks of 7 queries, the last one short
    json_path, root = make_karpathy(tmp_path, n_images=40, captions_per_image=3)
    corpus = Corpus.from_karpathy(json_path, root, split="test")

    def levels():
        first = [
            FakeBiEncoder("small", seed=1, image_macs=10, text_tower="a"),
            FakeBiEncoder("medium", seed=2, image_macs=100),
        ]
        return first[: len(ks) - 1] + [FakeBiEncoder("large", seed=3, image_macs=1000, text_tower="b")]  # fmt: skip

    batched = evaluate(CascadeSearcher(levels(), corpus), ks=ks)
    unbatched = evaluate(per_query(CascadeSearcher(levels(), corpus)), ks=ks)
    assert batched == unbatched
    assert 0 < batched.recall[10] < 100 and batched.n_queries == 120


def test_search_many_traces_equal_search_traces(tmp_path, monkeypatch):
    monkeypatch.setattr(search, "_BLOCK_QUERIES", 4)
    json_path, root = make_karpathy(tmp_path, n_images=30, captions_per_image=1)
    corpus = Corpus.from_karpathy(json_path, root, split="test")
    queries = [f"query {i}" for i in range(10)] + ["query 3"]  # a repeat: all its level-2 images are hits
    many = list(CascadeSearcher(small_and_large(), corpus).search_many(queries, ks=[8, 3]))
    one = CascadeSearcher(small_and_large(), corpus)
    single = [one.search(query, ks=[8, 3]) for query in queries]

    def key(result):
        return [(t.encoder, t.k, t.candidates, t.hits, t.misses, t.image_macs, t.text_macs, t.ids, t.missed_ids)
                for t in result.levels]  # fmt: skip

    assert [key(r) for r in many] == [key(r) for r in single]
    for a, b in zip(many, single):
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)
    assert many[-1].levels[1].misses == 0 and many[3].levels[1].misses > 0


def test_evaluations_sharing_caption_embeddings_encode_each_tower_once_and_score_alike(tmp_path):
    json_path, root = make_karpathy(tmp_path, n_images=30, captions_per_image=2)
    corpus = Corpus.from_karpathy(json_path, root, split="test")

    def cascades() -> list[tuple[list[FakeBiEncoder], tuple[int, ...]]]:  # three levels, one text tower
        return [(small_and_large(), (12, 10)), ([FakeBiEncoder("large", seed=3, image_macs=1000)], (10,))]

    alone = [evaluate(CascadeSearcher(levels, corpus), ks) for levels, ks in cascades()]
    captions, runs = CaptionEmbeddings(), cascades()
    shared = [evaluate(CascadeSearcher(levels, corpus), ks, captions=captions) for levels, ks in runs]
    assert shared == alone
    # 60 captions, encoded once by the tower all three levels share ("fake-text"), by the first level to ask.
    assert [level.texts_encoded for levels, _ in runs for level in levels] == [60, 0, 0]
    with pytest.raises(ValueError, match="one list of captions"):
        evaluate(CascadeSearcher(small_and_large(), corpus), (12, 10), limit=5, captions=captions)
