"""``cascade reproduce``: every row of the paper's Table 1 for a dataset and family, beside the printed figures."""

from __future__ import annotations

import argparse
import json

from analysis import progress
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
    corpus = common.named_dataset(args, args.dataset)
    with Store(args.db) as store, common.bar(args, "queries", None) as bar:
        move = progress.callback(bar)

        def on_query(label: str, done: int, total: int) -> None:
            bar.set_description(label, refresh=False)  # which row of the table is being evaluated
            move(done, total)

        result = reproduce(args.dataset, args.family, store, limit=args.limit, progress=on_query, corpus=corpus)
    print(json.dumps(result.to_json_dict()) if args.json else format_reproduction(result), flush=True)
    return 0
