"""``cascade search "QUERY"``: one query through a cascade, every level's ranking and cost."""

from __future__ import annotations

import argparse

from analysis.search_json import levels_json, search_json
from analysis.store import Store
from cascade import datasets, units
from cascade.errors import ConfigError
from cascade.search import CascadeSearcher
from cascade_cli import common


def register(sub) -> None:
    p = common.command(sub, "search", run, "search the images with a cascade")
    p.add_argument("query", help="the text query")
    p.add_argument("--images", help="image folder (default: the preset's gallery)")
    p.add_argument("--dataset", choices=datasets.names(), help="a hub gallery by name instead of --images")
    common.cascade_args(p)
    common.index_args(p)


def run(args: argparse.Namespace) -> int:
    if not args.query.strip():
        raise ConfigError("the query is empty")
    config = common.config(args)  # cheap checks before scanning a folder or loading a model
    with Store(args.db) as store:
        corpus = common.corpus(args, store)
        config = common.fitted(config, args, len(corpus))
        config.check_corpus_size(len(corpus))
        searcher = CascadeSearcher(common.levels(args), corpus, cache=store, log=store, index=common.index_plan(args))
        common.build(searcher, args)
        result = searcher.search(args.query, config.ks)
    payload = levels_json(search_json(result, corpus), corpus)
    common.emit(args, payload, _text(payload))
    return 0


def _text(payload: dict) -> str:
    lines = []
    for number, level in enumerate(payload["levels"], start=1):
        lines.append(f"level {number}: {level['encoder']}  k={level['k']}  candidates={level['candidates']}  "
                     f"hits={level['hits']} misses={level['misses']}  "
                     f"image GMACs={units.gmacs(level['image_macs']):.3f}  "
                     f"text GMACs={units.gmacs(level['text_macs']):.3f}  {level['latency_ms']:.1f} ms")  # fmt: skip
        if number == len(payload["levels"]):
            lines += [f"  {rank:3d}. {r['score']:.4f}  {r['path']}" for rank, r in enumerate(level["results"], 1)]
    return "\n".join(lines)
