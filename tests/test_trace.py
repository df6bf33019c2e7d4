"""The stage trace: re-ranking per stage and the caption's own image, on searches whose ranks the test computes."""

from __future__ import annotations

from analysis.search_json import search_json
from analysis.trace import caption_target, example_queries, ordinal, target_summary
from cascade_ui.formatting import trace_markdown
from tests.app_engine import N_IMAGES, expected_levels


def test_a_caption_query_traces_its_image_through_every_stage(engine):
    choice = engine.default_choice()  # fake:small (k 20) > fake:large (k 5)
    corpus = engine.corpus(choice.gallery)
    image_id = corpus.ids[7]
    query = corpus.captions[image_id][0]
    outcome = engine.search(choice, query)
    trace = search_json(outcome.result, outcome.corpus)["trace"]
    (first_ids, _), (second_ids, _) = expected_levels(query, corpus, [("fake:small", 20), ("fake:large", 5)])

    (stage,) = trace["stages"]
    assert [m["id"] for m in stage["moves"]] == second_ids
    for rank, move in enumerate(stage["moves"], start=1):
        was = first_ids.index(move["id"]) + 1
        assert (move["rank"], move["previous_rank"]) == (rank, was)
        assert move["move"] == ("new" if was > 5 else "up" if was > rank else "down" if was < rank else "same")
    assert stage["previous_top_k_survived"] == len(set(first_ids[:5]) & set(second_ids))

    target = trace["target"]
    assert target["id"] == image_id and target["file"] == corpus.paths[image_id].name
    ranks = [first_ids.index(image_id) + 1 if image_id in first_ids else None,
             second_ids.index(image_id) + 1 if image_id in second_ids else None]  # fmt: skip
    assert [row["rank"] for row in target["stages"]] == ranks
    assert [row["of"] for row in target["stages"]] == [N_IMAGES, 20]
    text = trace_markdown(trace)
    assert target["summary"] in text and "of the previous stage's top 5 survived" in text


def test_the_summary_reads_aloud():
    where = [{"stage": 1, "rank": 12, "of": 5000, "kept": 100}, {"stage": 2, "rank": 1, "of": 100, "kept": 10}]
    assert target_summary(where) == "level 1 ranked it 12th of 5,000, level 2 put it 1st of 100"
    dropped = [{"stage": 1, "rank": None, "of": 5000, "kept": 100}, {"stage": 2, "rank": None, "of": 100, "kept": 10}]
    assert target_summary(dropped) == "level 1 dropped it (not in its top 100 of 5,000)"
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 111)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "111th"]  # fmt: skip


def test_free_text_has_no_target_and_examples_are_captions(engine):
    corpus = engine.corpus(engine.default_choice().gallery)
    assert caption_target("no caption says exactly this", corpus) is None
    examples = example_queries(corpus, n=4)
    assert len(examples) == 4 and all(any(text in c for c in corpus.captions.values()) for text in examples)
    assert example_queries(corpus, n=4) == examples  # a fixed draw


def test_the_caption_target_is_its_one_owner_in_each_corpus():
    from cascade.corpus import Corpus

    captions = {"a": ["Two  Red circles"], "b": ["a star", "shared"], "c": ["shared"]}
    first = Corpus(ids=["a", "b", "c"], captions=captions)
    assert caption_target(" two red   CIRCLES ", first) == "a"  # case and spacing aside
    assert caption_target("a star", first) == "b"
    assert caption_target("shared", first) is None  # two images: no single target
    assert caption_target("two red", first) is None  # a prefix is not a caption
    second = Corpus(ids=["x", "y"], captions={"x": ["shared"], "y": ["two red circles"]})
    assert caption_target("shared", second) == "x"  # each corpus its own answer, asked after the first
    assert caption_target("two red circles", second) == "y"
    assert caption_target("two red circles", first) == "a"
