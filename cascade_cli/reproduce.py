"""``cascade reproduce``: every row of the paper's Table 1 for a dataset and family, beside the printed figures."""

from __future__ import annotations

import argparse
import json

from analysis import progress
from analysis.galleries import GalleryKind, GallerySource
from analysis.reproduce import format_reproduction, reproduce
from analysis.store import Store
from analysis.table1 import FAMILY_KEYS
from cascade import datasets
from cascade_cli import common


def register(sub) -> None:
    p = common.command(sub, "reproduce", run, "evaluate the rows of the paper's Table 1 on Flickr30k or COCO")
    p.add_argument("--dataset", required=True, choices=datasets.names())
    p.add_argument("--family", required=True, choices=tuple(FAMILY_KEYS))
    p.add_argument("--limit", type=common.positive_int, help="only the first N captions")


def run(args: argparse.Namespace) -> int:
    with Store(args.db) as store, common.bars(args) as bars:
        corpus = common.cascades(args, store).corpus(GallerySource(GalleryKind.DATASET, path=args.dataset), bars)

        def on_query(label: str, done: int, total: int) -> None:  # one bar per row of the table
            bars(progress.Step(label, progress.Unit.QUERIES), done, total)

        result = reproduce(args.dataset, args.family, store, limit=args.limit, progress=on_query, corpus=corpus)
    print(json.dumps(result.to_json_dict()) if args.json else format_reproduction(result), flush=True)
    return 0
