"""What several commands share: options, parsing helpers, corpora, progress, output."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from analysis import presets, progress
from analysis.cascades import Cascades, Choice
from analysis.galleries import GalleryKind, GallerySource, find_import
from analysis.imported import imported_folder
from analysis.store import Store
from cascade import datasets
from cascade.corpus import Corpus
from cascade.errors import ConfigError
from cascade.index import parse_index
from cascade.paths import default_db_path
from cascade.types import CascadeConfig
from cascade_cli.guard import UsageError


class Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting: the guard reports one line, exit 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def command(
    sub, name: str, run: Callable[[argparse.Namespace], int], help_text: str, db: bool = True
) -> argparse.ArgumentParser:
    """Add subcommand ``name`` with the options every command has (``--json``, ``--quiet``, and ``--db``)."""
    p = sub.add_parser(name, help=help_text, description=help_text)
    p.set_defaults(run=run)
    if db:
        p.add_argument("--db", default=str(default_db_path()), help="DuckDB file (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="machine-readable output (see README)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def preset_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="shapes", choices=presets.names(), help="defaults (default: %(default)s)")


def cascade_args(p: argparse.ArgumentParser, with_ks: bool = True) -> None:
    preset_arg(p)
    p.add_argument("--levels", type=comma_list, help="encoders, cheapest first, e.g. shapes:small,shapes:large")
    if with_ks:
        p.add_argument("--ks", type=comma_ints, help="one k per level, non-increasing, e.g. 100,10")


def index_args(p: argparse.ArgumentParser) -> None:
    """``--index`` and ``--min-index-recall``: how level 1 ranks the gallery."""
    p.add_argument(
        "--index",
        default="exact",
        type=index_spec,
        help="level 1: exact (default), exact:float16 (half the memory), faiss:FACTORY[@PARAMS][+rerank=R], "
        "e.g. faiss:HNSW32, faiss:IVF4096,PQ128x4fs@nprobe=64+rerank=40 (R x k candidates re-scored exactly from "
        "level 1's rows), or auto[@memory_gb=GB]: the fastest of a short list "
        "passing --min-index-recall at k_1, measured on the gallery's captions (else queries across its gap)",
    )
    p.add_argument(
        "--min-index-recall",
        type=float,
        default=0.95,
        help="refuse an approximate index whose level-1 recall@k_1 against exact is below this (default: %(default)s)",
    )


def index_spec(text: str):
    try:
        return parse_index(text)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def comma_list(text: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return items


def comma_ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(item) for item in comma_list(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers like 100,10, got {text!r}") from None


def embeddings_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--embeddings",
        metavar="ENC",
        help="the gallery is the index imported into --db for encoder ENC (its name as imported, or its id; "
        "see import-embeddings); --levels defaults to ENC alone",
    )


def asked_levels(args: argparse.Namespace) -> list[str] | None:
    """``--levels``, else the imported index's encoder alone (``--embeddings ENC``, by the name it was imported
    with), else None (the preset's)."""
    if args.levels or not getattr(args, "embeddings", None):
        return args.levels
    return [find_import(imported_folder(args.db), args.embeddings).name]


def level_names(args: argparse.Namespace) -> list[str]:
    return asked_levels(args) or list(presets.get(args.preset).levels)


def config(args: argparse.Namespace) -> CascadeConfig:
    return CascadeConfig(levels=tuple(level_names(args)), ks=ks(args))


def ks(args: argparse.Namespace) -> tuple[int, ...]:
    if getattr(args, "ks", None):
        return args.ks
    levels = asked_levels(args)
    if levels and len(levels) == 1:
        return (SINGLE_LEVEL_K,)  # one level: its k is just how many results to show
    if levels:
        raise ConfigError("--levels with several levels needs --ks (one k per level)")
    return presets.get(args.preset).ks


SINGLE_LEVEL_K = 10


def source(args: argparse.Namespace) -> GallerySource:
    """The gallery the command names: ``--images FOLDER``, ``--dataset NAME`` (or ``karpathy:PATH.json`` with
    ``--images ROOT``), ``--embeddings ENC`` (an index imported into ``--db``), else the preset's own."""
    dataset, images = getattr(args, "dataset", None), getattr(args, "images", None)
    embeddings = getattr(args, "embeddings", None)
    if embeddings:
        if dataset or images:
            raise ConfigError("give --embeddings ENC or --images/--dataset, not both: an imported index is a gallery")
        return GallerySource(GalleryKind.IMPORTED, path=embeddings)
    if not dataset or dataset == args.preset:
        return GallerySource(GalleryKind.FOLDER, path=images) if images else GallerySource(GalleryKind.WORLD)
    if dataset in datasets.DATASETS:
        if images and not hasattr(args, "split"):
            raise ConfigError("give --images FOLDER or --dataset NAME, not both")
        return GallerySource(GalleryKind.DATASET, path=dataset)
    kind, _, path = dataset.partition(":")
    if kind != "karpathy" or not path:
        names = ", ".join(datasets.names())
        raise ConfigError(f"--dataset must be {names} or karpathy:PATH.json, got {dataset!r}")
    if not images:
        raise ConfigError("--dataset karpathy:... needs --images ROOT (the folder the dataset's paths start from)")
    return GallerySource(GalleryKind.KARPATHY, path=path, image_root=images, split=getattr(args, "split", "test"))


def choice(args: argparse.Namespace, levels: Sequence[str] | None = None, level_ks: Sequence[int] = ()) -> Choice:
    """The command's cascade (cheap checks only: nothing is loaded); ``levels`` and ``level_ks`` override."""
    names, chosen_ks = tuple(levels or level_names(args)), tuple(level_ks) or ks(args)
    index = getattr(args, "index", None)  # an IndexSpec, parsed by argparse
    chosen = Choice(source(args), names, chosen_ks, index.name if index is not None else "exact")
    chosen.config()
    return chosen


def cascades(args: argparse.Namespace, store: Store) -> Cascades:
    """The composition root on the command's database; the command line reads any path its user names."""
    recall = getattr(args, "min_index_recall", 0.95)
    preset = presets.get(getattr(args, "preset", "shapes"))  # `reproduce` names a dataset, not a preset
    return Cascades.on_store(store, preset, any_path=True, min_index_recall=recall)


def bars(args: argparse.Namespace) -> progress.Bars:
    """The command's progress: a tqdm bar per step on stderr, none with ``--quiet``."""
    return progress.Bars(quiet=args.quiet)


def bar(args: argparse.Namespace, what: str, total: int | None, unit: progress.Unit = progress.Unit.QUERIES):
    return progress.bar(progress.Step(what, unit), total, quiet=args.quiet)


def notes(corpus: Corpus, ks_asked: Sequence[int] = (), ks: Sequence[int] = ()) -> None:
    """What the user should know beside the result, one line each on stderr: skipped files, ks cut to the gallery."""
    if corpus.skipped:
        print(f"warning: skipped {len(corpus.skipped)} unreadable or non-image file(s)", file=sys.stderr)
    if ks_asked:
        print(f"note: ks {list(ks_asked)} cut to {list(ks)}: the gallery has {len(corpus)} images", file=sys.stderr)


def emit(args: argparse.Namespace, payload: dict, text: str) -> None:
    """Print the command's result: ``payload`` as one JSON line with ``--json``, else ``text``."""
    print(json.dumps(payload) if args.json else text, flush=True)


def report_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--report",
        type=report_path,
        metavar="PATH.html",
        help="also write a self-contained HTML report (inputs, charts, tables; reads offline)",
    )


def report_path(text: str) -> Path:
    """A writable ``.html`` path, checked before the work starts (a long replay should not end in a bad path)."""
    path = Path(text).expanduser()
    if path.suffix.lower() not in (".html", ".htm"):
        raise argparse.ArgumentTypeError(f"the report is an HTML file: name it .html, got {text!r}")
    if path.is_dir() or not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write a report to {text!r}: no such folder, or it is a folder")
    return path


def write_report(path: Path | None, document: str) -> None:
    """Write the report (``--report``); an unwritable path is one line, the results already printed stay."""
    if path is None:
        return
    try:
        path.write_text(document, encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot write the report to {path}: {err.strerror or err}") from None
