"""``cascade index``: embed a folder (or the preset's gallery) with level 1, resumably."""

from __future__ import annotations

import argparse

from analysis.store import Store
from cascade import datasets
from cascade.search import CascadeSearcher
from cli import common


def register(sub) -> None:
    p = common.command(sub, "index", run, "embed a folder of images with level 1 (resumable)")
    p.add_argument("--images", help="image folder, searched recursively (default: the preset's gallery)")
    p.add_argument("--dataset", choices=datasets.names(), help="a hub gallery by name instead of --images")
    common.cascade_args(p, with_ks=False)


def run(args: argparse.Namespace) -> int:
    with Store(args.db) as store:
        corpus = common.corpus(args, store)
        level = common.levels(args)[0]
        report = common.build(CascadeSearcher([level], corpus, cache=store), args)
    payload = {"images": report.images, "embedded": report.embedded, "reused": report.reused,
               "skipped": len(corpus.skipped)}  # fmt: skip
    common.emit(args, payload,
                f"{report.images} images: {report.embedded} embedded, {report.reused} reused from the cache, "
                f"{len(corpus.skipped)} skipped ({level.id})")  # fmt: skip
    return 0
