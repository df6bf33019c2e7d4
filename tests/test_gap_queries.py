"""Queries across a modality gap (``cascade.gap_queries``): the documented cosines, ranks and gap estimate."""

from __future__ import annotations

import numpy as np
import pytest

from cascade.corpus import Corpus, virtual_corpus
from cascade.gap_queries import across_gap, encoder_gap, gap_direction, rank_of_targets, text_like_queries
from tests.fakes import FakeBiEncoder, clustered

N, DIM, CENTRES = 20_000, 512, 400
# The documented parameters (SHIFT 2.0, NOISE 2.5) give 1 / sqrt(1 + 4 + 6.25): CLIP's caption-to-image cosine.
DOCUMENTED_COSINE = 1 / np.sqrt(1 + 2.0**2 + 2.5**2)


@pytest.fixture(scope="module")
def gallery() -> np.ndarray:
    return clustered(N, DIM, CENTRES, seed=0)


@pytest.fixture(scope="module")
def targets() -> np.ndarray:
    return np.linspace(0, N - 1, 300).astype(int)


def test_queries_sit_at_the_documented_cosine_to_their_targets(gallery, targets):
    gap = gap_direction(DIM, seed=7)
    queries = across_gap(gallery[targets], gap, seed=1)
    np.testing.assert_allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-5)
    cosines = np.einsum("md,md->m", queries.astype(np.float64), gallery[targets].astype(np.float64))
    assert cosines.mean() == pytest.approx(DOCUMENTED_COSINE, abs=0.01)
    low, high = np.percentile(cosines, [5, 95])
    assert 0.25 <= low and high <= 0.35  # "about 0.25 to 0.35", as CLIP's text-to-image
    along_gap = queries.astype(np.float64) @ gap
    assert along_gap.mean() == pytest.approx(2.0 * DOCUMENTED_COSINE, abs=0.03)  # the documented 0.60
    image_neighbours = np.sort(gallery[targets[:50]] @ gallery.T, axis=1)[:, -2]  # an image's nearest other image
    assert image_neighbours.mean() > 0.7 > high  # the gap: a caption is farther from its image than images are


def test_exact_search_still_ranks_the_target_high(gallery, targets):
    queries = across_gap(gallery[targets], gap_direction(DIM, seed=7), seed=1)
    scores = queries.astype(np.float64) @ gallery.astype(np.float64).T  # (m, N), independently of the code
    by_hand = (scores > scores[np.arange(len(targets)), targets][:, None]).sum(axis=1) + 1
    ranks = rank_of_targets(gallery, queries, targets)
    assert (np.abs(ranks - by_hand) <= 1).all()  # float32 against float64 rounding may swap a near-tie
    assert np.median(by_hand) == 1 and (by_hand == 1).mean() >= 0.8 and (by_hand <= 10).mean() >= 0.99


def test_one_seed_one_set_of_queries_and_the_gap_is_shared(gallery, targets):
    gap = gap_direction(DIM, seed=7)
    first, again = across_gap(gallery[targets], gap, seed=1), across_gap(gallery[targets], gap, seed=1)
    np.testing.assert_array_equal(first, again)
    other = across_gap(gallery[targets], gap, seed=2)
    assert not np.allclose(first, other)
    # One fixed direction: the queries' mean lies along it; their noise does not.
    mean = first.mean(axis=0) - gallery[targets].mean(axis=0) * DOCUMENTED_COSINE
    assert float(mean @ gap) / np.linalg.norm(mean) > 0.95


def test_the_encoder_gap_points_from_the_image_cone_to_the_text_cone():
    rng = np.random.default_rng(3)
    image_centre, text_centre = rng.standard_normal(64), rng.standard_normal(64)
    images = image_centre + 0.3 * rng.standard_normal((2000, 64))
    texts = text_centre + 0.3 * rng.standard_normal((2000, 64))
    units = [rows / np.linalg.norm(rows, axis=1, keepdims=True) for rows in (texts, images)]
    want = units[0].mean(axis=0) - units[1].mean(axis=0)
    got = encoder_gap(texts, images)
    assert np.linalg.norm(got) == pytest.approx(1.0, abs=1e-6)
    assert float(got @ want) / np.linalg.norm(want) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="no gap"):
        encoder_gap(images, images)


def test_a_gallery_without_captions_is_measured_across_its_encoders_gap(gallery):
    level = FakeBiEncoder("small", seed=1, image_macs=10, dim=DIM)
    queries, source = text_like_queries(virtual_corpus(N), level, gallery, wanted=100)
    rows = np.linspace(0, N - 1, 100).astype(int)
    cosines = np.einsum("md,md->m", queries, gallery[rows])
    assert source == "gap" and queries.shape == (100, DIM)
    assert cosines.mean() == pytest.approx(DOCUMENTED_COSINE, abs=0.015)


def test_a_gallery_with_captions_is_measured_on_them(gallery):
    level = FakeBiEncoder("small", seed=1, image_macs=10, dim=DIM)
    ids = [f"img{i}" for i in range(N)]
    corpus = Corpus(ids=ids, captions={ids[0]: ["a red circle"], ids[5]: ["two blue squares", "a square"]})
    queries, source = text_like_queries(corpus, level, gallery, wanted=100)
    assert source == "captions"
    np.testing.assert_allclose(queries, level.encode_texts(["a red circle", "two blue squares", "a square"]))


def test_the_benchmark_measures_both_kinds_of_queries_with_this_generator(monkeypatch):
    import bench.index as bench_index

    made = []
    monkeypatch.setattr(bench_index, "across_gap", lambda *a, **kw: made.append(a) or across_gap(*a, **kw))
    report = bench_index.run(sizes=[3000], sweeps=[], skip=[], real=False)
    assert len(made) == 1 and made[0][0].shape == (bench_index.N_QUERIES, bench_index.DIM)
    kinds = [(row.method, row.queries) for row in report.rows]
    methods, kinds_in_order = ("exact float32", "exact float16"), ("in-distribution", "across the gap")
    assert kinds == [(method, kind) for kind in kinds_in_order for method in methods]
    ((kind, (median, _, _, first)),) = report.sizes[0].target_ranks
    assert kind == "across the gap"
    assert median == 1 and 0.8 <= first <= 1.0
