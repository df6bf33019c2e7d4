"""cascade_ui/formatting.py: the page's text on results written by hand, against strings and numbers worked out
by hand."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.engine import Choice, CostView, GalleryKind, GallerySource, SearchOutcome
from analysis.replay import ReplayResult
from analysis.whatif import WhatIf
from cascade.corpus import Corpus
from cascade.types import CascadeConfig, LevelTrace, SearchResult
from cascade_ui import formatting as fmt

SMALL = LevelTrace("x:small", 50, 1000, 1000, 0, 0, 2_500_000, 1.5, ("a", "b"), (0.5, 0.25), macs_per_image=10**6)
LARGE = LevelTrace("x:large@0123456789abcdef", 2, 50, 20, 30, 30 * 4 * 10**9, 0, 10.0, ("b", "a"), (0.75, 0.125),
                   macs_per_image=4 * 10**9, missed_ids=frozenset({"a"}))  # fmt: skip
CORPUS = Corpus(ids=["a", "b", *map(str, range(998))], paths={"a": Path("/g/a.png"), "b": Path("/g/b.png")})


def test_the_cascade_is_named_with_its_ks_and_gallery():
    levels, ks = ("x:small", "x:large"), (20, 5)
    assert fmt.describe_choice(Choice(GallerySource(GalleryKind.WORLD), levels, ks)) == (
        "x:small (k=20) > x:large (k=5) on the built-in world"
    )
    assert fmt.describe_choice(Choice(GallerySource(GalleryKind.FOLDER, path="/srv/photos"), levels, ks)).endswith(
        " on /srv/photos"
    )
    assert fmt.describe_choice(Choice(GallerySource(GalleryKind.UPLOAD), levels, ks)).endswith(
        " on your uploaded images"
    )


def test_skipped_files_are_named_up_to_three():
    assert fmt.skipped_note(Corpus(ids=["a"])) == ""
    four = Corpus(ids=["a"], skipped=[Path(f"/up/{name}.txt") for name in "wxyz"])
    assert fmt.skipped_note(four) == " · 4 file(s) skipped, not readable images: w.txt, x.txt, y.txt, ..."


def test_a_stage_shows_rank_score_and_what_it_embedded_now():
    assert fmt.stage_items(LARGE, CORPUS) == [("/g/b.png", "#1 · 0.7500"), ("/g/a.png", "#2 · 0.1250 · embedded now")]
    assert fmt.stage_items(LARGE, CORPUS, shown=1) == [("/g/b.png", "#1 · 0.7500")]
    # An imported row without a file (no path) keeps its rank but has no image to show.
    fileless = Corpus(ids=["a", "path:/gone/b.jpg"], paths={"a": Path("/g/a.png")})
    ranked = LevelTrace("x:large", 2, 2, 2, 0, 0, 0, 1.0, ("path:/gone/b.jpg", "a"), (0.75, 0.125))
    assert fmt.stage_items(ranked, fileless) == [("/g/a.png", "#2 · 0.1250")]
    assert fmt.stage_label(LARGE, 2) == "Stage 2: x:large kept 2 of 50 · 30 embedded now"
    assert fmt.stage_label(LARGE, 2, shown=1) == "Stage 2: x:large kept 2 of 50, showing 1 · 30 embedded now"


def test_the_cost_card_totals_the_stages_and_prices_the_top_encoder_alone():
    result = SearchResult("q", CascadeConfig(("x:small", "x:large"), (50, 2)), (SMALL, LARGE))
    # Lifetime: build 1,000 x 1 M = 1 G, plus this query's 120 G; the top encoder alone: 1,000 x 4 G = 4 T.
    outcome = SearchOutcome(result, CORPUS, queries_logged=4, lifetime_image_macs=121 * 10**9)
    assert fmt.cost_card(outcome).split("\n") == [
        "| stage | encoder | scored | embedded now | image MACs | text MACs | wall time |",
        "|---|---|--:|--:|--:|--:|--:|",
        "| 1 | x:small | 1,000 | 0 | 0 | 2.50 M | 1.5 ms |",
        "| 2 | x:large | 50 | 30 | 120.00 G | 0 | 10.0 ms |",
        "| **total** | | | | **120.00 G** | **2.50 M** | **11.5 ms** |",
        "",
        "**Uncascaded, x:large alone** embeds all 1,000 images once: 4.00 TMACs at build, nothing per query. "
        "Over the 4 queries logged for this cascade that is 1.00 TMACs per query; the cascade has spent "
        "121.00 GMACs (its build plus every miss), 30.25 GMACs per query.",
    ]


def test_a_repeated_search_totals_zero_image_macs_in_bold():
    # Every image already cached: no stage embedded anything, so the total is a bold 0, not "**0 **".
    small = LevelTrace("x:small", 50, 1000, 1000, 0, 0, 2_500_000, 1.5, ("a", "b"), (0.5, 0.25), macs_per_image=10**6)
    large = LevelTrace("x:large", 2, 50, 50, 0, 0, 0, 10.0, ("b", "a"), (0.75, 0.125), macs_per_image=4 * 10**9)
    result = SearchResult("q", CascadeConfig(("x:small", "x:large"), (50, 2)), (small, large))
    card = fmt.cost_card(SearchOutcome(result, CORPUS, queries_logged=5, lifetime_image_macs=121 * 10**9))
    assert card.split("\n")[2:5] == [
        "| 1 | x:small | 1,000 | 0 | 0 | 2.50 M | 1.5 ms |",
        "| 2 | x:large | 50 | 0 | 0 | 0 | 10.0 ms |",
        "| **total** | | | | **0** | **2.50 M** | **11.5 ms** |",
    ]


def _view(cumulative_macs: list[int], paid_macs: list[int] | None = None, alpha: float = 0.03) -> CostView:
    def curve(macs: list[int]) -> pd.DataFrame:
        return pd.DataFrame({"query_index": range(len(macs)), "cumulative_image_macs": macs})

    baselines = pd.DataFrame(
        {
            "level": [1, 2, 3],
            "encoder_id": ["x:small", "x:mid@0123456789", "x:large"],
            "image_macs": [10**9, 50 * 10**9, 4 * 10**12],
        }
    )
    paid = curve(cumulative_macs if paid_macs is None else paid_macs)
    key = "x:small>x:mid>x:large|50,10,2"
    return CostView(key, "c0", 1000, curve(cumulative_macs), pd.DataFrame(), baselines, paid, alpha)


def test_the_cost_summary_gives_each_level_alone_its_verdict_and_says_what_searches_paid():
    # Its own lifetime: 121 G; the searches paid 61 G, another cascade having embedded some of its images first.
    assert fmt.cost_summary(_view([10**9, 101 * 10**9, 121 * 10**9], [10**9, 41 * 10**9, 61 * 10**9])).split("\n") == [
        "**x:small > x:mid > x:large (k 50,10,2)** on 1,000 images: 2 queries logged, 121.00 GMACs over its own "
        "lifetime (build included). Measured alpha 0.030, from this cascade's logged queries (the paper assumes 0.1).",
        "- Searches paid 61.00 GMACs in the shared cache (build included): less than its own cost when evaluations "
        "or other cascades had embedded the images first.",
        "- vs **x:small alone** (1.00 GMACs): costs more from the start (it is the cheapest level)",
        "- vs **x:mid alone** (50.00 GMACs): break-even at query 1",  # 101 G >= 50 G after the first query
        "- vs **x:large alone** (4.00 TMACs): not reached: 3.88 TMACs saved so far",  # 4 T - 121 G = 3.879 T
    ]
    assert " 1 query logged, 1.00 GMACs over its own " in fmt.cost_summary(_view([10**9, 10**9], alpha=0.0))
    assert fmt.cost_summary(_view([])) == "**x:small > x:mid > x:large (k 50,10,2)**: no queries logged yet."
    assert fmt.cost_summary(_view([10**9])).endswith(": no queries logged yet.")  # the build, and no query


def _replay(alpha: float, distinct: int) -> ReplayResult:
    return ReplayResult("zipf", 300, distinct, alpha, 2 * 10**9, 8 * 10**9, (10**9,), 12.34)


def test_a_replay_verdict_compares_both_alphas_and_the_fresh_system_cost():
    assert fmt.replay_done(_replay(0.12, 200), alpha_ever=0.15, k_1=15, n_images=100_000) == (
        "**Replay done:** 300 zipf queries in 12.3 s. Alpha measured in this replay (fresh system): **0.120**; "
        "handed above level 1 by all of this cascade's logged queries: **0.150**; the paper assumes **0.1**. "
        "Fresh-system cost 2.00 GMACs vs "
        "8.00 GMACs for the last level alone (4.00x)."  # 8 G / 2 G; alpha under twice the paper's: no note
    )


def test_a_high_alpha_is_explained_by_distinct_queries_and_k1():
    assert fmt.alpha_floor_note(_replay(0.12, 200), k_1=15, n_images=100_000) == ""  # near the paper's 0.1
    assert fmt.alpha_floor_note(_replay(0.0, 0), k_1=15, n_images=100_000) == ""
    assert fmt.alpha_floor_note(_replay(0.67, 548), k_1=15, n_images=5_000) == (
        " Why so high: 548 distinct queries x k_1 = 15 can hand up to 8,220 images to level 2, against 5,000 in "
        "this gallery. Alpha stays near 0.1 only in a gallery large against that: `cascade replay` "
        "replays on the preset's lifetime gallery (100,000 images)."
    )


def test_the_whatif_summary_reads_the_model():
    model = WhatIf(pd.DataFrame(), 2.5, {"B/16 alone": 0, "L/14 alone": 1234, "g/14 alone": None}, 1.7, 5020.4,
                   {"B/16": 10.0, "L/14": 50.0, "g/14": 180.0})  # fmt: skip
    assert fmt.whatif_summary(model, 1_000_000, 0.1, "paper").split("\n") == [
        "N = 1,000,000 images, alpha = 0.1, MACs: paper (GMACs per image: B/16 10.00, L/14 50.00, g/14 180.00).",
        "- Lifetime reduction against the last level alone: **2.50x**",
        "- First query (empty caches) embeds **5,020 GMACs** of images; "
        "Eq. 1 early-latency reduction against [first, last]: **1.70x**",
        "- Break-even with B/16 alone: costs more from the start",
        "- Break-even with L/14 alone: 1,234 queries",
        "- Break-even with g/14 alone: never (the cascade stays cheaper)",
    ]
    two = WhatIf(pd.DataFrame(), 2.5, {}, None, 60.0, {"B/16": 10.0, "g/14": 180.0})
    assert fmt.whatif_summary(two, 1000, 0.25, "full").split("\n")[2] == (
        "- First query (empty caches) embeds **60 GMACs** of images; "
        "Eq. 1 needs 3 levels (it compares a deep cascade with [first, last])"
    )


def test_the_evaluation_table_shortens_names_and_rounds():
    frame = pd.DataFrame({"config_key": ["x:small|10", "x:small@0123456789>x:large|20,10"], "n_images": [40, 40],
                          "n_queries": [20, 20], "r1": [5.0, 12.34], "r5": [20.0, 40.0], "r10": [30.0, 55.56],
                          "image_macs": [40_000, 1_040_000], "alpha": [0.0, 0.5234]})  # fmt: skip
    assert fmt.evaluation_table(frame).to_dict("list") == {
        "configuration": ["small (k 10)", "small > large (k 20,10)"],
        "images": [40, 40], "queries": [20, 20],
        "R@1 %": [5.0, 12.3], "R@5 %": [20.0, 40.0], "R@10 %": [30.0, 55.6],
        "lifetime image MACs": ["40.00 kMACs", "1.04 MMACs"],
        "alpha": [0.0, 0.523],
    }  # fmt: skip


def test_the_status_line_says_when_a_small_gallery_cut_the_ks():
    assert fmt.ks_cut_note((), (15, 10), 5) == ""
    assert fmt.ks_cut_note((15, 10), (5, 5), 5) == " · the gallery has 5 images, so ks 15, 10 ran as 5, 5"
