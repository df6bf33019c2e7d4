"""What several commands share: options, parsing helpers, corpora, progress, output."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from tqdm import tqdm

from analysis import presets, progress
from analysis.store import Store, index_folder
from cascade import datasets
from cascade.corpus import Corpus
from cascade.encoders import create_encoder
from cascade.errors import ConfigError
from cascade.index import IndexPlan, IndexRecall, parse_index
from cascade.paths import default_db_path
from cascade.types import CascadeConfig
from cascade_cli.guard import UsageError


class Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting: the guard reports one line, exit 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def command(sub, name: str, run: Callable[[argparse.Namespace], int], help_text: str,
            db: bool = True) -> argparse.ArgumentParser:  # fmt: skip
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
    p.add_argument("--index", default="exact", type=index_spec,
                   help="level 1: exact (default), exact:float16 (half the memory) or faiss:FACTORY[@PARAMS], "
                        "e.g. faiss:HNSW32, faiss:IVF4096,PQ64@nprobe=64")  # fmt: skip
    p.add_argument("--min-index-recall", type=float, default=0.95,
                   help="refuse an approximate index whose level-1 recall@k_1 against exact is below this "
                        "(default: %(default)s)")  # fmt: skip


def index_spec(text: str):
    try:
        return parse_index(text)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def index_plan(args: argparse.Namespace) -> IndexPlan:
    """The level-1 index of the command; FAISS files live beside the database (``DB.indexes/``)."""
    folder = index_folder(getattr(args, "db", None) or default_db_path())
    return IndexPlan(spec=args.index, folder=folder, min_recall=args.min_index_recall)


def recall_line(measured: IndexRecall | None) -> str:
    if measured is None:
        return ""
    return (f"level 1 on {measured.spec}: recall@{measured.k} against exact {measured.recall:.3f} "
            f"({measured.queries} {measured.source} queries)")  # fmt: skip


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


def level_names(args: argparse.Namespace) -> list[str]:
    return args.levels or list(presets.get(args.preset).levels)


def levels(args: argparse.Namespace) -> list:
    return [create_encoder(name) for name in level_names(args)]


def config(args: argparse.Namespace) -> CascadeConfig:
    return CascadeConfig(levels=tuple(level_names(args)), ks=ks(args))


def ks(args: argparse.Namespace) -> tuple[int, ...]:
    if args.ks:
        return args.ks
    if args.levels and len(args.levels) == 1:
        return (SINGLE_LEVEL_K,)  # one level: its k is just how many results to show
    if args.levels:
        raise ConfigError("--levels with several levels needs --ks (one k per level)")
    return presets.get(args.preset).ks


SINGLE_LEVEL_K = 10


def fitted(config: CascadeConfig, args: argparse.Namespace, n_images: int) -> CascadeConfig:
    """``config`` with a defaulted single-level k cut to a gallery smaller than it; anything asked for stays."""
    if args.ks or not args.levels or len(config.ks) != 1 or n_images >= config.ks[0]:
        return config
    return CascadeConfig(levels=config.levels, ks=(max(n_images, 1),))


def corpus(args: argparse.Namespace, store: Store) -> Corpus:
    """The folder given with ``--images`` (ids remembered in ``store``), a ``--dataset`` by name, else the preset's."""
    if getattr(args, "dataset", None):
        if args.images:
            raise ConfigError("give --images FOLDER or --dataset NAME, not both")
        return named_dataset(args, args.dataset)
    if not args.images:
        return gallery(args)
    with bar(args, "scanning", None) as scan:
        found = Corpus.from_folder(args.images, progress=progress.callback(scan), known=store)
    if found.skipped:
        print(f"warning: skipped {len(found.skipped)} unreadable or non-image file(s) in {args.images}",
              file=sys.stderr)  # fmt: skip
    return found


def dataset(args: argparse.Namespace) -> tuple[Corpus, str]:
    """(corpus, dataset label) for ``--dataset``: the preset's gallery, or ``karpathy:PATH.json`` with ``--images``."""
    if not args.dataset or args.dataset == args.preset:
        return gallery(args), f"{presets.get(args.preset).dataset}:{args.split}"
    if args.dataset in datasets.DATASETS:
        return named_dataset(args, args.dataset), f"{args.dataset}:{args.split}"
    kind, _, path = args.dataset.partition(":")
    if kind != "karpathy" or not path:
        raise ConfigError(f"--dataset must be {', '.join(datasets.names())} or karpathy:PATH.json, "
                          f"got {args.dataset!r}")  # fmt: skip
    if not args.images:
        raise ConfigError("--dataset karpathy:... needs --images ROOT (the folder the dataset's paths start from)")
    return Corpus.from_karpathy(path, args.images, split=args.split), f"{Path(path).name}:{args.split}"


def named_dataset(args: argparse.Namespace, name: str) -> Corpus:
    """A hub dataset by name (``flickr30k``, ``coco``), materialised on first use with a progress bar."""
    opened: list = []  # the bar opens with the first finished shard: a failure before it prints one line only

    def update(done: int, total: int) -> None:
        if not opened:
            opened.append(bar(args, f"materialising {name}", total, unit="shard"))
        progress.callback(opened[0])(done, total)

    try:
        return datasets.corpus(name, progress=update)
    finally:
        for shards in opened:
            shards.close()


def gallery(args: argparse.Namespace) -> Corpus:
    """The preset's gallery (a hub dataset is materialised with a progress bar)."""
    preset = presets.get(args.preset)
    if preset.dataset in datasets.DATASETS:
        return named_dataset(args, preset.dataset)
    return presets.gallery(args.preset)


def bar(args: argparse.Namespace, what: str, total: int | None, unit: str | None = None) -> tqdm:
    return progress.bar(what, total, quiet=args.quiet, unit=unit)


def build(searcher, args: argparse.Namespace):
    """Embed the gallery with level 1 (what the cache lacks), with a progress bar; returns the BuildReport."""
    with bar(args, "embedding", len(searcher.corpus)) as embedding:
        return searcher.build(progress=progress.callback(embedding))


def emit(args: argparse.Namespace, payload: dict, text: str) -> None:
    """Print the command's result: ``payload`` as one JSON line with ``--json``, else ``text``."""
    print(json.dumps(payload) if args.json else text, flush=True)


def report_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--report", type=report_path, metavar="PATH.html",
                   help="also write a self-contained HTML report (inputs, charts, tables; reads offline)")  # fmt: skip


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
