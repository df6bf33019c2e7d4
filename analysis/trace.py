"""A search you can read stage by stage: how each stage re-ranked what it was handed, and where the right image was.

For every stage after the first: each kept image's rank at the previous stage and now
(``up``, ``down``, ``same``, or ``new``: it was below the previous stage's top k and this
stage lifted it in), and how many of the previous stage's top k survived. When the query
is one of the gallery's own captions, the image it describes is the *target*, and the
trace says where it stood at each stage ("level 1 ranked it 12th of 5,000, level 2 put it 1st").

Every stage re-scores only what the previous one kept, so a kept image always has a
previous rank; ranks are 1-based.
"""

from __future__ import annotations

import random
import threading
import weakref

from cascade.corpus import Corpus
from cascade.types import SearchResult


def _normal(text: str) -> str:
    return " ".join(text.split()).casefold()


def caption_target(query: str, corpus: Corpus) -> str | None:
    """The id of the image one of whose captions is ``query`` (case and spacing aside); None if none or several."""
    owners = _caption_owners(corpus).get(_normal(query), ())
    return next(iter(owners)) if len(owners) == 1 else None


# Normalised caption -> ids of the images it describes, per corpus, built on first use: every search asks,
# and normalising a 5,000-image gallery's captions each time was most of a search's Python time in the app.
# Keyed by id() (a Corpus is unhashable) and dropped with the corpus; galleries do not change once loaded.
_OWNERS: dict[int, dict[str, frozenset[str]]] = {}
_OWNERS_LOCK = threading.Lock()


def _caption_owners(corpus: Corpus) -> dict[str, frozenset[str]]:
    index = _OWNERS.get(id(corpus))
    if index is None:
        found: dict[str, set[str]] = {}
        for image_id, captions in corpus.captions.items():
            for caption in captions:
                found.setdefault(_normal(caption), set()).add(image_id)
        index = {text: frozenset(ids) for text, ids in found.items()}
        with _OWNERS_LOCK:
            if id(corpus) not in _OWNERS:
                _OWNERS[id(corpus)] = index
                weakref.finalize(corpus, _OWNERS.pop, id(corpus), None)
    return index


def ordinal(n: int) -> str:
    """1 -> ``1st``, 12 -> ``12th``, 23 -> ``23rd``."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n:,}{suffix}"


def stage_trace(result: SearchResult, corpus: Corpus) -> dict:
    """The trace as plain data::

    {"stages": [{"stage": 2, "k": 5, "previous_top_k_survived": 3,
                 "moves": [{"id", "rank", "previous_rank", "move": "up"|"down"|"same"|"new"}]}],
     "target": None | {"id", "file", "stages": [{"stage", "rank" (None: not kept), "of", "kept"}], "summary"}}
    """
    stages = []
    for number in range(2, len(result.levels) + 1):
        before, now = result.levels[number - 2], result.levels[number - 1]
        previous = {image_id: rank for rank, image_id in enumerate(before.ids, start=1)}
        moves = []
        for rank, image_id in enumerate(now.ids, start=1):
            was = previous[image_id]
            move = "new" if was > now.k else "up" if was > rank else "down" if was < rank else "same"
            moves.append({"id": image_id, "rank": rank, "previous_rank": was, "move": move})
        survived = len(set(before.ids[: now.k]) & set(now.ids))
        stages.append({"stage": number, "k": now.k, "previous_top_k_survived": survived, "moves": moves})
    return {"stages": stages, "target": _target(result, corpus)}


def _target(result: SearchResult, corpus: Corpus) -> dict | None:
    target = caption_target(result.query, corpus)
    if target is None:
        return None
    where = []
    for number, trace in enumerate(result.levels, start=1):
        rank = trace.ids.index(target) + 1 if target in trace.ids else None
        where.append({"stage": number, "rank": rank, "of": trace.candidates, "kept": trace.k})
    path = corpus.paths.get(target)
    return {
        "id": target,
        "file": path.name if path is not None else target,
        "stages": where,
        "summary": target_summary(where),
    }


def target_summary(where: list[dict]) -> str:
    """``level 1 ranked it 12th of 5,000, level 2 put it 1st of 100`` (stopping where it was dropped)."""
    parts = []
    for row in where:
        if row["rank"] is None:
            parts.append(f"level {row['stage']} dropped it (not in its top {row['kept']:,} of {row['of']:,})")
            break
        verb = "ranked it" if row["stage"] == 1 else "put it"
        parts.append(f"level {row['stage']} {verb} {ordinal(row['rank'])} of {row['of']:,}")
    return ", ".join(parts)


def example_queries(corpus: Corpus, n: int = 4, seed: int = 0) -> list[str]:
    """``n`` of the gallery's own captions, a fixed draw: queries whose right image the trace can mark."""
    captioned = [image_id for image_id in corpus.ids if corpus.captions.get(image_id)]
    picks = random.Random(seed).sample(captioned, min(n, len(captioned)))
    return [corpus.captions[image_id][0] for image_id in picks]
