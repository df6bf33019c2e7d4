"""``cascade replay``: a query workload through the preset's cascade from a fresh start; measured alpha and cost.

It was ``python -m analysis.replay``. The default gallery is the preset's lifetime
gallery (see ``analysis.replay`` for why).

``--estimate --embeddings SRC`` instead ranks your log's distinct queries with level 1 alone on an index you
already have, read in place: your alpha at your size with no image encoded (``analysis.estimate``).
Without ``--estimate``, ``--embeddings ENC`` names an index imported into ``--db`` (``cascade
import-embeddings``) and replays on it as a gallery (``--levels`` ENC first, default ENC alone), in memory.
"""

from __future__ import annotations

import argparse

from analysis import estimate, estimate_report, presets, report
from analysis.cascades import Cascades, Choice
from analysis.galleries import GalleryKind, GallerySource
from analysis.imported import imported_folder
from analysis.query_logs import MAX_FILE_BYTES, read_query_log
from analysis.replay import WORKLOADS, workload
from cascade import datasets, units
from cascade.errors import ConfigError
from cascade.paths import default_db_path
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
    p.add_argument(
        "--db",
        default=str(default_db_path()),
        help="with --embeddings ENC and no --estimate: the database ENC's index was imported into "
        "(read, never written; default: %(default)s)",
    )
    estimate_args(p)


def estimate_args(p: argparse.ArgumentParser) -> None:
    """``--estimate`` and what it reads: an existing index (``--embeddings``) and the cascade to cost on it."""
    group = p.add_argument_group("estimate on an existing index (no image encoded, nothing written)")
    group.add_argument(
        "--estimate",
        action="store_true",
        help="rank --queries-file's distinct queries with level 1 on --embeddings: alpha and the cascade's cost",
    )
    group.add_argument(
        "--embeddings",
        metavar="SRC",
        help="with --estimate: a clip-retrieval folder, Parquet file/folder or .npy, read in place; without: "
        "ENC, an index imported into --db, replayed as the gallery",
    )
    group.add_argument("--levels", type=common.comma_list, help="ENC[,UPPER...]: the index's encoder first")
    group.add_argument("--ks", type=common.comma_ints, help="K1[,K2...]: what each level hands on")
    group.add_argument("--hardware", type=hardware_name, help="a hardware profile (default: the What-if tab's)")
    group.add_argument("--id-column", help="Parquet: the column of ids or paths")
    group.add_argument("--embedding-column", help="Parquet: the column of embeddings")
    group.add_argument("--paths", help=".npy: its paths file, one path per row")


def hardware_name(text: str) -> str:
    try:
        return estimate.hardware_named(text).name
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def run(args: argparse.Namespace) -> int:
    if args.estimate:
        return run_estimate(args)
    preset = presets.get(args.preset)
    gallery, where = _gallery(args)
    imported = gallery.kind is GalleryKind.IMPORTED
    levels, ks = (tuple(common.level_names(args)), common.ks(args)) if imported else (preset.levels, preset.ks)
    choice = Choice(gallery, levels, ks, args.index.name)
    choice.config()
    extra = {}
    if args.queries_file:  # read and checked whole before anything runs: a bad file replays nothing
        log = read_query_log(args.queries_file)
        queries, name, extra = list(log.queries), f"file:{log.name}", {"skipped_empty": log.skipped_empty}
    imports = imported_folder(args.db) if imported else None
    cascades = Cascades.in_memory(preset, imports=imports, min_index_recall=args.min_index_recall)
    with common.bars(args) as bars:
        corpus = cascades.corpus(gallery, bars)
        if not args.queries_file:
            queries, name = workload(corpus, args.workload, args.queries, args.seed), args.workload
        cascades.open(choice, bars)
        with common.bar(args, "queries", len(queries)) as bar:
            result = cascades.replay(choice, queries, name, on_query=lambda done, *_: bar.update(), progress=bars)
    row = {**result.as_json(), **extra, "gallery": where, "images": len(corpus), "ks": list(ks)}
    alone = f"{units.gmacs(result.baseline_image_macs):,.1f} GMACs for {levels[-1]} alone"
    cascade = units.gmacs(result.cascade_image_macs)
    common.emit(
        args,
        row,
        f"{row['workload']}: {row['queries']} queries on the {where} gallery ({len(corpus):,} images, "
        f"ks {ks}): alpha {row['alpha']:.3f}, cascade {cascade:,.1f} GMACs vs {alone}: {row['reduction']:.2f}x",
    )
    if args.report:
        inputs = {
            "command": "cascade replay",
            "preset": args.preset,
            "cascade": " > ".join(levels),
            "ks": ks,
            "gallery": f"{where} ({len(corpus):,} images)",
            "workload": name,
            "queries": len(queries),
            "seed": args.seed if not args.queries_file else "",
            "queries file": args.queries_file or "",
        }
        document = report.build_report("Replay: measured cost", inputs, report.replay_sections(result))
        common.write_report(args.report, document)
    return 0


def _gallery(args: argparse.Namespace) -> tuple[GallerySource, str]:
    """The gallery replayed on and how the summary names it: ``--embeddings ENC``, ``--dataset`` or ``--gallery``."""
    if args.embeddings:
        if args.dataset:
            raise ConfigError("give --embeddings ENC or --dataset NAME, not both: an imported index is a gallery")
        return GallerySource(GalleryKind.IMPORTED, path=args.embeddings), f"imported:{args.embeddings}"
    if args.dataset:
        return GallerySource(GalleryKind.DATASET, path=args.dataset), args.dataset
    kind = GalleryKind.WORLD if args.gallery == "test" else GalleryKind.LIFETIME
    return GallerySource(kind), args.gallery


def run_estimate(args: argparse.Namespace) -> int:
    if not args.embeddings:
        raise ConfigError("--estimate needs --embeddings SRC: the index level 1 ranks")
    if not args.queries_file:
        raise ConfigError("--estimate needs --queries-file LOG: the queries whose alpha it measures")
    if not args.levels or not args.ks:
        raise ConfigError("--estimate needs --levels ENC[,UPPER...] and --ks K1[,K2...]")
    layout = {"id_column": args.id_column, "embedding_column": args.embedding_column, "paths": args.paths}
    with common.bars(args) as bars:
        result = estimate.estimate_log(
            args.embeddings, args.levels, args.ks, args.queries_file, args.hardware, bars, **layout
        )
    common.emit(args, result.as_json(), estimate_report.summary(result))
    return 0
