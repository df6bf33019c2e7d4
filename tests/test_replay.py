"""Replays: workloads are what they claim, and the measured cost is the cost the engine metered."""

from __future__ import annotations

from collections import Counter

import pytest

from analysis.replay import replay, workload
from cascade.corpus import Corpus
from cascade.errors import ConfigError
from cascade.search import CascadeSearcher
from tests.fakes import make_karpathy, small_and_large


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Corpus:
    json_path, root = make_karpathy(tmp_path_factory.mktemp("replay"), n_images=80, captions_per_image=2)
    return Corpus.from_karpathy(json_path, root)


def test_uniform_workload_is_every_caption_once(corpus):
    queries = workload(corpus, "uniform", seed=1)
    all_captions = [c for i in corpus.ids for c in corpus.captions[i]]
    assert sorted(queries) == sorted(all_captions)
    assert queries != all_captions  # shuffled
    assert workload(corpus, "uniform", seed=1) == queries  # deterministic


def test_zipf_workload_draws_from_a_popular_tenth_with_a_skew(corpus):
    queries = workload(corpus, "zipf", n_queries=500, seed=3)
    owner = {c: i for i in corpus.ids for c in corpus.captions[i]}
    counts = Counter(owner[q] for q in queries)
    assert len(counts) <= 8  # 10% of 80 images
    top, *_, last = counts.most_common()
    assert top[1] > 3 * last[1]  # skewed, not uniform


def test_replay_cost_is_build_plus_each_needed_image_once(corpus):
    small, large = small_and_large()
    searcher = CascadeSearcher([small, large], corpus)
    queries = workload(corpus, "zipf", n_queries=60, seed=0)
    result = replay(searcher, queries, ks=[8, 3], workload_name="zipf")
    reference = CascadeSearcher(small_and_large(), corpus)
    needed = set()
    for query in queries:
        needed.update(reference.search(query, [8, 3]).levels[0].ids)
    assert result.alpha == pytest.approx(len(needed) / 80)
    assert result.cascade_image_macs == 80 * 10 + len(needed) * 1000
    assert result.cascade_image_macs == 80 * 10 + large.images_encoded * 1000  # a fresh cache: needed == embedded
    assert result.baseline_image_macs == 80 * 1000
    assert result.curve_image_macs[0] == 800 and result.curve_image_macs[-1] == result.cascade_image_macs
    assert list(result.curve_image_macs) == sorted(result.curve_image_macs)
    assert result.reduction == pytest.approx(80_000 / result.cascade_image_macs)


def test_uniform_replay_pushes_alpha_up(corpus):
    zipf_queries = workload(corpus, "zipf", 100, seed=0)
    zipf = replay(CascadeSearcher(small_and_large(), corpus),
                  zipf_queries, ks=[5, 2])  # fmt: skip
    uniform = replay(CascadeSearcher(small_and_large(), corpus),
                     workload(corpus, "uniform", seed=0), ks=[5, 2])  # fmt: skip
    # few distinct queries can only ever hand k_1 images each to level 2
    assert zipf.alpha <= len(set(zipf_queries)) * 5 / 80 < 1.0
    assert uniform.alpha == 1.0 > zipf.alpha
    assert uniform.reduction < zipf.reduction


def test_bad_workloads(corpus):
    with pytest.raises(ConfigError, match="workload must be one of"):
        workload(corpus, "bursty")
    with pytest.raises(ConfigError, match="at least 1"):
        workload(corpus, "zipf", n_queries=0)
