"""``cascade replay``: a query workload through the preset's cascade from a fresh start; measured alpha and cost.

It was ``python -m analysis.replay``. The default gallery is the preset's lifetime
gallery (see ``analysis.replay`` for why).
"""

from __future__ import annotations

import argparse

from analysis import presets, report
from analysis.cascades import Cascades, Choice
from analysis.galleries import GalleryKind, GallerySource
from analysis.query_logs import MAX_FILE_BYTES, read_query_log
from analysis.replay import WORKLOADS, workload
from cascade import datasets, units
from cascade_cli import common


def register(sub) -> None:
    p = common.command(
        sub, "replay", run, "replay a workload through the preset's cascade; measured alpha and cost", db=False
    )
    common.preset_arg(p)
    p.add_argument("--workload", default="zipf", choices=WORKLOADS)
    p.add_argument("--queries", type=common.positive_int, default=2000, help="how many queries (default: %(default)s)")
    p.add_argument(
        "--gallery",
        default="lifetime",
        choices=presets.GALLERIES,
        help="lifetime: the preset's large collection (default); test: its evaluation gallery",
    )
    p.add_argument(
        "--dataset",
        choices=datasets.names(),
        help="a hub dataset's gallery instead of --gallery (its captions make the workload)",
    )
    p.add_argument("--seed", type=int, default=0)
    common.report_arg(p)
    p.add_argument(
        "--queries-file",
        metavar="F",
        help="replay your own query log instead of --workload: text (one query a line) or CSV/Parquet "
        f"with a 'query' column (optional count, timestamp); at most {MAX_FILE_BYTES // 2**20} MiB",
    )
    common.index_args(p)


def run(args: argparse.Namespace) -> int:
    preset = presets.get(args.preset)
    kind = GalleryKind.WORLD if args.gallery == "test" else GalleryKind.LIFETIME
    gallery = GallerySource(GalleryKind.DATASET, path=args.dataset) if args.dataset else GallerySource(kind)
    where = args.dataset or args.gallery
    choice = Choice(gallery, preset.levels, preset.ks, args.index.name)
    choice.config()
    extra = {}
    if args.queries_file:  # read and checked whole before anything runs: a bad file replays nothing
        log = read_query_log(args.queries_file)
        queries, name, extra = list(log.queries), f"file:{log.name}", {"skipped_empty": log.skipped_empty}
    cascades = Cascades.in_memory(preset, min_index_recall=args.min_index_recall)
    with common.bars(args) as bars:
        corpus = cascades.corpus(gallery, bars)
        if not args.queries_file:
            queries, name = workload(corpus, args.workload, args.queries, args.seed), args.workload
        cascades.open(choice, bars)
        with common.bar(args, "queries", len(queries)) as bar:
            result = cascades.replay(choice, queries, name, on_query=lambda done, *_: bar.update(), progress=bars)
    row = {**result.as_json(), **extra, "gallery": where, "images": len(corpus), "ks": list(preset.ks)}
    alone = f"{units.gmacs(result.baseline_image_macs):,.1f} GMACs for {preset.levels[-1]} alone"
    cascade = units.gmacs(result.cascade_image_macs)
    common.emit(
        args,
        row,
        f"{row['workload']}: {row['queries']} queries on the {where} gallery ({len(corpus):,} images, "
        f"ks {preset.ks}): alpha {row['alpha']:.3f}, cascade {cascade:,.1f} GMACs vs {alone}: {row['reduction']:.2f}x",
    )
    if args.report:
        inputs = {
            "command": "cascade replay",
            "preset": args.preset,
            "cascade": " > ".join(preset.levels),
            "ks": preset.ks,
            "gallery": f"{where} ({len(corpus):,} images)",
            "workload": name,
            "queries": len(queries),
            "seed": args.seed if not args.queries_file else "",
            "queries file": args.queries_file or "",
        }
        document = report.build_report("Replay: measured cost", inputs, report.replay_sections(result))
        common.write_report(args.report, document)
    return 0
