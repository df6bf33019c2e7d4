"""The Cost tab's measured alpha comes from this cascade's logged queries, not from whatever the cache holds."""

from __future__ import annotations

import pytest

from analysis.engine import Choice
from analysis.galleries import GallerySource
from tests.app_engine import N_IMAGES, expected_levels


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
    cached = engine.store.embedded_share(["fake:large"], corpus.ids)  # what the tab used to call alpha
    assert cached > len(handed) / N_IMAGES
    assert engine.measured_alpha(choice) == pytest.approx(len(handed) / N_IMAGES)  # unchanged
    other_handed = expected_levels("a green triangle", corpus, [("fake:small", 30)])[0][0]
    assert engine.measured_alpha(other) == pytest.approx(len(set(other_handed)) / N_IMAGES)

    engine.reset_log(choice)
    assert engine.measured_alpha(choice) == 0.0 and engine.measured_alpha(other) > 0
