"""CrispSearch comparison (analysis/crisp.py) against a brute-force re-computation; the benchmarks end to end."""

from __future__ import annotations

import numpy as np
import pytest

from analysis import crisp
from cascade.corpus import Corpus
from cascade.errors import ConfigError
from tests.fakes import FakeBiEncoder, FakeCrossEncoder, make_karpathy

N_IMAGES = 30
BI_MACS, CROSS_IMAGE_MACS, PAIR_MACS = 1_000, 500, 300


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Corpus:
    json_path, image_root = make_karpathy(tmp_path_factory.mktemp("crisp"), N_IMAGES, captions_per_image=2)
    return Corpus.from_karpathy(json_path, image_root)


def encoders() -> tuple[FakeBiEncoder, FakeCrossEncoder]:
    bi = FakeBiEncoder("bi", seed=3, image_macs=BI_MACS)
    return bi, FakeCrossEncoder(seed=7, image_macs=CROSS_IMAGE_MACS, pair_macs=PAIR_MACS)


def brute_force(corpus: Corpus, texts: list[str], k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, set[int]]:
    """Rankings (positions, top 10) of the cascade, the cross-encoder alone and the bi-encoder alone; images handed."""
    bi, cross = encoders()
    images = [corpus.load(image_id) for image_id in corpus.ids]
    bi_features, cross_features = bi.encode_images(images), cross.encode_images(images)
    cascade, alone, bi_only, handed = [], [], [], set()
    for text in texts:
        bi_scores = bi_features @ bi.encode_texts([text])[0]
        top_k = np.argsort(-bi_scores, kind="stable")[:k]
        handed.update(top_k.tolist())
        reranked = top_k[np.argsort(-cross.score(text, cross_features[top_k]), kind="stable")]
        cascade.append(reranked[:10])
        alone.append(np.argsort(-cross.score(text, cross_features), kind="stable")[:10])
        bi_only.append(top_k[:10])
    return np.array(cascade), np.array(alone), np.array(bi_only), handed


def recalls(ranked: np.ndarray, positives: np.ndarray) -> tuple[float, ...]:
    return tuple(100.0 * np.mean([p in row[:k] for row, p in zip(ranked, positives)]) for k in (1, 5, 10))


def test_compare_equals_brute_force_on_a_subset_and_on_all_captions(corpus):
    bi, cross = encoders()
    k = 12
    result = crisp.compare(bi, cross, corpus, k=k, n_queries=7, n_queries_all=None)

    texts = [caption for image_id in corpus.ids for caption in corpus.captions[image_id]]
    positives = np.repeat(np.arange(N_IMAGES), 2)
    subset = crisp.spread(len(texts), 7)
    assert len(subset) == 7 and subset[0] == 0 and subset[-1] == len(texts) - 1
    cascade, alone, bi_only, handed_subset = brute_force(corpus, [texts[i] for i in subset], k)
    cascade_all, _, _, handed_all = brute_force(corpus, texts, k)
    assert result.n_queries == 7 and result.n_queries_all == len(texts) == 2 * N_IMAGES
    assert result.cascade_recall_subset == pytest.approx(recalls(cascade, positives[subset]))
    assert result.alone_recall_subset == pytest.approx(recalls(alone, positives[subset]))
    assert result.bi_recall_subset == pytest.approx(recalls(bi_only, positives[subset]))
    assert result.cascade_recall_all == pytest.approx(recalls(cascade_all, positives))

    # Per warm query: text + N dot products of width 16 + k pairs, against N pairs.
    assert result.cascade_query_macs == bi.text_macs + N_IMAGES * bi.dim + k * PAIR_MACS
    assert result.alone_query_macs == N_IMAGES * PAIR_MACS
    assert result.macs_speedup == pytest.approx(N_IMAGES * PAIR_MACS / (1000 + N_IMAGES * 16 + k * PAIR_MACS))
    # Build: level 1 embeds everything; the cross-encoder embeds what the cascade ever handed it.
    assert result.build_image_macs_cascade == N_IMAGES * BI_MACS + len(handed_subset | handed_all) * CROSS_IMAGE_MACS
    assert result.build_image_macs_alone == N_IMAGES * CROSS_IMAGE_MACS
    # What ran: one warm pass of the cross-encoder alone (N pairs), then each subset query through both sides
    # (k + N pairs), then every caption through the cascade (k pairs); the cross-encoder embeds each image once.
    assert cross.pairs_scored == N_IMAGES + 7 * (k + N_IMAGES) + 2 * N_IMAGES * k
    assert cross._inner.images_encoded == N_IMAGES and bi.images_encoded == N_IMAGES


def test_the_cascade_build_counts_only_images_handed_to_the_cross_encoder(corpus):
    bi, cross = encoders()
    result = crisp.compare(bi, cross, corpus, k=10, n_queries=1, n_queries_all=1)  # both: the first caption
    *_, handed = brute_force(corpus, [corpus.captions[corpus.ids[0]][0]], 10)
    assert len(handed) == 10
    assert result.build_image_macs_cascade == N_IMAGES * BI_MACS + 10 * CROSS_IMAGE_MACS


def test_a_k_covering_the_gallery_is_the_cross_encoder_alone(corpus):
    bi, cross = encoders()
    result = crisp.compare(bi, cross, corpus, k=N_IMAGES, n_queries=None, n_queries_all=5)
    assert result.n_queries == 2 * N_IMAGES
    assert result.cascade_recall_subset == result.alone_recall_subset
    assert result.cascade_query_macs - result.alone_query_macs == bi.text_macs + N_IMAGES * bi.dim


@pytest.mark.parametrize("k", [9, N_IMAGES + 1])
def test_k_out_of_range_is_refused(corpus, k):
    bi, cross = encoders()
    with pytest.raises(ConfigError, match="k must lie between 10 and the gallery size"):
        crisp.compare(bi, cross, corpus, k=k)


def test_spread_picks_evenly_and_refuses_nothing_asked():
    assert crisp.spread(10, None).tolist() == list(range(10))
    assert crisp.spread(10, 50).tolist() == list(range(10))
    assert crisp.spread(101, 5).tolist() == [0, 25, 50, 75, 100]
    with pytest.raises(ConfigError):
        crisp.spread(10, 0)


@pytest.mark.slow
def test_blip_macs_come_from_the_architectures():
    from cascade import cost
    from cascade.encoders.blip import count_blip_macs

    base, large = crisp.blip_config("base"), crisp.blip_config("large")
    assert (base.vision_config.image_size, base.vision_config.hidden_size, large.vision_config.hidden_size) == (
        384,
        768,
        1024,
    )
    base_macs, large_macs = count_blip_macs(base), count_blip_macs(large)
    # The same vision towers as cascade/cost.py's table (Table 1's BLIP row).
    assert base_macs.vision_macs == cost.blip_vision_macs("base")
    assert large_macs.vision_macs == cost.blip_vision_macs("large")
    # The ITM pass reads the vision states through cross-attention: wider states, dearer pairs.
    assert large_macs.pair_macs > base_macs.pair_macs > base_macs.text_macs

    # The original ITM scoring adds the ITC similarity per pair: vision_proj of the cached CLS (hidden x embed) and a
    # dot product (embed); and the query's ITC embedding once per query (the large model's text pass).
    embed = large.image_text_hidden_size
    assert large_macs.itc_pair_macs == large.vision_config.hidden_size * embed + embed
    pair = large_macs.pair_macs + large_macs.itc_pair_macs
    row = crisp.compare_architectures("base", "large", n_images=5000, k=128)
    assert row.pair_macs == pair
    assert row.alone_query_macs == large_macs.text_macs + 5000 * pair
    assert row.cascade_query_macs == (
        base_macs.text_macs + 5000 * base.image_text_hidden_size + large_macs.text_macs + 128 * pair
    )
    assert 0.95 * 5000 / 128 < row.macs_speedup < 5000 / 128
    with pytest.raises(ConfigError, match="unknown BLIP variant"):
        crisp.blip_config("huge")
