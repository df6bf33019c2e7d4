"""The Cost tab's measured alpha comes from this cascade's logged queries, not from whatever the cache holds."""

from __future__ import annotations

import pytest

from analysis.engine import Choice
from analysis.galleries import GallerySource
from tests.app_engine import LARGE_MACS, N_IMAGES, SMALL_MACS, expected_levels, make_engine
from tests.fakes import count_features


def test_an_evaluation_in_between_does_not_move_the_measured_alpha(engine):
    choice = engine.default_choice()  # fake:small > fake:large, ks (20, 5)
    corpus = engine.corpus(choice.gallery)
    queries = ["a red circle", "a blue square", "a red circle"]
    for query in queries:
        engine.search(choice, query)
    handed = set().union(*(set(expected_levels(q, corpus, [("fake:small", 20)])[0][0]) for q in queries))
    assert engine.measured_alpha(choice) == pytest.approx(len(handed) / N_IMAGES)

    engine.evaluate([engine.comparisons()[1]], GallerySource("world"), limit=None)  # embeds with fake:large too
    other = Choice(choice.gallery, choice.levels, (30, 5))  # another k_1: logged, but another configuration
    engine.search(other, "a green triangle")
    cached = count_features(engine.store, "fake:large") / N_IMAGES  # what the tab used to call alpha
    assert cached > len(handed) / N_IMAGES
    assert engine.measured_alpha(choice) == pytest.approx(len(handed) / N_IMAGES)  # unchanged
    other_handed = expected_levels("a green triangle", corpus, [("fake:small", 30)])[0][0]
    assert engine.measured_alpha(other) == pytest.approx(len(set(other_handed)) / N_IMAGES)

    engine.reset_log(choice)
    assert engine.measured_alpha(choice) == 0.0 and engine.measured_alpha(other) > 0


def _by_hand(queries, corpus, k1: int) -> tuple[list[int], float]:
    """The cascade's own lifetime curve and alpha, by hand: build N x C_1, then C_2 for each image the first
    time level 1 hands it on (Algorithm 1 run on fresh fakes, never through the engine)."""
    seen, curve = set(), [N_IMAGES * SMALL_MACS]
    for query in queries:
        new = set(expected_levels(query, corpus, [("fake:small", k1)])[0][0]) - seen
        seen |= new
        curve.append(curve[-1] + len(new) * LARGE_MACS)
    return curve, len(seen) / N_IMAGES


def test_the_cost_curve_is_the_configurations_own_whatever_warmed_the_cache(tmp_path):
    """An evaluation, a k_1 sweep, then a 200-query zipf replay: the Cost tab's curve equals the same replay's
    on a fresh database, and both equal the curve worked out by hand."""
    warmed, fresh = make_engine(tmp_path / "warmed"), make_engine(tmp_path / "fresh")
    try:
        choice = warmed.default_choice()
        warmed.evaluate(warmed.comparisons(), GallerySource("world"), limit=None)  # fills fake:large's cache
        warmed.sweep_k1("fake:small", "fake:large", GallerySource("world"), [10, 20], limit=None)
        for engine in (warmed, fresh):
            engine.replay(choice, "zipf", 200, seed=3)
        got, want = warmed.cost_view(choice), fresh.cost_view(choice)
        assert got.cumulative.equals(want.cumulative) and got.per_level.equals(want.per_level)
        queries = _zipf_queries(fresh, choice)
        curve, alpha = _by_hand(queries, warmed.corpus(choice.gallery), choice.ks[0])
        assert got.cumulative["cumulative_image_macs"].tolist() == curve
        assert got.alpha == pytest.approx(alpha) == pytest.approx(warmed.measured_alpha(choice))
        # What the warmed searches paid is less: the evaluation had embedded their images already.
        assert got.paid["cumulative_image_macs"].iloc[-1] < curve[-1] == want.paid["cumulative_image_macs"].iloc[-1]
    finally:
        warmed.store.close()
        fresh.store.close()


def _zipf_queries(engine, choice) -> list[str]:
    from analysis.replay import workload

    return workload(engine.corpus(choice.gallery), "zipf", 200, 3)


def test_the_stores_sql_counts_what_the_accumulator_counts(engine):
    """``Store.lifetime_cost`` and ``handed_share`` (SQL over the log) against ``CostAccumulator`` on the same log,
    with a three-level cascade so every level's hand-off counts."""
    from analysis.accounting import CostAccumulator

    choice = Choice(engine.default_choice().gallery, ("fake:small", "fake:large", "fake:large"), (20, 8, 3))
    for query in ["a red circle", "a blue square", "a red circle", "a green star", "a purple triangle"]:
        engine.search(choice, query)
    searcher = engine.searcher(choice)
    key, corpus_id = searcher.config(choice.ks).key, searcher.corpus.fingerprint
    handed = engine.store.handed_log(key, corpus_id)
    assert len(handed) == 5 and all(len(query) == 2 for query in handed)
    counted = CostAccumulator([SMALL_MACS, LARGE_MACS, LARGE_MACS], N_IMAGES).extend(handed)
    assert engine.store.lifetime_cost(key, corpus_id) == counted.image_macs
    assert engine.store.handed_share(key, corpus_id, N_IMAGES) == pytest.approx(counted.alpha)
    by_hand = N_IMAGES * SMALL_MACS + LARGE_MACS * (
        len({i for q in handed for i in q[0]}) + len({i for q in handed for i in q[1]})
    )
    assert counted.image_macs == by_hand
