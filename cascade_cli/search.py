"""``cascade search "QUERY"``: one query through a cascade, every level's ranking and cost."""

from __future__ import annotations

import argparse

from analysis.search_json import levels_json, search_json
from analysis.store import Store
from cascade import datasets, units
from cascade.errors import ConfigError
from cascade_cli import common


def register(sub) -> None:
    p = common.command(sub, "search", run, "search the images with a cascade")
    p.add_argument("query", help="the text query")
    p.add_argument("--images", help="image folder (default: the preset's gallery)")
    p.add_argument("--dataset", choices=datasets.names(), help="a hub gallery by name instead of --images")
    common.embeddings_arg(p)
    common.cascade_args(p)
    common.index_args(p)


def run(args: argparse.Namespace) -> int:
    if not args.query.strip():
        raise ConfigError("the query is empty")
    choice = common.choice(args)  # cheap checks before scanning a folder or loading a model
    with Store(args.db) as store, common.bars(args) as bars:
        searched = common.cascades(args, store).search(choice, args.query, bars)
    common.notes(searched.corpus, searched.ks_asked, searched.result.config.ks)
    payload = levels_json(search_json(searched.result, searched.corpus), searched.corpus)
    common.emit(args, payload, _text(payload))
    return 0


def _text(payload: dict) -> str:
    lines = []
    for number, level in enumerate(payload["levels"], start=1):
        image_gmacs, text_gmacs = units.gmacs(level["image_macs"]), units.gmacs(level["text_macs"])
        lines.append(
            f"level {number}: {level['encoder']}  k={level['k']}  candidates={level['candidates']}  "
            f"hits={level['hits']} misses={level['misses']}  image GMACs={image_gmacs:.3f}  "
            f"text GMACs={text_gmacs:.3f}  {level['latency_ms']:.1f} ms"
        )
        if number == len(payload["levels"]):
            lines += [f"  {rank:3d}. {r['score']:.4f}  {r['path']}" for rank, r in enumerate(level["results"], 1)]
    return "\n".join(lines)
