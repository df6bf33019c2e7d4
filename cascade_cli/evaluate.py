"""``cascade eval``: Recall@1/5/10 and image cost of one cascade on a captioned dataset."""

from __future__ import annotations

import argparse
from dataclasses import replace

from analysis.evaluate import JSON_KEYS, RECALL_KS, CaptionEmbeddings, EvalResult
from analysis.store import Store
from cascade import units
from cascade.index_auto import recall_line
from cascade_cli import common


def register(sub) -> None:
    p = common.command(sub, "eval", run, "Recall@1/5/10 and image cost of a cascade on a captioned dataset")
    p.add_argument(
        "--dataset",
        help="flickr30k or coco (from the hub, materialised once), or karpathy:PATH.json "
        "with --images ROOT (default: the preset's)",
    )
    p.add_argument("--images", help="image root of the dataset")
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=common.positive_int, help="only the first N captions")
    common.embeddings_arg(p)
    common.cascade_args(p)
    common.index_args(p)


def run(args: argparse.Namespace) -> int:
    choice = common.choice(args)
    with Store(args.db) as store, common.bars(args) as bars:
        cascades = common.cascades(args, store)
        captions = CaptionEmbeddings()  # the exact-level-1 reference below reuses the queries' embeddings
        evaluation = cascades.evaluate(choice, args.limit, bars, captions)
        exact = None
        if evaluation.index_recall is not None:  # the same cascade with exact level 1: what the index costs
            exact = cascades.evaluate(replace(choice, index="exact"), args.limit, bars, captions).result
    result = evaluation.result
    payload = {key: result.as_json()[key] for key in JSON_KEYS}
    text = (
        f"{' > '.join(result.levels)}  ks={list(result.ks)}  on {evaluation.dataset} ({result.n_images} images, "
        f"{result.n_queries} queries)\n{_recalls(result)}  image GMACs {units.gmacs(result.image_macs):.2f}  "
        f"alpha {result.alpha:.3f}"
    )
    if exact is not None:
        measured = evaluation.index_recall
        exact_json = exact.as_json()
        payload |= {
            "index": measured.spec,
            "index_recall": measured.recall,
            "exact_level1": {f"r{k}": exact_json[f"r{k}"] for k in RECALL_KS},
        }
        text += f"  (level 1 on {measured.spec})\nwith exact level 1: {_recalls(exact)}\n{recall_line(measured)}"
    common.emit(args, payload, text)
    return 0


def _recalls(result: EvalResult) -> str:
    return "  ".join(f"R@{k} {value:.1f}" for k, value in result.recall.items())
