"""``cascade index``: embed a folder (or the preset's gallery) with level 1, resumably; build its level-1 index."""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

from analysis import presets, progress
from analysis.store import Store
from cascade import datasets
from cascade.encoders import create_encoder
from cascade.index import check_recall
from cascade.index_auto import recall_line
from cascade.ray_build import ray_embed
from cascade_cli import common

ENGINES = ("local", "ray")


def register(sub) -> None:
    p = common.command(sub, "index", run, "embed a folder of images with level 1 (resumable)")
    p.add_argument("--images", help="image folder, searched recursively (default: the preset's gallery)")
    p.add_argument("--dataset", choices=datasets.names(), help="a hub gallery by name instead of --images")
    common.cascade_args(p, with_ks=False)
    common.index_args(p)
    p.add_argument(
        "--index-k", type=common.positive_int, help="k_1 the index's recall is measured at (default: the preset's k_1)"
    )
    p.add_argument(
        "--engine",
        default="local",
        choices=ENGINES,
        help="local: this process (default); ray: a Ray Data pipeline (local or --ray-address)",
    )
    p.add_argument("--ray-address", help="a Ray cluster to run the ray engine on (default: a local instance)")
    p.add_argument(
        "--ray-workers",
        type=common.positive_int,
        default=2,
        help="encoder actors of the ray engine (default: %(default)s)",
    )
    p.add_argument("--shards", help="folder for the ray engine's Parquet shards (default: beside the database)")


def run(args: argparse.Namespace) -> int:
    choice = common.choice(args, common.level_names(args)[:1], (1,))  # a build: no k matters
    with Store(args.db) as store, common.bars(args) as bars:
        cascades = common.cascades(args, store)
        if args.engine == "ray":
            _ray_build(args, cascades, choice, store)
        searcher, report = cascades.build(choice, bars)
        measured = searcher.index_recall(args.index_k or presets.get(args.preset).ks[0])
    common.notes(searcher.corpus)
    skipped = len(searcher.corpus.skipped)
    payload = {"images": report.images, "embedded": report.embedded, "reused": report.reused, "skipped": skipped}
    if measured is not None:  # the exact row stays the documented one
        payload["index"] = measured.spec
        payload["index_recall"] = {
            "k": measured.k,
            "recall": measured.recall,
            "queries": measured.queries,
            "source": measured.source,
            "min_recall": args.min_index_recall,
        }
    text = (
        f"{report.images} images: {report.embedded} embedded, {report.reused} reused from the cache, "
        f"{skipped} skipped ({searcher.levels[0].id})"
    )
    if measured is not None:
        text += "\n" + recall_line(measured)
    common.emit(args, payload, text)
    if measured is not None:
        check_recall(measured, args.min_index_recall)  # printed first, then refused: the figure is the reason
    return 0


def _ray_build(args: argparse.Namespace, cascades, choice, store: Store) -> None:
    """Embed what the cache lacks on Ray Data, then import the shards (the local build then finds them all)."""
    make = partial(create_encoder, choice.levels[0])  # each actor creates its own
    level = create_encoder(choice.levels[0])
    corpus = cascades.corpus(choice.gallery)
    shards = Path(args.shards or Path(args.db).expanduser().with_name(Path(args.db).name + ".shards"))
    cached = store.get(level.id, corpus.ids)
    todo = [image_id for image_id in corpus.ids if image_id not in cached]
    folder = shards / _safe(level.id)
    with common.bar(args, "embedding (ray)", len(todo), progress.Unit.IMAGES) as bar:
        move = progress.callback(bar)
        for shard in ray_embed(
            make, corpus, todo, folder, address=args.ray_address, workers=args.ray_workers, progress=move
        ):
            store.put(level.id, shard.features())


def _safe(encoder_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in encoder_id)
