"""One search as plain data: the app's ``/search`` answer, and the CLI's ``search --json`` as a view of it.

``search_json`` is the app's shape::

    {"query", "config",
     "stages": [{"stage", "encoder", "k", "candidates", "hits", "misses", "image_macs", "text_macs",
                 "latency_ms", "decode_ms", "preprocess_ms", "forward_ms",
                 "results": [{"rank", "id", "file", "score", "embedded_now"}]}],
     "trace": analysis.trace.stage_trace(...)}   # re-ranking per stage, the caption's own image

``levels_json`` turns it into the CLI's documented shape (README, "Command line")::

    {"query", "levels": [{"encoder", "k", "candidates", "hits", "misses", "image_macs", "text_macs",
                          "latency_ms", "results": [{"path", "score"}]}], "trace"}

The app's shape carries file names, never a ``path`` key: Gradio's client takes any dict
with a ``path`` for a file and downloads it in its place, so the API's results would
arrive as local file names instead of data.
"""

from __future__ import annotations

from pathlib import Path

from analysis.trace import stage_trace
from cascade.corpus import Corpus
from cascade.types import LevelTrace, SearchResult

_EMBED_KEYS = ("decode_ms", "preprocess_ms", "forward_ms")  # of latency_ms, embedding this stage's misses
_LEVEL_KEYS = ("encoder", "k", "candidates", "hits", "misses", "image_macs", "text_macs", "latency_ms")


def search_json(result: SearchResult, corpus: Corpus) -> dict:
    """The search per stage: its counts, MACs and wall time (ms, 3 decimals), its kept images best first.

    ``file`` is the image's file name (its id where it has no file).
    """
    stages = [_stage(number, trace, corpus) for number, trace in enumerate(result.levels, start=1)]
    return {"query": result.query, "config": result.config.key, "stages": stages, "trace": stage_trace(result, corpus)}


def levels_json(data: dict, corpus: Corpus) -> dict:
    """The CLI's ``search --json`` from ``search_json(result, corpus)``: levels unnumbered, results path and score."""
    levels = [
        {
            **{key: stage[key] for key in _LEVEL_KEYS},
            "results": [{"path": image_path(corpus, r["id"]), "score": r["score"]} for r in stage["results"]],
        }
        for stage in data["stages"]
    ]
    return {"query": data["query"], "levels": levels, "trace": data["trace"]}


def image_path(corpus: Corpus, image_id: str) -> str:
    """The image's file, or its id where it has none (a virtual corpus, e.g. a benchmark's)."""
    path = corpus.paths.get(image_id)
    return str(path) if path is not None else image_id


def _stage(number: int, trace: LevelTrace, corpus: Corpus) -> dict:
    results = [
        {
            "rank": rank,
            "id": image_id,
            "file": Path(image_path(corpus, image_id)).name,
            "score": score,
            "embedded_now": image_id in trace.missed_ids,
        }
        for rank, (image_id, score) in enumerate(zip(trace.ids, trace.scores), start=1)
    ]
    return {
        "stage": number,
        "encoder": trace.encoder,
        "k": trace.k,
        "candidates": trace.candidates,
        "hits": trace.hits,
        "misses": trace.misses,
        "image_macs": trace.image_macs,
        "text_macs": trace.text_macs,
        "latency_ms": round(trace.latency_ms, 3),
        **{key: round(getattr(trace, key), 3) for key in _EMBED_KEYS},
        "results": results,
    }
