"""Cascades side by side: each configuration costs what its own replay of the same queries costs, from zero."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis import cost_model
from analysis.replay import workload
from analysis.side_by_side import eq1_k2, side_by_side
from cascade.corpus import Corpus
from cascade.errors import ConfigError
from cascade.search import CascadeSearcher
from tests import brute_force
from tests.fakes import FakeBiEncoder, make_karpathy

SMALL, MEDIUM, LARGE = 1_000, 8_000, 50_000


def _encoders():
    return (FakeBiEncoder("small", seed=1, image_macs=SMALL), FakeBiEncoder("medium", seed=2, image_macs=MEDIUM),
            FakeBiEncoder("large", seed=3, image_macs=LARGE))  # fmt: skip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Corpus:
    json_path, root = make_karpathy(tmp_path_factory.mktemp("sbs"), n_images=60, captions_per_image=2)
    return Corpus.from_karpathy(json_path, root)


def test_each_configuration_costs_what_brute_force_counts(corpus):
    small, medium, large = _encoders()
    queries = workload(corpus, "zipf", n_queries=40, seed=2)
    two = CascadeSearcher([small, large], corpus)
    deep = CascadeSearcher([small, medium, large], corpus, cache=two.cache)  # one cache: the count starts at zero
    both = side_by_side([("two", two, (30, 10)), ("deep", deep, (30, 12, 10))], queries, "zipf")
    # Brute force: each query's kept lists ranked with numpy, the images each level >= 2 is handed counted here.
    lifetime = {}
    for contender, levels, ks in ((both.contenders[0], _encoders()[::2], (30, 10)),
                                  (both.contenders[1], _encoders(), (30, 12, 10))):  # fmt: skip
        kept = brute_force.cascade_kept(levels, corpus, ks, queries)
        curve, alpha = brute_force.lifetime(kept, [level.image_macs for level in levels], 60)
        assert contender.result.curve_image_macs == tuple(curve)
        assert contender.result.alpha == alpha
        assert contender.result.cascade_image_macs == curve[-1] and contender.result.queries == 40
        lifetime[contender.label] = curve[-1]
    # The first query finds every cache empty: k_1 C_2 (+ k_2 C_3): Eq. 1's early-query cost, by hand.
    two_c, deep_c = both.contenders
    assert two_c.first_query_image_macs == 30 * LARGE
    assert deep_c.first_query_image_macs == 30 * MEDIUM + 12 * LARGE
    row = both.table().set_index("configuration").loc["deep"]
    assert row["measured early reduction (x)"] == pytest.approx(30 * LARGE / (30 * MEDIUM + 12 * LARGE))
    assert row["Eq. 1 model (x)"] == pytest.approx(30 * LARGE / (30 * MEDIUM + 12 * LARGE))
    assert row["lifetime vs [first, last] (x)"] == pytest.approx(lifetime["deep"] / lifetime["two"])
    assert both.baselines == {"fake:small": 60 * SMALL, "fake:medium": 60 * MEDIUM, "fake:large": 60 * LARGE}


def test_the_model_curve_is_the_cost_model_at_the_measured_alpha(corpus):
    small, _, large = _encoders()
    queries = workload(corpus, "uniform", n_queries=25, seed=0)
    both = side_by_side([("two", CascadeSearcher([small, large], corpus), (20, 10))], queries)
    c = both.contenders[0]
    kept = brute_force.cascade_kept([small, large], corpus, (20, 10), queries)
    curve, alpha = brute_force.lifetime(kept, [SMALL, LARGE], 60)
    assert c.result.alpha == alpha
    pool = alpha * 60
    q = np.arange(26)
    expected = 60 * SMALL + LARGE * pool * (1 - (1 - 20 / pool) ** q)  # the miss model, written out
    assert np.allclose(c.model_curve_image_macs, expected)
    frame = both.curves()
    assert set(frame["kind"]) == {"measured", "model"} and len(frame) == 2 * 26
    per_query = both.per_query(first=5)
    assert per_query["image_macs"].tolist() == np.diff(curve)[:5].tolist()
    assert frame[frame["kind"] == "measured"]["cumulative_image_macs"].tolist() == curve


def test_eq1_k2_rounds_up_and_never_below_the_last_k():
    exact = cost_model.k2_for_early_latency_reduction([1.0, 8.0, 50.0], 100, 2.0)  # 100 (1/2 - 8/50) = 34
    assert math.ceil(exact - 1e-9) == 34
    assert eq1_k2([1e9, 8e9, 50e9], 100, 10, 2.0) == 34
    assert eq1_k2([1e9, 8e9, 50e9], 20, 10, 2.0) == 10  # 6.8 would let k grow again
    with pytest.raises(ValueError, match="out of reach"):
        eq1_k2([1e9, 40e9, 50e9], 100, 10, 2.0)


def test_configurations_on_different_galleries_are_refused(corpus, tmp_path):
    json_path, root = make_karpathy(tmp_path, n_images=30)
    other = Corpus.from_karpathy(json_path, root)
    small, _, large = _encoders()
    with pytest.raises(ConfigError, match="same gallery"):
        side_by_side([("a", CascadeSearcher([small, large], corpus), (20, 10)),
                      ("b", CascadeSearcher([small, large], other), (20, 10))], ["a red circle"])  # fmt: skip
