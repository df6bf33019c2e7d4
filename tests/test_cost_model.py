"""The alpha-small-world cost model: lifetime cost, Eq. 1, k_2, the miss model, break-even points."""

import math

import numpy as np
import pytest

from analysis import cost_model as cm
from analysis.cost_model import CascadeCosts

# Image GMACs as THOP counts them (paper mode), from cascade.cost: Table 1's inputs.
VIT_B, VIT_L, VIT_G = 11.270356992, 51.895074816, 178.071404544
CONVNEXT_B, CONVNEXT_L, CONVNEXT_XXL = 20.054541312, 44.881872384, 197.968530432


def test_two_level_lifetime_cost_and_reduction_by_hand():
    cascade = CascadeCosts((1.0, 10.0), ks=(50,))
    assert cm.lifetime_gmacs_per_image(cascade, alpha=0.1) == pytest.approx(2.0)  # 1 + 0.1 * 10
    assert cm.lifetime_image_gmacs(cascade, n_images=1000, alpha=0.1) == pytest.approx(2000.0)
    assert cm.lifetime_reduction(cascade, alpha=0.1) == pytest.approx(5.0)  # 10 / 2


def test_three_level_adds_every_later_level_to_the_alpha_term():
    cascade = CascadeCosts((1.0, 4.0, 10.0), ks=(50, 14, 10))
    assert cm.lifetime_reduction(cascade, alpha=0.1) == pytest.approx(10.0 / 2.4)
    # Section 3: the 2-level cascade [C_1, C_L] always has the larger lifetime reduction.
    assert cm.lifetime_reduction(CascadeCosts((1.0, 10.0)), 0.1) > cm.lifetime_reduction(cascade, 0.1)


@pytest.mark.parametrize(("alpha", "expected"), [(0.0, 10.0), (1.0, 10.0 / 11.0)])
def test_alpha_extremes(alpha, expected):
    # alpha = 0: the later levels never run; alpha = 1: every level embeds every image.
    assert cm.lifetime_reduction(CascadeCosts((1.0, 10.0)), alpha) == pytest.approx(expected)


def test_single_encoder_against_a_reference():
    single = CascadeCosts((VIT_B,))
    assert cm.lifetime_reduction(single, alpha=0.1, reference_gmacs=VIT_G) == pytest.approx(VIT_G / VIT_B)
    assert cm.lifetime_reduction(single, alpha=0.1) == pytest.approx(1.0)
    assert cm.early_query_image_gmacs(single) == 0.0
    with pytest.raises(ValueError, match="single encoder"):
        cm.early_latency_reduction(single)


def test_early_query_cost_and_eq1_by_hand():
    cascade = CascadeCosts((1.0, 4.0, 10.0), ks=(50, 14))
    assert cm.early_query_image_gmacs(cascade) == pytest.approx(50 * 4 + 14 * 10)
    assert cm.early_latency_reduction(cascade) == pytest.approx(50 * 10 / 340)
    # The last k (results) costs nothing: giving it changes no figure.
    assert cm.early_query_image_gmacs(CascadeCosts((1.0, 4.0, 10.0), ks=(50, 14, 5))) == pytest.approx(340)
    assert cm.early_latency_reduction(CascadeCosts((1.0, 10.0), ks=(50, 10))) == pytest.approx(1.0)


def test_k2_solves_eq1_and_reproduces_the_papers_k2():
    k2 = cm.k2_for_early_latency_reduction((CONVNEXT_B, CONVNEXT_L, CONVNEXT_XXL), k1=50, target=2.0)
    assert 50 * CONVNEXT_XXL / (50 * CONVNEXT_L + k2 * CONVNEXT_XXL) == pytest.approx(2.0)
    assert k2 == pytest.approx(13.664, abs=1e-3)
    assert math.ceil(k2) == 14  # the paper's k_2 / k_1 = 0.28
    vit = cm.early_latency_reduction(CascadeCosts((VIT_B, VIT_L, VIT_G), ks=(50, 14)))
    convnext = cm.early_latency_reduction(CascadeCosts((CONVNEXT_B, CONVNEXT_L, CONVNEXT_XXL), ks=(50, 14)))
    assert (round(vit, 2), round(convnext, 2)) == (1.75, 1.97)


def test_k2_rejects_unreachable_targets():
    with pytest.raises(ValueError, match="out of reach"):
        cm.k2_for_early_latency_reduction((1.0, 5.0, 10.0), k1=50, target=2.0)  # C_3 / C_2 = 2
    with pytest.raises(ValueError, match="3-level"):
        cm.k2_for_early_latency_reduction((1.0, 10.0), k1=50, target=1.5)


def test_summarize_fills_early_latency_only_for_deep_cascades():
    two = cm.summarize(CascadeCosts((1.0, 10.0), ks=(50,)), alpha=0.1)
    three = cm.summarize(CascadeCosts((1.0, 4.0, 10.0), ks=(50, 14)), alpha=0.1)
    assert two.early_latency_reduction is None and two.lifetime_reduction == pytest.approx(5.0)
    assert three.early_latency_reduction == pytest.approx(500 / 340)
    assert three.early_query_image_gmacs == pytest.approx(340)
    assert three.lifetime_gmacs_per_image == pytest.approx(2.4)


def test_miss_model_starts_at_the_early_query_cost_and_tends_to_the_lifetime_bound():
    cascade = CascadeCosts((1.0, 4.0, 10.0), ks=(50, 14))
    n_images, alpha = 100_000, 0.1
    costs = cm.cost_vs_queries(cascade, n_images, alpha, np.array([0, 1, 10, 100, 10_000, 10**7]))
    assert costs[0] == pytest.approx(1.0 * n_images)  # build only
    assert costs[1] - costs[0] == pytest.approx(cm.early_query_image_gmacs(cascade))  # first query: all misses
    assert np.all(np.diff(costs) > 0)
    assert costs[-1] == pytest.approx(cm.lifetime_image_gmacs(cascade, n_images, alpha))
    assert np.all(costs <= cm.lifetime_image_gmacs(cascade, n_images, alpha) + 1e-6)


def test_miss_model_by_hand_and_single_encoders_are_flat():
    # Pool of 100 images, 10 per query: after 2 queries 100 * (1 - 0.9^2) = 19 distinct images.
    assert cm.expected_embedded(10, 100.0, [0, 1, 2]) == pytest.approx([0.0, 10.0, 19.0])
    assert cm.expected_embedded(500, 100.0, [1, 5]) == pytest.approx([100.0, 100.0])  # k covers the pool
    flat = cm.cost_vs_queries(CascadeCosts((3.0,)), 1000, 0.1, [0, 1, 10**6])
    assert flat == pytest.approx([3000.0] * 3)


def _break_even_by_brute_force(cascade, single_gmacs, n_images, alpha, limit=100_000):
    pool = alpha * n_images
    for q in range(limit):
        total = cascade.image_gmacs[0] * n_images + sum(
            c * pool * (1 - (1 - k / pool) ** q) for k, c in zip(cascade.handoff_ks, cascade.image_gmacs[1:])
        )
        if total >= single_gmacs * n_images:
            return q
    return None


def test_break_even_against_each_single_encoder():
    cascade = CascadeCosts((1.0, 2.0, 10.0), ks=(50, 14))
    n_images, alpha = 10_000, 0.1  # lifetime bound 2.2 GMACs per image: above C_2 = 2, below C_3 = 10
    assert cm.break_even_queries(cascade, 1.0, n_images, alpha) == 0  # never cheaper than its first level
    assert cm.break_even_queries(cascade, 10.0, n_images, alpha) is None  # always cheaper than its last
    middle = cm.break_even_queries(cascade, 2.0, n_images, alpha)
    assert middle == _break_even_by_brute_force(cascade, 2.0, n_images, alpha)
    assert 10 < middle < 10_000
    curve = cm.cost_vs_queries(cascade, n_images, alpha, [middle - 1, middle])
    assert curve[0] < 2.0 * n_images <= curve[1]


@pytest.mark.parametrize(
    ("gmacs", "ks", "match"),
    [
        ((), (), "at least one level"),
        ((1.0, 0.0), (5,), "positive"),
        ((1.0, 2.0, 3.0), (5,), "need 2 or 3"),
        ((1.0, 2.0, 3.0), (5, 4, 3, 2), "need 2 or 3"),
        ((1.0, 2.0, 3.0), (5, 10), "must not grow"),
        ((1.0, 2.0), (0,), "at least 1"),
        ((1.0, 2.0), (2.5,), "whole numbers"),
    ],
)
def test_invalid_cascades_raise(gmacs, ks, match):
    with pytest.raises(ValueError, match=match):
        CascadeCosts(gmacs, ks)


def test_invalid_alpha_and_queries_raise():
    with pytest.raises(ValueError, match="alpha"):
        cm.lifetime_reduction(CascadeCosts((1.0, 2.0)), alpha=1.5)
    with pytest.raises(ValueError, match=">= 0"):
        cm.cost_vs_queries(CascadeCosts((1.0, 2.0), (5,)), 100, 0.1, [-1])


def test_numpy_integer_ks_are_accepted():
    cascade = CascadeCosts(np.array([1.0, 10.0]), ks=np.array([50, 10]))
    assert cascade.ks == (50, 10) and type(cascade.ks[0]) is int


def test_lifetime_figures_need_no_ks_but_early_ones_do():
    cascade = CascadeCosts((1.0, 10.0))
    assert cm.lifetime_reduction(cascade, 0.1) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="k values"):
        cm.early_query_image_gmacs(cascade)
    with pytest.raises(ValueError, match="k values"):
        cm.cost_vs_queries(cascade, 100, 0.1, [1])
