"""analysis/search_json.py: the app's /search shape and the CLI's search --json view, on a search written by hand."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from analysis.search_json import levels_json, search_json
from cascade.corpus import Corpus
from cascade.types import CascadeConfig, LevelTrace, SearchResult

LARGE = LevelTrace("x:large", 1, 2, 1, 1, 90, 0, 2.0004, ("c",), (0.75,), macs_per_image=90, missed_ids=frozenset("c"))
CORPUS = Corpus(ids=["a", "b", "c"], paths={"a": Path("/g/a.png"), "b": Path("/g/sub/b.jpg")})  # "c": no file
RESULT = SearchResult(
    query="a red circle",
    config=CascadeConfig(("x:small", "x:large"), (2, 1)),
    levels=(
        LevelTrace("x:small", 2, 3, 3, 0, 0, 700, 1.23456, ("b", "c"), (0.5, 0.25), macs_per_image=10),
        replace(LARGE, decode_ms=0.5, preprocess_ms=0.25, forward_ms=1.0004),
    ),
)

# Stage 2 kept c, 2nd at stage 1 and below its top k = 1 there: "new"; stage 1's top 1 (b) did not survive.
TRACE = {"stages": [{"stage": 2, "k": 1, "previous_top_k_survived": 0,
                     "moves": [{"id": "c", "rank": 1, "previous_rank": 2, "move": "new"}]}],
         "target": None}  # fmt: skip


def test_the_apps_shape_numbers_stages_and_ranks_and_marks_what_was_embedded_now():
    assert search_json(RESULT, CORPUS) == {
        "query": "a red circle",
        "config": "x:small>x:large|2,1",
        "stages": [
            {"stage": 1, "encoder": "x:small", "k": 2, "candidates": 3, "hits": 3, "misses": 0, "image_macs": 0,
             "text_macs": 700, "latency_ms": 1.235, "decode_ms": 0.0, "preprocess_ms": 0.0, "forward_ms": 0.0,
             "results": [{"rank": 1, "id": "b", "file": "b.jpg", "score": 0.5, "embedded_now": False},
                         {"rank": 2, "id": "c", "file": "c", "score": 0.25, "embedded_now": False}]},
            {"stage": 2, "encoder": "x:large", "k": 1, "candidates": 2, "hits": 1, "misses": 1, "image_macs": 90,
             "text_macs": 0, "latency_ms": 2.0, "decode_ms": 0.5, "preprocess_ms": 0.25, "forward_ms": 1.0,
             "results": [{"rank": 1, "id": "c", "file": "c", "score": 0.75, "embedded_now": True}]},
        ],
        "trace": TRACE,
    }  # fmt: skip


def test_the_cli_view_is_the_documented_shape_with_full_paths():
    assert levels_json(search_json(RESULT, CORPUS), CORPUS) == {
        "query": "a red circle",
        "levels": [
            {"encoder": "x:small", "k": 2, "candidates": 3, "hits": 3, "misses": 0, "image_macs": 0,
             "text_macs": 700, "latency_ms": 1.235,
             "results": [{"path": "/g/sub/b.jpg", "score": 0.5}, {"path": "c", "score": 0.25}]},
            {"encoder": "x:large", "k": 1, "candidates": 2, "hits": 1, "misses": 1, "image_macs": 90,
             "text_macs": 0, "latency_ms": 2.0, "results": [{"path": "c", "score": 0.75}]},
        ],
        "trace": TRACE,
    }  # fmt: skip
