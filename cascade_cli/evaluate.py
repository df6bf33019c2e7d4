"""``cascade eval``: Recall@1/5/10 and image cost of one cascade on a captioned dataset."""

from __future__ import annotations

import argparse

from analysis import progress
from analysis.evaluate import JSON_KEYS, CaptionEmbeddings, evaluate
from analysis.store import EvalRecord, Store
from cascade import units
from cascade.search import CascadeSearcher
from cascade_cli import common


def register(sub) -> None:
    p = common.command(sub, "eval", run, "Recall@1/5/10 and image cost of a cascade on a captioned dataset")
    p.add_argument("--dataset", help="flickr30k or coco (from the hub, materialised once), or karpathy:PATH.json "
                   "with --images ROOT (default: the preset's)")  # fmt: skip
    p.add_argument("--images", help="image root of the dataset")
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=common.positive_int, help="only the first N captions")
    common.cascade_args(p)
    common.index_args(p)


def run(args: argparse.Namespace) -> int:
    config = common.config(args)
    corpus, dataset = common.dataset(args)
    config.check_corpus_size(len(corpus))
    with Store(args.db) as store:
        plan = common.index_plan(args)
        searcher = CascadeSearcher(common.levels(args), corpus, cache=store, index=plan)
        common.build(searcher, args)
        captions = CaptionEmbeddings()  # the exact-level-1 reference below reuses the queries' embeddings
        with common.bar(args, "queries", None) as bar:
            result = evaluate(searcher, config.ks, progress=progress.callback(bar), limit=args.limit, captions=captions)
        if not plan.spec.approximate:
            store.save_evaluation(EvalRecord.of(result, searcher.config(config.ks).key, dataset))
            exact = None
        else:  # the same cascade with exact level 1: what the index costs in recall, end to end
            reference = CascadeSearcher(searcher.levels, corpus, cache=store)
            reference.build()
            exact = evaluate(reference, config.ks, limit=args.limit, captions=captions)
    payload = {key: result.as_json()[key] for key in JSON_KEYS}
    text = (f"{' > '.join(result.levels)}  ks={list(result.ks)}  on {dataset} ({result.n_images} images, "
            f"{result.n_queries} queries)\nR@1 {result.r1:.1f}  R@5 {result.r5:.1f}  R@10 {result.r10:.1f}  "
            f"image GMACs {units.gmacs(result.image_macs):.2f}  alpha {result.alpha:.3f}")  # fmt: skip
    if exact is not None:
        measured = searcher.index_recall(config.ks[0])
        payload |= {"index": plan.spec.name, "index_recall": measured.recall,
                    "exact_level1": {key: getattr(exact, key) for key in ("r1", "r5", "r10")}}  # fmt: skip
        text += (f"  (level 1 on {plan.spec.name})\nwith exact level 1: R@1 {exact.r1:.1f}  R@5 {exact.r5:.1f}  "
                 f"R@10 {exact.r10:.1f}\n{common.recall_line(measured)}")  # fmt: skip
    common.emit(args, payload, text)
    return 0
